"""The model card of a challenger: what it is, what it was trained on, how it scored against the champion, the
promotion decision the evaluate stage recorded, and exactly how to approve or reject it.

The card's text is one Markdown template (``templates/model_card.md``); the PDF typesets that Markdown with the
:mod:`pdf` helper, so the two files always say the same. Plain data in, files out: no warehouse, no wall clock.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from include.reserving import artifacts
from include.reserving.domain import BASELINE, OVERALL, Role
from include.reserving.governance import canonical_spec
from include.reserving.presentation import pdf
from include.reserving.presentation.formatting import money, money_total, number, pvalue, signed, signed_money
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.templating import render

PAGE = pdf.PORTRAIT
IMPACT_COLUMNS = ["segment", "challenger", "champion", "paid_cl"]  # unpaid by line under each model
CANDIDATE_COLUMNS = ["spec", "mean_wape", "mean_bias", "mean_score"]  # the training search's table

DEFAULT_LIMITATIONS = (
    "Reserves are gross of reinsurance; recoveries are not modelled.",
    "Development beyond the oldest observed age relies on the selected tail; no external benchmark is blended in.",
    "The backtest scores the paid emerging after each of the last few valuations, not the tail beyond the oldest "
    "age; calendar-year shocks (inflation, legal changes) that are not in those diagonals are not tested.",
    "Large or catastrophe claims are not separated: a single large loss moves the factors of its line.",
    "Standard errors describe parameter and process variance of the method, not model risk.",
)


@dataclass(frozen=True, kw_only=True)
class ModelCardData:
    """What the model card of a challenger states.

    Attributes
    ----------
    model_version, spec, code_sha :
        Identity: registry version, the JSON spec (``{"method": ..., "params": {...}}``), the git SHA of the code.
    hyperparameters : dict
        Every hyperparameter of the challenger, defaults filled in (its spec's params as the model reads them).
    features : tuple of str
        What a machine-learning model learns from; empty for a chain ladder.
    valuation_date, data_row_count, data_hash :
        Data fingerprint: the snapshot it was fitted on (valuation date, number of cells, content hash).
    segments : tuple of str
        Lines of business in scope.
    gross_of_reinsurance : bool
    basis : str
        Snapshot basis (``as_recorded`` or ``restated``).
    origin_first, origin_last : datetime.date or None
        First and last origin periods in the training data.
    max_development : int or None
        Oldest development age (months) in the training data.
    holdout_diagonals : int
        Latest calendar diagonals held out for the backtest against the champion.
    candidates : pandas.DataFrame
        The training search: ``spec`` (JSON), ``mean_wape``, ``mean_bias``, ``mean_score`` per candidate spec tried,
        best first (:func:`include.reserving.backtest.select_spec`); ``mean_bias`` may be missing on older entries.
    champion_version, champion_spec :
        The incumbent (None for the very first model).
    evaluation : pandas.DataFrame
        Backtest rows ``model_version, role`` (champion/challenger; on a first run baseline), ``segment`` ("ALL"
        overall), ``wape, rmse``.
    decision, decision_reason : str
        The promotion decision the evaluate stage recorded (``promote``, ``keep`` or ``none``) and its reason.
    promotion_delta : float
        The delta of that decision: promote iff score(challenger) > score(champion) + delta, score = 1 - WAPE.
    reserve_impact : pandas.DataFrame
        Unpaid by line on V's data: ``segment, challenger, champion, paid_cl`` (``champion`` NaN on a first run).
    selection_rule : str
        The rule that selects the published ultimate per origin (where it picks the model, the model's counts).
    drift : pandas.DataFrame
        ``feature, kind, psi, ks_statistic, ks_pvalue, breached``: why retraining ran.
    retrain_reason : str
    limitations : tuple of str
    approval_timeout_hours : float or None
        How long the approval sensor waits before keeping the champion.
    approval_code : str or None
        The one-time code issued with this card; the approval Variable must quote it.
    """

    model_version: str
    spec: dict[str, Any]
    code_sha: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    valuation_date: dt.date
    data_row_count: int
    data_hash: str
    segments: tuple[str, ...]
    gross_of_reinsurance: bool = True
    basis: str = "as_recorded"
    origin_first: dt.date | None = None
    origin_last: dt.date | None = None
    max_development: int | None = None
    holdout_diagonals: int = 4
    candidates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CANDIDATE_COLUMNS))
    champion_version: str | None = None
    champion_spec: dict[str, Any] | None = None
    evaluation: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["model_version", "role", "segment", "wape", "rmse"])
    )
    decision: str
    decision_reason: str
    promotion_delta: float = 0.01
    reserve_impact: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=IMPACT_COLUMNS))
    selection_rule: str = ""
    drift: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "breached"]
        )
    )
    retrain_reason: str = ""
    limitations: tuple[str, ...] = DEFAULT_LIMITATIONS
    approval_timeout_hours: float | None = None
    approval_code: str | None = None  # the card's one-time code: an approval must quote it


def _score_rows(card: ModelCardData) -> list[list[str]]:
    """One row per segment, all lines last: the comparator's (the champion, on a first run the paid chain-ladder
    baseline) and the challenger's WAPE and RMSE, and the score delta."""
    ev = card.evaluation
    comparator = BASELINE if card.champion_version is None else Role.CHAMPION

    def pick(segment: str, role: str, metric: str) -> float | None:
        hit = ev[(ev["segment"].astype(str) == segment) & (ev["role"] == role)]
        return float(hit[metric].iloc[0]) if len(hit) else None

    rows = []
    for segment in sorted({str(s) for s in ev["segment"]}, key=lambda s: (s == OVERALL, s)):
        wape = {role: pick(segment, role, "wape") for role in (comparator, Role.CHALLENGER)}
        known = None not in wape.values()
        rows.append(
            [
                "All lines" if segment == OVERALL else segment,
                number(wape[comparator]),
                number(wape[Role.CHALLENGER]),
                money(pick(segment, comparator, "rmse")),
                money(pick(segment, Role.CHALLENGER, "rmse")),
                signed(wape[comparator] - wape[Role.CHALLENGER] if known else None),  # (1 - WAPE) difference
            ]
        )
    return rows


def _candidate_rows(card: ModelCardData) -> list[list[str]]:
    """One row per candidate spec, best first: method, params, mean WAPE, bias and score; the challenger marked."""
    rows = []
    for rank, r in enumerate(card.candidates.to_dict(orient="records"), start=1):
        spec = json.loads(r["spec"])
        rows.append(
            [
                str(rank),
                spec["method"],
                json.dumps(spec.get("params") or {}, sort_keys=True),
                number(r["mean_wape"]),
                signed(r["mean_bias"]),
                number(r["mean_score"]),
                "challenger" if canonical_spec(spec) == canonical_spec(card.spec) else "",
            ]
        )
    return rows


def _impact_rows(card: ModelCardData) -> list[list[str]]:
    """Unpaid by line, all lines last: challenger, champion, paid chain ladder, and challenger less the comparator
    (the champion; on a first run paid chain ladder, which reserves the month without an approval)."""
    impact = card.reserve_impact.sort_values("segment")
    comparator = "paid_cl" if card.champion_version is None else "champion"
    rows = [
        [str(r["segment"]), *(money(r[c]) for c in IMPACT_COLUMNS[1:]), signed_money(r["challenger"] - r[comparator])]
        for _, r in impact.iterrows()
    ]
    if rows:
        total = {c: money_total(impact[c]) if impact[c].notna().any() else None for c in IMPACT_COLUMNS[1:]}
        difference = None if total[comparator] is None else money_total([total["challenger"], -total[comparator]])
        rows.append(["All lines", *(money(total[c]) for c in IMPACT_COLUMNS[1:]), signed_money(difference)])
    return rows


def _drift_rows(card: ModelCardData) -> list[list[str]]:
    return [
        [
            str(r["feature"]),
            str(r["kind"]),
            number(r["psi"]),
            number(r["ks_statistic"]),
            pvalue(r["ks_pvalue"]),
            "BREACH" if bool(r["breached"]) else "ok",
        ]
        for _, r in card.drift.sort_values("feature").iterrows()
    ]


def card_markdown(card: ModelCardData) -> str:
    """The card as Markdown."""
    return render(
        "model_card.md",
        card=card,
        spec=json.dumps(card.spec, sort_keys=True),
        champion_spec=json.dumps(card.champion_spec or {}, sort_keys=True),
        hyperparameters=[[k, json.dumps(v, sort_keys=True)] for k, v in sorted(card.hyperparameters.items())],
        candidates=_candidate_rows(card),
        scores=_score_rows(card),
        impact=_impact_rows(card),
        drift=_drift_rows(card),
        instruction=ApprovalInstruction(card.valuation_date, card.model_version, card.approval_code),
    )


def write_model_card(card: ModelCardData, directory: str | Path) -> tuple[Path, Path]:
    """Write ``model_card_<version>.md`` and ``.pdf`` into ``directory``; return (markdown_path, pdf_path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = artifacts.model_card_stem(card.model_version)
    markdown = card_markdown(card)
    markdown_path = directory / f"{stem}.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    v = card.valuation_date.isoformat()
    pdf_path = pdf.build(
        directory / f"{stem}.pdf",
        pdf.markdown(markdown, width=PAGE.width),
        page=PAGE,
        title=f"Model card {card.model_version} ({v})",
        creator=__name__,
        footer=f"Model card {card.model_version}  |  valuation {v}",
    )
    return markdown_path, pdf_path

"""The model card of a month's challengers: per line of business, the challenger against that line's champion (the
search's candidates, backtest scores and bias, why the winner won), the decision the evaluate stage recorded per
line, and exactly how to approve or reject each line.

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
from include.reserving.domain import OVERALL
from include.reserving.presentation import pdf
from include.reserving.presentation.formatting import money, money_total, number, pvalue, signed, signed_money
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.templating import render

PAGE = pdf.PORTRAIT
IMPACT_COLUMNS = ["segment", "challenger", "champion", "paid_cl"]  # unpaid by line under each model
SEARCH_COLUMNS = ["segment", "order", "spec", "wape", "bias", "score", "eligible"]  # backtest.search's table
# one row per line: the rule's decision on the line's challenger against the line's champion
LINE_COLUMNS = [
    "segment",
    "champion_version",
    "challenger_version",
    "champion_score",
    "challenger_score",
    "challenger_bias",
    "baseline_bias",
    "decision",
    "reason",
]
VERDICTS = {"promote": "PROMOTE after approval", "keep": "KEEP the champion", "none": "no challenger"}

DEFAULT_LIMITATIONS = (
    "Reserves are gross of reinsurance; recoveries are not modelled.",
    "Development beyond the oldest observed age relies on the selected tail; no external benchmark is blended in.",
    "The backtest scores the paid emerging after each of the last few valuations, not the tail beyond the oldest "
    "age; calendar-year shocks (inflation, legal changes) that are not in those diagonals are not tested.",
    "Large or catastrophe claims are not separated: a single large loss moves the factors of its line.",
    "Standard errors describe parameter and process variance of the method, not model risk.",
)


@dataclass(frozen=True, kw_only=True)
class Challenger:
    """One challenger version on the card: identity, and the lines it is proposed on.

    ``hyperparameters``: every hyperparameter, defaults filled in; ``features``: what a machine-learning model learns
    from (empty for a chain ladder).
    """

    model_version: str
    spec: dict[str, Any]
    code_sha: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ModelCardData:
    """What the model card states: each line's challenger against that line's champion, and what is decided.

    Attributes
    ----------
    model_version : str
        What the approval Variable names: the challenger when one version is proposed on every line sent to approval,
        else the proposal id of the set (:func:`include.reserving.governance.proposal_id`).
    challengers : tuple of Challenger
        Every challenger version of the month, with the lines it challenges on.
    valuation_date, data_row_count, data_hash :
        Data fingerprint: the snapshot the challengers were fitted on (valuation date, number of cells, content hash).
    segments : tuple of str
        Lines of business in scope.
    gross_of_reinsurance : bool
    basis : str
        Snapshot basis (``as_recorded`` or ``restated``).
    origin_first, origin_last : datetime.date or None
    max_development : int or None
        Oldest development age (months) in the training data.
    holdout_diagonals : int
        Rolling origins of the backtest (the latest valuations it refits as at).
    search : pandas.DataFrame
        The training search (:func:`include.reserving.backtest.search`): ``segment, order, spec, wape, bias, score,
        eligible`` per line (and ``"ALL"``) and candidate; empty when not recorded.
    lines : pandas.DataFrame
        ``LINE_COLUMNS`` per line: the champion and challenger, their backtest scores on the line, the challenger's
        and chain ladder's bias there, and the decision the evaluate stage recorded (promote, keep, none) with its
        reason.
    promotion_delta, bias_margin : float
        The rule: promote iff score(challenger) > score(champion) + delta on the line, score = 1 - WAPE, and the
        challenger's bias there is not further from zero than chain ladder's by more than ``bias_margin``.
    reserve_impact : pandas.DataFrame
        Unpaid by line on V's data: ``segment, challenger`` (the line's challenger; NaN without one), ``champion``
        (the line's champion refitted; NaN without one), ``paid_cl``.
    selection_rule : str
        The rule that selects the published ultimate per origin (where it picks the model, the model's counts).
    drift : pandas.DataFrame
        ``feature, kind, psi, ks_statistic, ks_pvalue, breached``: why retraining ran.
    retrain_reason : str
    limitations : tuple of str
    approval_timeout_hours : float or None
        How long the approval sensor waits before keeping each line's champion.
    approval_code : str or None
        The one-time code issued with this card; the approval Variable must quote it.
    """

    model_version: str
    challengers: tuple[Challenger, ...]
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
    search: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SEARCH_COLUMNS))
    lines: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LINE_COLUMNS))
    promotion_delta: float = 0.01
    bias_margin: float = 0.05
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

    @property
    def asked(self) -> tuple[str, ...]:
        """The lines this card asks the actuary to decide (the rule said promote), in order."""
        return tuple(sorted(str(s) for s in self.lines.loc[self.lines["decision"] == "promote", "segment"]))

    @property
    def unchampioned(self) -> tuple[str, ...]:
        """Asked lines without a champion yet: rejected, they are reserved by the chain-ladder fallback."""
        asked = self.lines[self.lines["decision"] == "promote"]
        return tuple(sorted(str(s) for s in asked.loc[asked["champion_version"].isna(), "segment"]))


def _line_rows(card: ModelCardData) -> list[list[str]]:
    """One row per line: champion, challenger, their scores on the line, the biases, the decision."""
    rows = []
    for r in card.lines.sort_values("segment").to_dict(orient="records"):
        rows.append(
            [
                str(r["segment"]),
                _version(r["champion_version"], "none yet (chain-ladder fallback)"),
                _version(r["challenger_version"], "none"),
                number(r["champion_score"]),
                number(r["challenger_score"]),
                signed(r["challenger_bias"]),
                signed(r["baseline_bias"]),
                VERDICTS.get(str(r["decision"]), str(r["decision"])),
            ]
        )
    return rows


def _version(value: Any, missing: str) -> str:
    return missing if value is None or value != value else str(value)


def _search_by_line(card: ModelCardData) -> list[dict[str, Any]]:
    """Per line (the lines first, all lines together last): the candidates best first and why the winner won."""
    from include.reserving.backtest import ranked

    if card.search.empty:
        return []
    challenger_of = {str(r["segment"]): r["challenger_version"] for r in card.lines.to_dict(orient="records")}
    champion_of = {str(r["segment"]): r["champion_version"] for r in card.lines.to_dict(orient="records")}
    out = []
    for segment in sorted(set(card.search["segment"]), key=lambda s: (s == OVERALL, s)):
        table = ranked(card.search, segment)
        rows, winner = [], None
        for rank, r in enumerate(table.to_dict(orient="records"), start=1):
            spec = json.loads(r["spec"])
            chosen = rank == 1
            winner = winner or (spec, r)
            rows.append(
                [
                    str(rank),
                    spec["method"],
                    json.dumps(spec.get("params") or {}, sort_keys=True),
                    number(r["wape"]),
                    signed(r["bias"]),
                    number(r["score"]),
                    "yes" if r["eligible"] else "no: biased",
                    "best" if chosen else "",
                ]
            )
        spec, best = winner
        excluded = int((~table["eligible"].astype(bool)).sum())
        eligible = table[table["eligible"].astype(bool)].sort_values(["score", "order"], ascending=[False, True])
        top = eligible.iloc[0] if len(eligible) else None
        name = f"{spec['method']} {json.dumps(spec.get('params') or {}, sort_keys=True)}"
        if top is not None and best["score"] < top["score"]:
            # the one-standard-error rule (backtest.search): the lead of the best was within its noise
            top_spec = json.loads(top["spec"])
            why = (
                f"{name} won as the simplest eligible candidate within the allowed standard errors of the best "
                f"score: {number(best['score'])} (bias {signed(best['bias'])}) against "
                f"{top_spec['method']} {json.dumps(top_spec.get('params') or {}, sort_keys=True)}'s "
                f"{number(top['score'])}, a gap of {number(top['score'] - best['score'])} against a standard error of "
                f"{number(best['se'])}"
            )
        else:
            why = (
                f"{name} won with the best score {number(best['score'])} (bias {signed(best['bias'])}) among the "
                "eligible candidates"
            )
        why += f"; {excluded} not eligible: bias materially worse than chain ladder's" if excluded else ""
        if segment != OVERALL:
            challenger = challenger_of.get(segment)
            if challenger is not None and challenger == challenger:
                why += f". It is the line's challenger, {challenger}"
            elif champion_of.get(segment) is not None:
                why += ". It is the champion's spec: no challenger on this line"
        out.append({"segment": "All lines together" if segment == OVERALL else segment, "rows": rows, "why": why})
    return out


def _impact_rows(card: ModelCardData) -> list[list[str]]:
    """Unpaid by line, all lines last: challenger, champion, paid chain ladder, and the challenger less what
    reserves the line without an approval (the champion; on a line without one, paid chain ladder)."""
    impact = card.reserve_impact.sort_values("segment")
    rows = []
    for _, r in impact.iterrows():
        comparator = r["paid_cl"] if pd.isna(r["champion"]) else r["champion"]
        difference = None if pd.isna(r["challenger"]) else r["challenger"] - comparator
        rows.append([str(r["segment"]), *(money(r[c]) for c in IMPACT_COLUMNS[1:]), signed_money(difference)])
    if rows:
        total = {c: money_total(impact[c]) if impact[c].notna().all() else None for c in IMPACT_COLUMNS[1:]}
        rows.append(["All lines", *(money(total[c]) for c in IMPACT_COLUMNS[1:]), ""])
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
    challengers = [
        {
            "challenger": c,
            "spec": json.dumps(c.spec, sort_keys=True),
            "hyperparameters": [[k, json.dumps(v, sort_keys=True)] for k, v in sorted(c.hyperparameters.items())],
        }
        for c in card.challengers
    ]
    return render(
        "model_card.md",
        card=card,
        challengers=challengers,
        line_rows=_line_rows(card),
        reasons=[(str(r["segment"]), str(r["reason"])) for r in card.lines.sort_values("segment").to_dict("records")],
        searches=_search_by_line(card),
        impact=_impact_rows(card),
        drift=_drift_rows(card),
        instruction=ApprovalInstruction(card.valuation_date, card.model_version, card.approval_code, card.asked),
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

"""The model card of a challenger: what it is, what it was trained on, how it scored against the champion, and
exactly how to approve or reject it.

:func:`write_model_card` writes the card as Markdown and as a PDF from the same content (plain data in, files out;
no warehouse, no wall clock). :func:`approval_instruction` is the one place that spells the approval Variable's key
and value: the card, the approval sensor's log message and alerts all use it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from include.reserving.approval import approval_key, approval_value
from include.reserving.domain import OVERALL
from include.reserving.presentation.formatting import pvalue
from include.reserving.registry import decide_promotion

DEFAULT_LIMITATIONS = (
    "Reserves are gross of reinsurance; recoveries are not modelled.",
    "Development beyond the oldest observed age relies on the selected tail; no external benchmark is blended in.",
    "The backtest scores incremental paid on the held-out latest diagonals only; calendar-year shocks (inflation, "
    "legal changes) that are not in those diagonals are not tested.",
    "Large or catastrophe claims are not separated: a single large loss moves the factors of its line.",
    "Standard errors describe parameter and process variance of the method, not model risk.",
)


def approval_instruction(
    valuation_date: dt.date,
    model_version: str,
    decision: str = "approve",
    by: str = "<your name>",
    comment: str = "<why>",
) -> tuple[str, str]:
    """The Airflow Variable key and JSON value that approve (or reject) ``model_version`` for ``valuation_date``.

    For 2024-01-31 and version ``xgb-1``: key ``reserving_approval__2024-01-31``, value
    ``{"decision": "approve", "model_version": "xgb-1", "by": "<your name>", "comment": "<why>"}``.
    """
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision {decision!r} is invalid: use approve or reject")
    key = approval_key(valuation_date)
    value = approval_value(model_version, decision, by, comment)
    return key, value


def approval_cli(valuation_date: dt.date, model_version: str, decision: str = "approve") -> str:
    """The ``airflow variables set`` command line for the decision."""
    key, value = approval_instruction(valuation_date, model_version, decision)
    return f"airflow variables set {key} '{value}'"


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


@dataclass(frozen=True, kw_only=True)
class ModelCardData:
    """What the model card of a challenger states.

    Attributes
    ----------
    model_version, spec, code_sha :
        Identity: registry version, the JSON spec (``{"method": ..., "params": {...}}``), the git SHA of the code.
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
    champion_version, champion_spec :
        The incumbent (None for the very first model).
    evaluation : pandas.DataFrame
        Backtest rows ``model_version, role`` (champion/challenger), ``segment`` ("ALL" overall), ``wape, rmse``.
    promotion_delta : float
        Promote iff score(challenger) > score(champion) + delta, with score = 1 - WAPE on all lines.
    drift : pandas.DataFrame
        ``feature, kind, psi, ks_statistic, ks_pvalue, breached``: why retraining ran.
    retrain_reason : str
    limitations : tuple of str
    approval_timeout_hours : float or None
        How long the approval sensor waits before keeping the champion.
    """

    model_version: str
    spec: dict[str, Any]
    code_sha: str
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
    champion_version: str | None = None
    champion_spec: dict[str, Any] | None = None
    evaluation: pd.DataFrame = field(
        default_factory=lambda: _empty(["model_version", "role", "segment", "wape", "rmse"])
    )
    promotion_delta: float = 0.01
    drift: pd.DataFrame = field(
        default_factory=lambda: _empty(["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "breached"])
    )
    retrain_reason: str = ""
    limitations: tuple[str, ...] = DEFAULT_LIMITATIONS
    approval_timeout_hours: float | None = None


# --- content: a list of blocks rendered to Markdown and to PDF -------------------------------------------------

Block = tuple  # ("h1"|"h2"|"p"|"code", text) or ("table", header, rows) or ("list", items)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _scores(card: ModelCardData) -> pd.DataFrame:
    """One row per segment: champion and challenger WAPE, RMSE and score (1 - WAPE), and the score delta."""
    ev = card.evaluation
    rows = []
    for segment in sorted({str(s) for s in ev["segment"]}, key=lambda s: (s == OVERALL, s)):
        one = {"segment": segment}
        for role in ("champion", "challenger"):
            hit = ev[(ev["segment"].astype(str) == segment) & (ev["role"] == role)]
            wape = float(hit["wape"].iloc[0]) if len(hit) else math.nan
            one[f"{role}_wape"] = wape
            one[f"{role}_rmse"] = float(hit["rmse"].iloc[0]) if len(hit) else math.nan
            one[f"{role}_score"] = 1.0 - wape
        one["delta"] = one["challenger_score"] - one["champion_score"]
        rows.append(one)
    return pd.DataFrame(rows)


def promotion_decision(card: ModelCardData) -> tuple[bool, str]:
    """Apply the champion/challenger rule on all lines: promote iff challenger score > champion score + delta."""
    if card.champion_version is None:
        return True, "No champion yet: this model becomes the first champion once approved."
    scores = _scores(card)
    overall = scores[scores["segment"] == OVERALL]
    if overall.empty or math.isnan(overall["delta"].iloc[0]):
        return False, "No overall backtest score for both models: the champion stays."
    row = overall.iloc[0]
    rule = decide_promotion(
        card.valuation_date,
        card.champion_version,
        float(row["champion_score"]),
        card.model_version,
        float(row["challenger_score"]),
        card.promotion_delta,
    )
    promote = rule.decision == "promote"
    verdict = "PROMOTE after approval" if promote else "KEEP the champion"
    comparison = ">" if promote else "<="
    return promote, (
        f"{verdict}: challenger score {row['challenger_score']:.4f} {comparison} champion score "
        f"{row['champion_score']:.4f} + delta {card.promotion_delta:.4f} (score = 1 - WAPE, all lines)."
    )


def card_blocks(card: ModelCardData) -> list[Block]:
    """The card's content in order, independent of the output format."""
    v = card.valuation_date.isoformat()
    blocks: list[Block] = [("h1", f"Model card: {card.model_version}")]

    blocks += [
        ("h2", "1. Identity"),
        (
            "table",
            ["Item", "Value"],
            [
                ["Model version", card.model_version],
                ["Method", str(card.spec.get("method", "n/a"))],
                ["Code SHA", card.code_sha],
                ["Data: valuation date", v],
                ["Data: row count (cells)", f"{card.data_row_count:,}"],
                ["Data: content hash", card.data_hash],
            ],
        ),
        ("p", "Spec (JSON):"),
        ("code", json.dumps(card.spec, sort_keys=True)),
    ]

    reinsurance = "gross of reinsurance" if card.gross_of_reinsurance else "net of reinsurance"
    blocks += [
        ("h2", "2. Intended use and scope"),
        (
            "p",
            f"Estimating IBNR reserves by line and origin as at {v}, {reinsurance}, for the lines "
            f"{', '.join(card.segments)}. For monthly reserving review by the reserving actuaries; not for pricing "
            "or individual claim estimates.",
        ),
    ]

    training = [
        ["Valuation date", v],
        ["Snapshot basis", card.basis],
        ["Lines", ", ".join(card.segments)],
        ["Origins", f"{card.origin_first or 'n/a'} to {card.origin_last or 'n/a'}"],
        ["Oldest development age (months)", str(card.max_development or "n/a")],
        ["Cells", f"{card.data_row_count:,}"],
        ["Held out for the backtest", f"latest {card.holdout_diagonals} calendar diagonals"],
    ]
    blocks += [("h2", "3. Training data"), ("table", ["Item", "Value"], training)]

    promote, decision = promotion_decision(card)
    blocks += [("h2", "4. Evaluation against the champion")]
    if card.champion_version is None:
        blocks.append(("p", "There is no champion yet."))
    else:
        blocks.append(
            (
                "p",
                f"Champion: {card.champion_version} (spec {json.dumps(card.champion_spec or {}, sort_keys=True)}). "
                f"Both specs were re-fitted on the same data with the latest {card.holdout_diagonals} diagonals "
                "held out; WAPE and RMSE of incremental paid on those cells, score = 1 - WAPE (higher is better).",
            )
        )
    scores = _scores(card) if not card.evaluation.empty else pd.DataFrame()
    if not scores.empty:
        blocks.append(
            (
                "table",
                ["Segment", "Champion WAPE", "Challenger WAPE", "Champion RMSE", "Challenger RMSE", "Score delta"],
                [
                    [
                        "All lines" if r["segment"] == OVERALL else r["segment"],
                        _num(r["champion_wape"]),
                        _num(r["challenger_wape"]),
                        f"{r['champion_rmse']:,.2f}" if not math.isnan(r["champion_rmse"]) else "n/a",
                        f"{r['challenger_rmse']:,.2f}" if not math.isnan(r["challenger_rmse"]) else "n/a",
                        f"{r['delta']:+.4f}" if not math.isnan(r["delta"]) else "n/a",
                    ]
                    for _, r in scores.iterrows()
                ],
            )
        )
    blocks.append(("p", f"Promotion delta: {card.promotion_delta:.4f}. Decision: {decision}"))

    blocks += [("h2", "5. Drift context")]
    if card.retrain_reason:
        blocks.append(("p", f"Why retraining ran: {card.retrain_reason}"))
    if card.drift.empty:
        blocks.append(("p", "No drift metrics were supplied."))
    else:
        blocks.append(
            (
                "table",
                ["Feature", "Kind", "PSI", "KS statistic", "KS p-value", "Breach"],
                [
                    [
                        str(r["feature"]),
                        str(r["kind"]),
                        _num(r["psi"]),
                        _num(r["ks_statistic"]),
                        pvalue(r["ks_pvalue"]),
                        "BREACH" if bool(r["breached"]) else "ok",
                    ]
                    for _, r in card.drift.sort_values("feature").iterrows()
                ],
            )
        )

    blocks += [("h2", "6. Limitations"), ("list", list(card.limitations))]

    key, approve = approval_instruction(card.valuation_date, card.model_version)
    _, reject = approval_instruction(card.valuation_date, card.model_version, "reject")
    wait = (
        f" The approval sensor waits {card.approval_timeout_hours:g} hours; without a decision the champion stays."
        if card.approval_timeout_hours
        else ""
    )
    blocks += [
        ("h2", "7. Approval"),
        (
            "p",
            f"To approve {card.model_version} for valuation {v}, set the Airflow Variable below (replace "
            f"<your name> and <why>; keep the model_version exactly). A value naming another version is ignored.{wait}",
        ),
        ("p", "Variable key:"),
        ("code", key),
        ("p", "Value to approve:"),
        ("code", approve),
        ("p", "From the command line:"),
        ("code", approval_cli(card.valuation_date, card.model_version)),
        ("p", "To reject (the champion stays), the value and the command line:"),
        ("code", reject),
        ("code", approval_cli(card.valuation_date, card.model_version, "reject")),
    ]
    return blocks


# --- renderers -------------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            lines += [f"# {block[1]}", ""]
        elif kind == "h2":
            lines += [f"## {block[1]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "code":
            lines += ["```", block[1], "```", ""]
        elif kind == "list":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(str(c)) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pdf(blocks: list[Block], path: Path, title: str) -> None:
    base = getSampleStyleSheet()
    styles = {
        "h1": ParagraphStyle("CardH1", parent=base["Title"], fontSize=18, leading=22),
        "h2": ParagraphStyle("CardH2", parent=base["Heading2"], fontSize=12, leading=15, spaceBefore=8),
        "p": ParagraphStyle("CardBody", parent=base["BodyText"], fontSize=9, leading=12),
        "code": ParagraphStyle(
            "CardCode",
            parent=base["BodyText"],
            fontName="Courier",
            fontSize=8,
            leading=10,
            backColor=colors.HexColor("#f2f2f2"),
            borderPadding=3,
            spaceBefore=2,
            spaceAfter=6,
        ),
        "cell": ParagraphStyle("CardCell", parent=base["BodyText"], fontSize=8, leading=10),
    }
    story = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p", "code"):
            story.append(Paragraph(_escape(block[1]), styles[kind]))
        elif kind == "list":
            story += [Paragraph("&bull; " + _escape(item), styles["p"]) for item in block[1]]
        elif kind == "table":
            data = [[Paragraph(f"<b>{_escape(h)}</b>", styles["cell"]) for h in block[1]]]
            data += [[Paragraph(_escape(str(c)), styles["cell"]) for c in row] for row in block[2]]
            table = Table(data, repeatRows=1, splitByRow=1, hAlign="LEFT")
            table.setStyle(
                TableStyle(
                    [
                        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b7c3")),
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde6f0")),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ]
                )
            )
            story += [table, Spacer(1, 6)]
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=2 * cm,
        bottomMargin=2 * cm,
        title=title,
        author="Reserving pipeline",
        creator="include.reserving.model_card",
        invariant=1,
    )
    doc.build(story)


def write_model_card(card: ModelCardData, directory: str | Path) -> tuple[Path, Path]:
    """Write ``model_card_<version>.md`` and ``.pdf`` into ``directory``; return (markdown_path, pdf_path)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = "model_card_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in card.model_version)
    blocks = card_blocks(card)
    markdown_path = directory / f"{stem}.md"
    markdown_path.write_text(to_markdown(blocks), encoding="utf-8")
    pdf_path = directory / f"{stem}.pdf"
    _pdf(blocks, pdf_path, f"Model card {card.model_version} ({card.valuation_date.isoformat()})")
    return markdown_path, pdf_path

"""The reserve report: one PDF per valuation date, built with reportlab's platypus from plain data.

:class:`ReportData` carries everything the report shows (the published reserve rows, triangle cells, selected
factors, backtest, quality, drift and run-health frames); :func:`render_reserve_report` lays it out. No warehouse
access and no wall clock here: the same data gives a byte-identical PDF (reportlab's invariant mode fixes the
creation date and document id).

Number formats, so a reader (or a test) can match the PDF against the warehouse to the cent: money with thousands
separators and 2 decimals (``1,234,567.89``), factors with 4 decimals, percentages with 1 decimal; a missing value
prints as ``n/a``. IBNR is the published ``ibnr`` column (ultimate less paid to date).
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    Image,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from include.reserving import charts

STATUSES = ("preliminary", "approved")
RESERVE_COLUMNS = [
    "segment",
    "origin",
    "latest_paid",
    "latest_incurred",
    "ultimate",
    "ibnr",
    "std_err",
    "p75",
    "p95",
    "model_version",
]
NA = "n/a"

PAGE_SIZE = landscape(A4)
MARGIN = 1.5 * cm
CONTENT_WIDTH = PAGE_SIZE[0] - 2 * MARGIN
FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
TABLE_FONT_SIZE = 8
TRIANGLE_FONT_SIZE = 7
CELL_PADDING = 8  # left + right padding of a table cell, in points
MAX_TEXT_COLUMN = 230  # wider text wraps inside its cell

HEADER_BG = colors.HexColor("#1f4e79")
ZEBRA = colors.HexColor("#f2f5f9")
TOTAL_BG = colors.HexColor("#dde6f0")
ALERT_BG = colors.HexColor("#f8d7da")
ALERT_TEXT = colors.HexColor("#9c0006")


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in columns})


@dataclass(frozen=True, kw_only=True)
class ReportData:
    """Everything the reserve report shows for one valuation date (plain data, already read from the warehouse).

    Attributes
    ----------
    valuation_date : datetime.date
    status : str
        ``"preliminary"`` or ``"approved"``.
    champion_version : str
        Registry version of the model that produced the reserves.
    publication_version : int
        Version of the published reserves for this valuation date.
    reserves : pandas.DataFrame
        The published rows, one per (segment, origin): ``segment, origin, latest_paid, latest_incurred, ultimate,
        ibnr, std_err, p75, p95, model_version`` (``std_err``, ``p75``, ``p95`` may be NaN).
    previous_reserves : pandas.DataFrame or None
        The same for the previous valuation date, for the movement of IBNR by line.
    cells : pandas.DataFrame
        Triangle cells: ``segment, origin, development`` (age in months), ``paid``, ``incurred``.
    factors : pandas.DataFrame
        Selected age-to-age factors: ``segment, development, development_to, factor``.
    actual_vs_expected : pandas.DataFrame
        ``segment, actual, expected, ratio`` on the newest diagonal (may be empty).
    backtest : pandas.DataFrame
        ``model_version, role`` (champion/challenger), ``segment`` ("ALL" overall), ``wape, rmse`` (may be empty).
    quality : pandas.DataFrame
        ``expectation, column, success, unexpected_count``: the data-quality summary.
    drift : pandas.DataFrame
        ``feature, kind, psi, ks_statistic, ks_pvalue, breached``.
    health : pandas.DataFrame
        The last runs: ``run_id, valuation_date, state, duration_seconds, failed_task``.
    """

    valuation_date: dt.date
    status: str
    champion_version: str
    publication_version: int
    reserves: pd.DataFrame
    cells: pd.DataFrame
    factors: pd.DataFrame
    previous_reserves: pd.DataFrame | None = None
    actual_vs_expected: pd.DataFrame = field(default_factory=lambda: _empty(["segment", "actual", "expected", "ratio"]))
    backtest: pd.DataFrame = field(default_factory=lambda: _empty(["model_version", "role", "segment", "wape", "rmse"]))
    quality: pd.DataFrame = field(
        default_factory=lambda: _empty(["expectation", "column", "success", "unexpected_count"])
    )
    drift: pd.DataFrame = field(
        default_factory=lambda: _empty(["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "breached"])
    )
    health: pd.DataFrame = field(
        default_factory=lambda: _empty(["run_id", "valuation_date", "state", "duration_seconds", "failed_task"])
    )

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is invalid: use one of {STATUSES}")
        missing = [c for c in RESERVE_COLUMNS if c not in self.reserves.columns]
        if missing:
            raise ValueError(f"reserves lack columns {missing}")
        if self.reserves.empty:
            raise ValueError(f"no published reserves for {self.valuation_date}: nothing to report")


# --- formatting ------------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def money(value: Any) -> str:
    """``1234567.891`` -> ``1,234,567.89``; NaN/None -> ``n/a``."""
    return NA if _missing(value) else f"{float(value):,.2f}"


def factor(value: Any) -> str:
    return NA if _missing(value) else f"{float(value):.4f}"


def percent(value: Any) -> str:
    return NA if _missing(value) or not math.isfinite(float(value)) else f"{float(value):.1%}"


def number(value: Any, digits: int = 4) -> str:
    return NA if _missing(value) else f"{float(value):.{digits}f}"


def pvalue(value: Any) -> str:
    """A p-value with 4 decimals; below 0.0001 it prints as ``<0.0001`` rather than a misleading zero."""
    return NA if _missing(value) else "<0.0001" if 0 <= float(value) < 0.0001 else f"{float(value):.4f}"


def money_total(values: Sequence[Any]) -> float:
    """Exact sum of cent amounts (decimal arithmetic, so totals match the warehouse's sum to the cent)."""
    total = sum((Decimal(f"{float(v):.2f}") for v in values if not _missing(v)), Decimal("0"))
    return float(total)


def duration(seconds: Any) -> str:
    if _missing(seconds):
        return NA
    whole = int(round(float(seconds)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _as_date(value: Any) -> dt.date:
    return pd.Timestamp(value).date()


def origin_labels(origins: Sequence[Any]) -> dict[dt.date, str]:
    """Readable origin labels: ``2023`` for yearly origins, ``2023Q1`` for quarterly ones, else ``2023-01``."""
    dates = sorted({_as_date(o) for o in origins})
    months = [d.year * 12 + d.month - 1 for d in dates]
    steps = {b - a for a, b in zip(months, months[1:], strict=False)}
    if all(d.day == 1 for d in dates) and steps <= {12} and all(d.month == 1 for d in dates):
        return {d: f"{d.year}" for d in dates}
    if all(d.day == 1 for d in dates) and steps <= {3} and all(d.month in (1, 4, 7, 10) for d in dates):
        return {d: f"{d.year}Q{(d.month - 1) // 3 + 1}" for d in dates}
    return {d: d.strftime("%Y-%m") if d.day == 1 else d.isoformat() for d in dates}


# --- layout helpers --------------------------------------------------------------------------------------------

_STYLES = getSampleStyleSheet()
STYLE = {
    "title": ParagraphStyle("ReportTitle", parent=_STYLES["Title"], fontSize=24, leading=30, alignment=TA_LEFT),
    "h1": ParagraphStyle("H1", parent=_STYLES["Heading1"], fontSize=16, leading=20, spaceBefore=6, spaceAfter=6),
    "h2": ParagraphStyle("H2", parent=_STYLES["Heading2"], fontSize=12, leading=15, spaceBefore=8, spaceAfter=4),
    "body": ParagraphStyle("Body", parent=_STYLES["BodyText"], fontSize=9, leading=12),
    "note": ParagraphStyle("Note", parent=_STYLES["BodyText"], fontSize=7.5, leading=9.5, textColor=colors.grey),
    "cell": ParagraphStyle("Cell", fontName=FONT, fontSize=TABLE_FONT_SIZE, leading=TABLE_FONT_SIZE + 2),
}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _p(text: str, style: str = "body") -> Paragraph:
    return Paragraph(text, STYLE[style])


def _column_widths(rows: list[list[str]], font_size: float, bold_rows: set[int], fit: bool = True) -> list[float]:
    widths = []
    for j in range(len(rows[0])):
        widest = 0.0
        for i, row in enumerate(rows):
            font = FONT_BOLD if i in bold_rows else FONT
            widest = max(widest, stringWidth(str(row[j]), font, font_size))
        widths.append(min(widest + CELL_PADDING, MAX_TEXT_COLUMN))
    total = sum(widths)
    if fit and total > CONTENT_WIDTH:
        widths = [w * CONTENT_WIDTH / total for w in widths]
    return widths


def table(
    header: list[str],
    rows: list[list[str]],
    *,
    text_columns: int = 1,
    total_row: bool = False,
    alert_rows: Sequence[int] = (),
    font_size: float = TABLE_FONT_SIZE,
    widths: list[float] | None = None,
) -> Table:
    """A table that paginates cleanly: the header repeats on every page and splits happen between rows.

    The first ``text_columns`` columns are left-aligned text, the rest right-aligned numbers. ``alert_rows`` (indices
    into ``rows``) are shaded red, the last row is bold when ``total_row``.
    """
    data = [header, *rows]
    bold = {0} | ({len(data) - 1} if total_row and rows else set())
    widths = widths or _column_widths(data, font_size, bold)
    cell_style = ParagraphStyle("c", parent=STYLE["cell"], fontSize=font_size, leading=font_size + 2)
    for i, row in enumerate(data):  # text wider than its column wraps instead of overflowing the page
        for j, value in enumerate(row):
            font = FONT_BOLD if i in bold else FONT
            if isinstance(value, str) and stringWidth(value, font, font_size) + CELL_PADDING > widths[j] + 0.01:
                row[j] = Paragraph(_escape(value) if i else f"<b>{_escape(value)}</b>", cell_style)
    style = [
        ("FONT", (0, 0), (-1, -1), FONT, font_size),
        ("FONT", (0, 0), (-1, 0), FONT_BOLD, font_size),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_BG),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b7c3")),
        ("ALIGN", (text_columns, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
    ]
    if total_row and rows:
        style += [("FONT", (0, -1), (-1, -1), FONT_BOLD, font_size), ("BACKGROUND", (0, -1), (-1, -1), TOTAL_BG)]
    for i in alert_rows:
        style += [("BACKGROUND", (0, i + 1), (-1, i + 1), ALERT_BG), ("TEXTCOLOR", (0, i + 1), (-1, i + 1), ALERT_TEXT)]
    return Table(data, colWidths=widths, repeatRows=1, splitByRow=1, hAlign="LEFT", style=TableStyle(style))


def wide_table(
    header: list[str], rows: list[list[str]], *, key_columns: int = 1, font_size: float = TRIANGLE_FONT_SIZE
) -> list[Flowable]:
    """A table too wide for the page, cut into column blocks that each repeat the key columns (e.g. the origin)."""
    data = [header, *rows]
    widths = _column_widths(data, font_size, {0}, fit=False)
    key_width = sum(widths[:key_columns])
    blocks: list[list[int]] = []
    current: list[int] = []
    used = key_width
    for j in range(key_columns, len(header)):
        if current and used + widths[j] > CONTENT_WIDTH:
            blocks.append(current)
            current, used = [], key_width
        current.append(j)
        used += widths[j]
    if current or not blocks:
        blocks.append(current)
    out: list[Flowable] = []
    for n, block in enumerate(blocks):
        keep = list(range(key_columns)) + block
        if len(blocks) > 1:
            first, last = header[block[0]], header[block[-1]]
            out.append(_p(f"Columns {first} to {last} (part {n + 1} of {len(blocks)})", "note"))
        # Rows with nothing in this block (a triangle's young origins at high ages) are left out of it.
        block_rows = [[row[j] for j in keep] for row in rows if any(row[j] != "" for j in block)]
        out.append(
            table(
                [header[j] for j in keep],
                block_rows,
                text_columns=key_columns,
                font_size=font_size,
                widths=[widths[j] for j in keep],
            )
        )
        out.append(Spacer(1, 6))
    return out


def _image(png: bytes, width: float) -> Image:
    image = Image(io.BytesIO(png))
    scale = width / image.imageWidth
    image.drawWidth, image.drawHeight = width, image.imageHeight * scale
    image.hAlign = "LEFT"
    return image


def _chart(fig, width: float) -> Image:
    return _image(charts.to_png(fig), width)


# --- sections --------------------------------------------------------------------------------------------------


def _segments(data: ReportData) -> list[str]:
    return sorted(str(s) for s in data.reserves["segment"].unique())


def _cover(data: ReportData) -> list[Flowable]:
    reserves = data.reserves
    status = data.status.upper()
    explain = {
        "preliminary": "Preliminary: not yet approved; figures may change before the books close.",
        "approved": "Approved: the reserves below are the approved figures for this valuation date.",
    }[data.status]
    facts = [
        ["Valuation date", data.valuation_date.isoformat()],
        ["Status", status],
        ["Champion model version", data.champion_version],
        ["Publication version", str(data.publication_version)],
        ["Lines of business", ", ".join(_segments(data))],
        ["Origin periods", str(reserves["origin"].nunique())],
        ["Total latest paid", money(money_total(reserves["latest_paid"]))],
        ["Total ultimate", money(money_total(reserves["ultimate"]))],
        ["Total IBNR", money(money_total(reserves["ibnr"]))],
    ]
    sections = [
        "1. Summary of IBNR by line, with the movement against the previous valuation",
        "2. By line: ultimates and IBNR by origin, paid and incurred triangles, selected factors, charts",
        "3. Actual versus expected on the newest diagonal",
        "4. Champion versus challenger backtest",
        "5. Data quality",
        "6. Drift",
        "7. Pipeline health",
    ]
    return [
        Spacer(1, 2.5 * cm),
        _p("IBNR Reserve Report", "title"),
        _p(f"Valuation as at {data.valuation_date:%d %B %Y} &nbsp;&middot;&nbsp; {status}", "h2"),
        Spacer(1, 0.6 * cm),
        table(["Item", "Value"], facts),
        Spacer(1, 0.4 * cm),
        _p(explain),
        Spacer(1, 0.6 * cm),
        _p("Contents", "h2"),
        *[_p(s) for s in sections],
        PageBreak(),
    ]


def _line_totals(reserves: pd.DataFrame) -> dict[str, dict[str, float]]:
    out = {}
    for segment, rows in reserves.groupby("segment", sort=True):
        out[str(segment)] = {
            col: money_total(rows[col]) for col in ("latest_paid", "latest_incurred", "ultimate", "ibnr")
        }
    return out


def _summary(data: ReportData) -> list[Flowable]:
    current = _line_totals(data.reserves)
    previous = _line_totals(data.previous_reserves) if data.previous_reserves is not None else None
    header = ["Line", "Latest paid", "Latest incurred", "Ultimate", "IBNR", "Previous IBNR", "Movement", "Movement %"]
    rows = []
    for segment in sorted(current):
        now = current[segment]
        before = previous.get(segment, {}).get("ibnr") if previous is not None else None
        movement = None if before is None else money_total([now["ibnr"], -before])
        rows.append(
            [
                segment,
                money(now["latest_paid"]),
                money(now["latest_incurred"]),
                money(now["ultimate"]),
                money(now["ibnr"]),
                money(before),
                money(movement),
                percent(movement / before) if movement is not None and before else NA,
            ]
        )
    total = {c: money_total([v[c] for v in current.values()]) for c in ("latest_paid", "latest_incurred", "ultimate")}
    total_ibnr = money_total(data.reserves["ibnr"])
    total_before = money_total(data.previous_reserves["ibnr"]) if data.previous_reserves is not None else None
    total_movement = None if total_before is None else money_total([total_ibnr, -total_before])
    rows.append(
        [
            "Total",
            money(total["latest_paid"]),
            money(total["latest_incurred"]),
            money(total["ultimate"]),
            money(total_ibnr),
            money(total_before),
            money(total_movement),
            percent(total_movement / total_before) if total_movement is not None and total_before else NA,
        ]
    )
    note = (
        "Movement = IBNR now less IBNR at the previous valuation (all lines of that valuation in the total)."
        if previous is not None
        else "No previous valuation was supplied: movements are not available."
    )
    return [
        _p("1. Summary of IBNR by line", "h1"),
        _p(f"Published reserves, publication version {data.publication_version}, as at {data.valuation_date}."),
        Spacer(1, 4),
        table(header, rows, total_row=True),
        Spacer(1, 4),
        _p(note + " IBNR is the ultimate less paid to date.", "note"),
    ]


def _triangle(cells: pd.DataFrame, value: str, labels: dict[dt.date, str]) -> tuple[list[str], list[list[str]]]:
    frame = cells.assign(origin=cells["origin"].map(_as_date))
    pivot = frame.pivot_table(index="origin", columns="development", values=value, aggfunc="sum").sort_index()
    ages = sorted(int(a) for a in pivot.columns)
    header = ["Origin", *[str(a) for a in ages]]
    # An unobserved cell (below the latest diagonal) stays blank.
    rows = [
        [labels.get(origin, str(origin)), *["" if _missing(v) else money(v) for v in pivot.loc[origin, ages]]]
        for origin in pivot.index
    ]
    return header, rows


def _factor_header(row: pd.Series) -> str:
    to = row.get("development_to")
    end = "ult" if _missing(to) or int(to) >= 9999 else str(int(to))
    return f"{int(row['development'])}-{end}"


def _pattern(factors: pd.DataFrame) -> pd.DataFrame:
    """Percent of ultimate reached at each age implied by the selected factors (no tail beyond the last factor)."""
    ordered = factors.sort_values("development")
    ages = [int(a) for a in ordered["development"]]
    values = [float(f) for f in ordered["factor"]]
    cdf, out = 1.0, []
    for age, f in zip(reversed(ages), reversed(values), strict=True):
        cdf *= f
        out.append((age, 1.0 / cdf if cdf else math.nan))
    last = ordered["development_to"].iloc[-1] if "development_to" in ordered and len(ordered) else None
    if not _missing(last) and int(last) < 9999:
        out.append((int(last), 1.0))
    return pd.DataFrame(sorted(out), columns=["development", "percent"])


def _line_section(data: ReportData, segment: str, labels: dict[dt.date, str]) -> list[Flowable]:
    reserves = data.reserves[data.reserves["segment"] == segment].copy()
    reserves["origin"] = reserves["origin"].map(_as_date)
    reserves = reserves.sort_values("origin")
    cells = data.cells[data.cells["segment"] == segment]
    factors = data.factors[data.factors["segment"] == segment].sort_values("development")
    versions = sorted({str(v) for v in reserves["model_version"]})

    header = ["Origin", "Latest paid", "Latest incurred", "Ultimate", "IBNR", "Std. error", "CV", "P75", "P95"]
    rows = []
    for _, r in reserves.iterrows():
        cv = r["std_err"] / r["ibnr"] if not _missing(r["std_err"]) and r["ibnr"] else None
        rows.append(
            [
                labels[r["origin"]],
                money(r["latest_paid"]),
                money(r["latest_incurred"]),
                money(r["ultimate"]),
                money(r["ibnr"]),
                money(r["std_err"]),
                percent(cv),
                money(r["p75"]),
                money(r["p95"]),
            ]
        )
    rows.append(
        [
            "Total",
            *[money(money_total(reserves[c])) for c in ("latest_paid", "latest_incurred", "ultimate", "ibnr")],
            "",
            "",
            "",
            "",
        ]
    )
    out: list[Flowable] = [
        PageBreak(),
        _p(f"2. {_escape(segment)}", "h1"),
        _p(f"Model version {_escape(', '.join(versions))}."),
        _p("Ultimates and IBNR by origin", "h2"),
        table(header, rows, total_row=True),
        _p(
            "Std. error: standard error of the reserve estimate where the method defines one; P75/P95: the 75th "
            "and 95th percentiles of the reserve distribution; CV = std. error / IBNR.",
            "note",
        ),
    ]
    for value, title in (("paid", "Cumulative paid"), ("incurred", "Cumulative incurred")):
        if value in cells.columns and not cells.empty and cells[value].notna().any():
            tri_header, tri_rows = _triangle(cells, value, labels)
            out += [
                CondPageBreak(4 * cm),
                _p(f"{title} triangle (rows: origin; columns: development age in months)", "h2"),
                *wide_table(tri_header, tri_rows),
            ]
    if not factors.empty:
        fac_header = ["", *[_factor_header(r) for _, r in factors.iterrows()]]
        pattern = _pattern(factors)
        cdf_row = ["CDF to ultimate"]
        for age in factors["development"]:
            share = pattern.loc[pattern["development"] == int(age), "percent"]
            cdf_row.append(factor(1.0 / float(share.iloc[0])) if len(share) and share.iloc[0] else NA)
        fac_rows = [["Selected factor", *[factor(f) for f in factors["factor"]]], cdf_row]
        out += [CondPageBreak(3 * cm), _p("Selected age-to-age factors", "h2"), *wide_table(fac_header, fac_rows)]

    observed = None
    if not cells.empty and "paid" in cells.columns:
        ultimate = dict(zip(reserves["origin"], reserves["ultimate"], strict=True))
        observed = cells.assign(origin=cells["origin"].map(_as_date))
        observed = observed[observed["origin"].isin(list(ultimate))]
        observed = observed.assign(percent=observed["paid"] / observed["origin"].map(ultimate).replace(0, math.nan))
    pattern_fig = charts.development_pattern(
        _pattern(factors) if not factors.empty else pd.DataFrame(columns=["development", "percent"]),
        observed,
        title=f"{segment}: development pattern",
    )
    ibnr_fig = charts.ibnr_by_origin(
        [labels[o] for o in reserves["origin"]],
        reserves["ibnr"].tolist(),
        reserves["std_err"].tolist(),
        f"{segment}: IBNR by origin",
    )
    half = CONTENT_WIDTH / 2 - 6
    chart_row = Table([[_chart(pattern_fig, half), _chart(ibnr_fig, half)]], colWidths=[half + 6, half + 6])
    chart_row.hAlign = "LEFT"
    out += [KeepTogether([_p("Charts", "h2"), chart_row])]
    return out


def _actual_vs_expected(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [PageBreak(), _p("3. Actual versus expected on the newest diagonal", "h1")]
    ave = data.actual_vs_expected
    if ave.empty:
        return out + [_p("No actual-versus-expected results for this valuation.")]
    ave = ave.sort_values("segment")
    rows = [
        [str(r["segment"]), money(r["actual"]), money(r["expected"]), number(r["ratio"], 3)] for _, r in ave.iterrows()
    ]
    return out + [
        table(["Line", "Actual paid", "Expected paid", "Actual / expected"], rows),
        Spacer(1, 6),
        _chart(charts.actual_vs_expected(ave), CONTENT_WIDTH * 0.6),
    ]


def _backtest(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(6 * cm), _p("4. Champion versus challenger backtest", "h1")]
    bt = data.backtest
    if bt.empty:
        return out + [_p("No backtest this month: drift did not call for retraining, so no challenger was trained.")]
    versions = {
        role: sorted({str(v) for v in bt.loc[bt["role"] == role, "model_version"]})
        for role in ("champion", "challenger")
    }
    segments = sorted({str(s) for s in bt["segment"]}, key=lambda s: (s == "ALL", s))
    header = ["Segment", "Champion WAPE", "Challenger WAPE", "Champion RMSE", "Challenger RMSE", "Better"]
    rows = []
    for segment in segments:

        def pick(role: str, metric: str, segment: str = segment) -> float | None:
            hit = bt[(bt["segment"].astype(str) == segment) & (bt["role"] == role)]
            return None if hit.empty else float(hit[metric].iloc[0])

        wape_ch, wape_cc = pick("champion", "wape"), pick("challenger", "wape")
        better = NA
        if wape_ch is not None and wape_cc is not None:
            better = "challenger" if wape_cc < wape_ch else "champion" if wape_ch < wape_cc else "tie"
        rows.append(
            [
                "All lines" if segment == "ALL" else segment,
                number(wape_ch),
                number(wape_cc),
                money(pick("champion", "rmse")),
                money(pick("challenger", "rmse")),
                better,
            ]
        )
    described = "; ".join(f"{role}: {', '.join(v) or NA}" for role, v in versions.items())
    return out + [
        _p(f"Models: {_escape(described)}. Scored on held-out calendar diagonals (incremental paid); lower is better."),
        Spacer(1, 4),
        table(header, rows),
    ]


def _quality(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(6 * cm), _p("5. Data quality", "h1")]
    q = data.quality
    if q.empty:
        return out + [_p("No data-quality results were supplied.")]
    passed = int(q["success"].astype(bool).sum())
    rows, alerts = [], []
    for i, (_, r) in enumerate(q.iterrows()):
        ok = bool(r["success"])
        if not ok:
            alerts.append(i)
        count = r.get("unexpected_count")
        rows.append(
            [
                str(r["expectation"]),
                "" if _missing(r.get("column")) else str(r["column"]),
                "PASS" if ok else "FAIL",
                NA if _missing(count) else f"{int(count):,}",
            ]
        )
    return out + [
        _p(f"{passed} of {len(q)} checks passed."),
        Spacer(1, 4),
        table(["Expectation", "Column", "Result", "Unexpected rows"], rows, text_columns=3, alert_rows=alerts),
    ]


def _drift(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(6 * cm), _p("6. Drift", "h1")]
    d = data.drift
    if d.empty:
        return out + [_p("No drift metrics were supplied.")]
    rows, alerts = [], []
    for i, (_, r) in enumerate(d.sort_values("feature").iterrows()):
        breached = bool(r["breached"]) if not _missing(r["breached"]) else False
        if breached:
            alerts.append(i)
        rows.append(
            [
                str(r["feature"]),
                str(r["kind"]),
                number(r["psi"]),
                number(r["ks_statistic"]),
                pvalue(r["ks_pvalue"]),
                "BREACH" if breached else "ok",
            ]
        )
    n = len(alerts)
    return out + [
        _p(f"{n} of {len(d)} features breached their threshold." if n else "No feature breached its threshold."),
        Spacer(1, 4),
        table(
            ["Feature", "Kind", "PSI", "KS statistic", "KS p-value", "Breach"], rows, text_columns=2, alert_rows=alerts
        ),
    ]


def _health(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(8 * cm), _p("7. Pipeline health", "h1")]
    h = data.health
    if h.empty:
        return out + [_p("No pipeline runs recorded yet.")]
    h = h.sort_values(["valuation_date", "run_id"]).tail(12)
    ok = h["state"].astype(str).str.lower() == "success"
    seconds = pd.to_numeric(h["duration_seconds"], errors="coerce")
    summary = f"{int(ok.sum())} of {len(h)} runs succeeded ({percent(ok.mean())})."
    if seconds.notna().any():
        summary += (
            f" Duration: median {duration(seconds.median())}, mean {duration(seconds.mean())}, "
            f"longest {duration(seconds.max())} (h:mm:ss)."
        )
    rows, alerts = [], []
    for i, (_, r) in enumerate(h.iterrows()):
        if str(r["state"]).lower() != "success":
            alerts.append(i)
        rows.append(
            [
                str(r["run_id"]),
                "" if _missing(r["valuation_date"]) else _as_date(r["valuation_date"]).isoformat(),
                str(r["state"]),
                duration(r["duration_seconds"]),
                "" if _missing(r["failed_task"]) else str(r["failed_task"]),
            ]
        )
    labels = ["" if _missing(v) else _as_date(v).isoformat() for v in h["valuation_date"]]
    fig = charts.run_durations(labels, (seconds / 60).tolist(), ok.tolist())
    return out + [
        _p(summary),
        Spacer(1, 4),
        table(["Run", "Valuation date", "State", "Duration", "Failed task"], rows, text_columns=5, alert_rows=alerts),
        Spacer(1, 6),
        KeepTogether([_chart(fig, CONTENT_WIDTH * 0.6)]),
    ]


# --- document --------------------------------------------------------------------------------------------------


def _footer(data: ReportData):
    text = (
        f"IBNR reserve report  |  valuation {data.valuation_date.isoformat()}  |  {data.status.upper()}  |  "
        f"publication v{data.publication_version}  |  champion {data.champion_version}"
    )

    def draw(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(MARGIN, MARGIN / 2, text)
        canvas.drawRightString(PAGE_SIZE[0] - MARGIN, MARGIN / 2, f"Page {doc.page}")
        canvas.restoreState()

    return draw


def build_story(data: ReportData) -> list[Flowable]:
    """The report's flowables in reading order."""
    labels = origin_labels(list(data.reserves["origin"]) + list(data.cells.get("origin", [])))
    story = _cover(data) + _summary(data)
    for segment in _segments(data):
        story += _line_section(data, segment, labels)
    story += _actual_vs_expected(data) + _backtest(data) + _quality(data) + _drift(data) + _health(data)
    return story


def render_reserve_report(data: ReportData, path: str | Path) -> Path:
    """Write the reserve report for ``data`` to ``path`` (a PDF) and return the path.

    The same data always gives the same bytes: no wall-clock value enters the document.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(path),
        pagesize=PAGE_SIZE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=f"IBNR reserve report {data.valuation_date.isoformat()} ({data.status})",
        author="Reserving pipeline",
        subject=f"Reserves as at {data.valuation_date.isoformat()}, publication version {data.publication_version}",
        creator="include.reserving.report",
        invariant=1,
    )
    footer = _footer(data)
    story = build_story(data)
    saved = rl_config.useA85
    rl_config.useA85 = 0  # binary image streams: ASCII85 in pure Python costs more than the rest of the layout
    try:
        doc.build(story, onFirstPage=footer, onLaterPages=footer)
    finally:
        rl_config.useA85 = saved
    return path

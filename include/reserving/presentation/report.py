"""The reserve report: one PDF per valuation date, laid out with the :mod:`pdf` helper from plain data.

:class:`ReportData` carries everything the report shows (the published reserve rows, triangle cells, selected
factors, backtest, quality, drift and run-health frames); :func:`render_reserve_report` lays it out. No warehouse
access and no wall clock here: the same data gives a byte-identical PDF.

Numbers print through :mod:`formatting`, so a reader (or a test) can match the PDF against the warehouse to the cent.
Terms: unpaid = ultimate - paid = case reserves + IBNR; case reserves = incurred - paid; IBNR = ultimate - incurred.
Standard errors and percentiles are of the unpaid.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from reportlab.lib.units import cm
from reportlab.platypus import CondPageBreak, Flowable, Image, KeepTogether, PageBreak, Spacer, Table

from include.reserving.dates import previous_month_end
from include.reserving.domain import OVERALL, PublicationStatus, Role
from include.reserving.presentation import charts, pdf
from include.reserving.presentation.formatting import (
    NA,
    as_date,
    count,
    day,
    duration,
    factor,
    is_missing,
    money,
    money_total,
    number,
    origin_labels,
    percent,
    pvalue,
    signed,
)
from include.reserving.presentation.pdf import paragraph
from include.reserving.reconciliation import RESULT_COLUMNS as RECONCILIATION_COLUMNS

log = logging.getLogger(__name__)

STATUSES = tuple(s.value for s in PublicationStatus)
RESERVE_COLUMNS = [
    "segment",
    "origin",
    "latest_paid",
    "latest_incurred",
    "ultimate",
    "case_reserve",
    "ibnr",
    "unpaid",
    "std_err",
    "p75",
    "p95",
    "model_version",
]
PAGE = pdf.LANDSCAPE
WIDTH = PAGE.width


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
        case_reserve, ibnr, unpaid, std_err, p75, p95, model_version`` (``std_err``, ``p75``, ``p95`` of the unpaid,
        may be NaN; ``case_reserve`` and ``ibnr`` NaN where incurred is unknown).
    previous_reserves : pandas.DataFrame or None
        The same for the previous valuation date, for the movement of the unpaid by line.
    previous_valuation_date : datetime.date or None
        The valuation date of ``previous_reserves``, named wherever the report shows the previous unpaid.
    cells : pandas.DataFrame
        Triangle cells: ``segment, origin, development`` (age in months), ``paid``, ``incurred``; optionally the
        cumulative ``reported_count, closed_count`` and the origin-level ``earned_premium, exposure`` (read on each
        origin's latest diagonal).
    factors : pandas.DataFrame
        Selected age-to-age factors: ``segment, development, development_to, factor``.
    actual_vs_expected : pandas.DataFrame
        ``segment, actual, expected, ratio`` on the newest diagonal (may be empty).
    backtest : pandas.DataFrame
        ``model_version, role`` (champion/challenger), ``segment`` ("ALL" overall), ``wape, rmse`` (may be empty).
    quality : pandas.DataFrame
        ``expectation, column, success, unexpected_count``: the data-quality summary.
    reconciliation : pandas.DataFrame
        ``segment, measure, extract_value, control_value, difference, tolerance, passed, note``: the month's extract
        against the finance control totals (empty, or one row with a note: control totals were not provided).
    plausibility : pandas.DataFrame
        ``segment, check, observed, lower, upper, passed`` (None: skipped), ``detail`` of the month-level
        plausibility checks (may be empty; observed value and band optional).
    drift : pandas.DataFrame
        ``feature, kind, psi, ks_statistic, ks_pvalue, breached``.
    health : pandas.DataFrame
        The last runs: ``run_id, valuation_date, state, duration_seconds, failed_task``.
    movements : pandas.DataFrame or None
        The published run's analysis of change (``segment, step_order, step, kind, amount, ratio, note``; see
        :mod:`include.reserving.movement`); None or empty: not analysed.
    ranges : pandas.DataFrame or None
        The version's selection rule and range per line and in total (``reserve_ranges``: ``segment`` ("Total"
        last), ``selection_rule, tail_method, paid_tail_factor, incurred_tail_factor, range_basis, unpaid, std_err,
        cv, p75, p95``); None or empty: published before the methods (the model's ultimates).
    cv_floor : float
        No CV is printed where the unpaid is below this share of the paid (a CV of a near-zero reserve says nothing).
    origin_months : int or None
        The origin grain in months, which names the origins (``2023Q1``); None: inferred from their spacing.
    """

    valuation_date: dt.date
    status: str
    champion_version: str
    publication_version: int
    reserves: pd.DataFrame
    cells: pd.DataFrame
    factors: pd.DataFrame
    previous_reserves: pd.DataFrame | None = None
    previous_valuation_date: dt.date | None = None
    actual_vs_expected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["segment", "actual", "expected", "ratio"])
    )
    backtest: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["model_version", "role", "segment", "wape", "rmse"])
    )
    quality: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["expectation", "column", "success", "unexpected_count"])
    )
    reconciliation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RECONCILIATION_COLUMNS))
    plausibility: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["segment", "check", "observed", "lower", "upper", "passed", "detail"]
        )
    )
    drift: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "breached"]
        )
    )
    health: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["run_id", "valuation_date", "state", "duration_seconds", "failed_task"]
        )
    )
    movements: pd.DataFrame | None = None
    ranges: pd.DataFrame | None = None
    cv_floor: float = 0.01
    origin_months: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is invalid: use one of {STATUSES}")
        missing = [c for c in RESERVE_COLUMNS if c not in self.reserves.columns]
        if missing:
            raise ValueError(f"reserves lack columns {missing}")
        if self.reserves.empty:
            raise ValueError(f"no published reserves for {self.valuation_date}: nothing to report")


def _chart(fig, width: float) -> Image:
    return pdf.image(charts.to_png(fig), width)


# --- sections --------------------------------------------------------------------------------------------------


def _segments(data: ReportData) -> list[str]:
    return sorted(str(s) for s in data.reserves["segment"].unique())


def _cover(data: ReportData) -> list[Flowable]:
    reserves = data.reserves
    status = data.status.upper()
    explain = {
        "preliminary": "Preliminary: not yet approved; figures may change before the books close.",
        "approved": "Approved: the reserves below are the approved figures for this valuation date.",
        "held": "HELD: these figures await an actuary's sign-off and are not the current reserves.",
    }[data.status]
    facts = [
        ["Valuation date", data.valuation_date.isoformat()],
        ["Status", status],
        ["Model version", data.champion_version],
        ["Publication version", str(data.publication_version)],
        ["Lines of business", ", ".join(_segments(data))],
        ["Origin periods", str(reserves["origin"].nunique())],
        ["Total latest paid", money(money_total(reserves["latest_paid"]))],
        ["Total ultimate", money(money_total(reserves["ultimate"]))],
        ["Total case reserves", money(_known_total(reserves["case_reserve"]))],
        ["Total IBNR", money(_known_total(reserves["ibnr"]))],
        ["Total unpaid", money(money_total(reserves["unpaid"]))],
    ]
    sections = [
        "1. Summary by line: case reserves, IBNR and unpaid, with the movement of the unpaid",
        "1b. Analysis of change of the unpaid by line (emergence, new origins, change of model, other); 1c. ranges "
        "by line and in total",
        "2. By line: ultimates, case reserves, IBNR, unpaid and loss ratios by origin, claim counts, methods and "
        "selection, triangles, factors, charts",
        "3. Actual versus expected on the newest diagonal",
        "4. Champion versus challenger backtest",
        "5. Data quality and reconciliation to finance control totals: the gate, failures and warnings",
        "6. Drift",
        "7. Pipeline health",
        "Appendix A. Every data check: quality expectations, plausibility checks, reconciliation measures",
    ]
    return [
        Spacer(1, 0.8 * cm),
        paragraph("Reserve Report", "title"),
        paragraph(f"Valuation as at {data.valuation_date:%d %B %Y} \u00a0\u00b7\u00a0 {status}", "h2"),
        Spacer(1, 0.6 * cm),
        pdf.table(["Item", "Value"], facts, width=WIDTH),
        Spacer(1, 0.4 * cm),
        paragraph(f"{explain} {TERMS_NOTE}"),
        Spacer(1, 0.4 * cm),
        paragraph("Contents", "h2"),
        *[paragraph(s) for s in sections],
        PageBreak(),
    ]


def _models_by_line(data: ReportData) -> list[list[str]]:
    """Which model reserved which line, and the approval it carries (none: the fallback, or an older publication)."""
    rows = []
    for segment, group in data.reserves.groupby("segment", sort=True):
        ref = group["approval_ref"].iloc[0] if "approval_ref" in group else None
        rows.append([str(segment), str(group["model_version"].iloc[0]), NA if is_missing(ref) else str(ref)])
    return rows


# the money columns of the reserve tables, in the order they print
AMOUNTS = ("latest_paid", "latest_incurred", "case_reserve", "ultimate", "ibnr", "unpaid")
AMOUNT_HEADERS = ["Latest paid", "Latest incurred", "Case reserves", "Ultimate", "IBNR", "Unpaid"]
TERMS_NOTE = (
    "Case reserves = incurred - paid; IBNR = ultimate - incurred; unpaid = ultimate - paid = case reserves + IBNR."
)


LOSS_RATIO_NOTE = (
    "Ultimate LR = selected ultimate / earned premium; for a line or the total, over the origins with earned premium "
    "(n/a where none has)."
)


def _known_total(values) -> float | None:
    """The exact total, or None (n/a) when any amount is unknown: a partial sum would understate it."""
    values = list(values)
    return None if any(is_missing(v) for v in values) else money_total(values)


# per origin from its latest cell: earned premium and exposure (origin-level), the cumulative claim counts
CELL_FACTS = ["earned_premium", "exposure", "reported_count", "closed_count"]


def _with_cells(reserves: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The reserve rows (origins as dates) with each origin's premium, exposure and counts on the latest diagonal."""
    rows = reserves.assign(origin=reserves["origin"].map(as_date))
    if cells.empty:
        return rows.assign(**{c: math.nan for c in CELL_FACTS})
    latest = cells.assign(origin=cells["origin"].map(as_date)).sort_values("development")
    latest = latest.groupby(["segment", "origin"]).tail(1).reindex(columns=["segment", "origin", *CELL_FACTS])
    return rows.merge(latest.astype({c: float for c in CELL_FACTS}), on=["segment", "origin"], how="left")


def _ratio(numerator, denominator) -> float | None:
    """numerator / denominator; None (n/a) where either is missing or the denominator is zero."""
    if is_missing(numerator) or is_missing(denominator) or float(denominator) == 0:
        return None
    return float(numerator) / float(denominator)


def _premium_and_loss_ratio(rows: pd.DataFrame) -> tuple[float | None, float | None]:
    """Earned premium of the rows and the ultimate loss ratio over the origins that have premium (None: none have)."""
    priced = rows[rows["earned_premium"].fillna(0) != 0]
    if priced.empty:
        return None, None
    premium = money_total(priced["earned_premium"])
    return premium, _ratio(money_total(priced["ultimate"]), premium)


def _line_totals(reserves: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {
        str(segment): {col: _known_total(rows[col]) for col in AMOUNTS}
        for segment, rows in reserves.groupby("segment", sort=True)
    }


def _previous_name(previous: dt.date | None) -> str:
    """The previous valuation by its date (``the previous valuation`` where the date was not supplied)."""
    return "the previous valuation" if previous is None else day(previous)


def _summary(data: ReportData) -> list[Flowable]:
    current = _line_totals(data.reserves)
    previous = _line_totals(data.previous_reserves) if data.previous_reserves is not None else None
    priced = _with_cells(data.reserves, data.cells)
    before = _previous_name(data.previous_valuation_date)
    previous_header = "Previous unpaid" if data.previous_valuation_date is None else f"Unpaid at {before}"
    header = ["Line", *AMOUNT_HEADERS, previous_header, "Movement", "Movement %", "Earned premium", "Ultimate LR"]

    def row(label: str, now: dict, before: float | None, rows: pd.DataFrame) -> list[str]:
        movement = None if before is None else money_total([now["unpaid"], -before])
        change = percent(movement / before) if movement is not None and before else NA
        premium, loss_ratio = _premium_and_loss_ratio(rows)
        amounts = [money(now[c]) for c in AMOUNTS]
        return [label, *amounts, money(before), money(movement), change, money(premium), percent(loss_ratio)]

    rows = [
        row(
            segment,
            current[segment],
            previous.get(segment, {}).get("unpaid") if previous is not None else None,
            priced[priced["segment"] == segment],
        )
        for segment in sorted(current)
    ]
    total = {c: _known_total(data.reserves[c]) for c in AMOUNTS}
    previous_total = money_total(data.previous_reserves["unpaid"]) if previous is not None else None
    rows.append(row("Total", total, previous_total, priced))
    note = (
        f"Movement = unpaid now less unpaid at {before} (all lines of that valuation in the total)."
        if previous is not None
        else "No previous valuation was supplied: movements are not available."
    )
    return [
        paragraph("1. Summary by line: case reserves, IBNR and unpaid", "h1"),
        paragraph(f"Published reserves, publication version {data.publication_version}, as at {data.valuation_date}."),
        Spacer(1, 4),
        pdf.table(header, rows, width=WIDTH, total_row=True),
        Spacer(1, 4),
        paragraph(f"{note} {TERMS_NOTE} {LOSS_RATIO_NOTE}", "note"),
        Spacer(1, 4),
        paragraph(
            "Each line of business is reserved by its own champion (its spec refitted on this month's data; a line "
            "without an approved model by the chain-ladder fallback, preliminary):"
        ),
        pdf.table(["Line", "Reserved by model", "Approval behind it"], _models_by_line(data), width=WIDTH),
    ]


def _analysis_of_change(data: ReportData) -> list[Flowable]:
    """The movement from the previous valuation's unpaid to this one, step by step per line; the steps tie."""
    out: list[Flowable] = [CondPageBreak(8 * cm), paragraph("1b. Analysis of change by line", "h1")]
    aoc = data.movements
    if aoc is None or aoc.empty:
        return out + [paragraph("No analysis of change was recorded for this publication.")]
    if aoc.loc[aoc["kind"] == "opening", "amount"].isna().all():
        return out + [
            paragraph(f"No publication at {previous_month_end(data.valuation_date)}: no movement to analyse.")
        ]
    lines = sorted(str(s) for s in aoc["segment"].unique())
    before = previous_month_end(data.valuation_date).isoformat()  # the analysis runs from V-1's publication
    steps = aoc.drop_duplicates("step_order").sort_values("step_order")
    header = ["Step", *lines, "Total"]
    rows, notes = [], {}
    for step in steps.itertuples(index=False):
        values = aoc[aoc["step_order"] == step.step_order].set_index("segment")
        if step.kind == "memo" and values["amount"].isna().all():  # the A/E row: ratios, no total
            rows.append([step.step, *[number(values["ratio"].get(s), 2) for s in lines], ""])
            continue
        amounts = [values["amount"].get(s) for s in lines]
        label = f"unpaid at {before}" if step.kind == "opening" else step.step
        rows.append([label, *[money(a) for a in amounts], money(money_total(amounts))])
        for s, note in values["note"].dropna().items():
            notes.setdefault(str(note).replace("V-1", before), []).append(str(s))
    return out + [
        paragraph(
            f"From the unpaid (case reserves + IBNR) of the current publication at {before} to this "
            f"publication (version {data.publication_version}); that unpaid less actual emergence plus new origin "
            "periods, change of model and experience and other equals this month's figure to the cent."
        ),
        Spacer(1, 4),
        pdf.table(header, rows, width=WIDTH),
        Spacer(1, 4),
        *[paragraph(f"{', '.join(segs)}: {note}", "note") for note, segs in notes.items()],
    ]


def _triangle(cells: pd.DataFrame, value: str, labels: dict[dt.date, str]) -> tuple[list[str], list[list[str]]]:
    frame = cells.assign(origin=cells["origin"].map(as_date))
    pivot = frame.pivot_table(index="origin", columns="development", values=value, aggfunc="sum").sort_index()
    ages = sorted(int(a) for a in pivot.columns)
    header = ["Origin", *[str(a) for a in ages]]
    # An unobserved cell (below the latest diagonal) stays blank.
    rows = [
        [labels.get(origin, str(origin)), *["" if is_missing(v) else money(v) for v in pivot.loc[origin, ages]]]
        for origin in pivot.index
    ]
    return header, rows


def _factor_header(row: pd.Series) -> str:
    to = row.get("development_to")
    end = "ult" if is_missing(to) or int(to) >= 9999 else str(int(to))
    return f"{int(row['development'])}-{end}"


LINK_RATIO_NOTE = (
    "Link ratio = cumulative paid at the next age / paid at this age, per origin. Simple average: the mean of an "
    "age's link ratios; volume-weighted (indicated): the sum of paid at the next age / the sum at this age over the "
    "same origins; latest 3: the simple mean of the three youngest origins' link ratios. Selected: the factors the "
    "reserving model used (the tail to ultimate included); selected - indicated: its departure from the "
    "volume-weighted average; CDF: the product of the selected factors from the age to ultimate."
)


def _printed_difference(a: float, b: float) -> float:
    return round(round(a, 4) - round(b, 4), 4) + 0.0  # + 0.0: no negative zero


def _link_ratio_exhibit(cells: pd.DataFrame, factors: pd.DataFrame, labels: dict[dt.date, str]) -> list[Flowable]:
    """One line's paid link ratios per origin, their averages per age, and the indicated against the selected."""
    from include.reserving.cells import link_ratio_averages, link_ratios

    if "paid" not in cells.columns:
        return []
    steps = link_ratios(cells)
    if steps.empty and factors.empty:
        return []
    averages = link_ratio_averages(steps)
    # a column per age: the observed steps, and the selected factors beyond them (the tail)
    columns = pd.concat([factors, averages])[["development", "development_to"]].drop_duplicates("development")
    columns = columns.sort_values("development")
    ages = [int(a) for a in columns["development"]]

    def by_age(frame: pd.DataFrame, value: str) -> dict[int, float]:
        return {int(a): v for a, v in zip(frame["development"], frame[value], strict=True)} if value in frame else {}

    def row(label: str, values: dict[int, float], show=factor) -> list[str]:
        return [label, *[show(values[a]) if a in values else "" for a in ages]]

    rows = [
        row(labels.get(origin, str(origin)), by_age(ratios.dropna(subset=["factor"]), "factor"))
        for origin, ratios in steps.assign(origin=steps["origin"].map(as_date)).groupby("origin", sort=True)
    ]
    indicated, selected = by_age(averages, "volume"), by_age(factors, "factor")
    rows += [
        row("Simple average", by_age(averages, "simple")),
        row("Volume-weighted (indicated)", indicated),
        row("Simple average, latest 3", by_age(averages, "latest")),
        row("Selected", selected),
        # the difference of the printed factors, so the row reads as their subtraction (and never as -0.0000)
        row(
            "Selected - indicated",
            {a: _printed_difference(selected[a], indicated[a]) for a in selected if a in indicated},
            signed,
        ),
    ]
    if not factors.empty:
        pattern = _pattern(factors)
        cdf = {int(a): 1.0 / p for a, p in zip(pattern["development"], pattern["percent"], strict=True) if p}
        rows.append(row("CDF to ultimate", {a: cdf[a] for a in selected if a in cdf}))
    return [
        CondPageBreak(5 * cm),
        paragraph("Paid link ratios: averages, indicated and selected factors", "h2"),
        *pdf.wide_table(["Origin", *[_factor_header(r) for _, r in columns.iterrows()]], rows, width=WIDTH),
        paragraph(LINK_RATIO_NOTE, "note"),
    ]


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
    if not is_missing(last) and int(last) < 9999:
        out.append((int(last), 1.0))
    return pd.DataFrame(sorted(out), columns=["development", "percent"])


def _cv(std_err, unpaid, paid, floor: float) -> float | None:
    """Std. error / unpaid, None where either is missing or the unpaid is below ``floor`` of the paid."""
    if is_missing(std_err) or is_missing(unpaid) or abs(unpaid) < floor * max(abs(paid), 1.0):
        return None
    return std_err / unpaid


METHOD_ULTIMATES = {
    "paid_cl_ultimate": "Paid CL",
    "incurred_cl_ultimate": "Incurred CL",
    "bf_ultimate": "BF",
    "cape_cod_ultimate": "Cape Cod",
    "model_ultimate": "Model",
}
METHOD_NAMES = {
    "paid_cl": "paid CL",
    "incurred_cl": "incurred CL",
    "bf": "BF",
    "cape_cod": "Cape Cod",
    "model": "model",
}


def _range_row(ranges: pd.DataFrame | None, segment: str) -> dict | None:
    if ranges is None or ranges.empty or segment not in set(ranges["segment"]):
        return None
    return ranges[ranges["segment"] == segment].iloc[0].to_dict()


def _ranges(data: ReportData) -> list[Flowable]:
    """The range of the unpaid by line and in total."""
    out: list[Flowable] = [CondPageBreak(6 * cm), paragraph("1c. Ranges of the unpaid by line and in total", "h1")]
    if data.ranges is None or data.ranges.empty:
        return out + [paragraph("No ranges were recorded for this publication (published before the methods).")]
    header = ["Line", "Unpaid", "Std. error", "CV", "P75", "P95", "Paid tail", "Incurred tail", "Basis"]
    rows = [
        [
            str(r["segment"]),
            money(r["unpaid"]),
            money(r["std_err"]),
            percent(r["cv"]),
            money(r["p75"]),
            money(r["p95"]),
            factor(r["paid_tail_factor"]),
            factor(r["incurred_tail_factor"]),
            str(r["range_basis"]),
        ]
        for r in data.ranges.to_dict("records")
    ]
    return out + [
        pdf.table(header, rows, width=WIDTH, total_row=rows[-1][0] == "Total"),
        Spacer(1, 4),
        paragraph(
            "Std. error: Mack's standard error of the line's chain ladder unpaid (tail included), taken as the "
            "standard error of the selected unpaid; P75/P95 from a lognormal with the selected unpaid as its mean. "
            "The total assumes the lines independent (standard errors add in quadrature), which understates the "
            "range where lines move together. CV n/a where the unpaid is near zero.",
            "note",
        ),
    ]


def _methods_section(data: ReportData, segment: str, labels: dict[dt.date, str]) -> list[Flowable]:
    """Each method's ultimate per origin beside the selected one, its method, the rule and the flags."""
    reserves = data.reserves[data.reserves["segment"] == segment].copy()
    reserves["origin"] = reserves["origin"].map(as_date)
    reserves = reserves.sort_values("origin")
    header = ["Origin", *METHOD_ULTIMATES.values(), "Selected", "Method", "Flags"]
    rows = [
        [
            labels[r["origin"]],
            *[money(r.get(c)) for c in METHOD_ULTIMATES],
            money(r["ultimate"]),
            METHOD_NAMES.get(r.get("method"), NA) if not is_missing(r.get("method")) else NA,
            "" if is_missing(r.get("flags")) else str(r.get("flags")),
        ]
        for r in reserves.to_dict("records")
    ]
    rows.append(
        [
            "Total",
            *[money(_known_total(reserves[c])) if c in reserves else NA for c in METHOD_ULTIMATES],
            money(money_total(reserves["ultimate"])),
            "",
            "",
        ]
    )
    rng = _range_row(data.ranges, segment)
    rule = (
        f"Selection rule: {rng['selection_rule']}. Tail ({rng['tail_method']}): paid "
        f"{factor(rng['paid_tail_factor'])}, incurred {factor(rng['incurred_tail_factor'])}. BF a-priori loss ratio "
        f"{percent(rng['bf_apriori_loss_ratio'])}; Cape Cod expected loss ratio {percent(rng['cape_cod_elr'])}."
        if rng is not None
        else "No selection was recorded for this publication: the ultimates are the model's."
    )
    return [
        PageBreak(),
        paragraph(f"2. {segment}: methods and selection", "h2"),
        paragraph(rule),
        Spacer(1, 4),
        pdf.table(header, rows, width=WIDTH, total_row=True),
        paragraph(
            "CL: chain ladder (with the tail); BF: Bornhuetter-Ferguson on earned premium; Cape Cod on earned "
            "premium; Model: the ML model's ultimate (n/a where it has none). Selected: the published ultimate, set "
            "by the method named. Flags: a method's ultimate below incurred (negative IBNR) or below paid.",
            "note",
        ),
    ]


def _claim_counts(reserves: pd.DataFrame, labels: dict[dt.date, str]) -> list[Flowable]:
    """Reported, closed and open claims per origin with the severity and frequency (``reserves`` from _with_cells)."""
    out: list[Flowable] = [CondPageBreak(4 * cm), paragraph("Claim counts, severity and frequency by origin", "h2")]
    if reserves["reported_count"].isna().all():
        return out + [paragraph("No claim counts were supplied for this line.")]

    def row(label: str, rows: pd.DataFrame) -> list[str]:
        reported, closed = (rows[c].sum(min_count=len(rows)) for c in ("reported_count", "closed_count"))
        incurred = _known_total(rows["latest_incurred"])
        exposed = rows[rows["exposure"].fillna(0) != 0]  # the frequency over the origins with exposure
        exposure = exposed["exposure"].sum(min_count=1)
        return [
            label,
            count(reported),
            count(closed),
            count(reported - closed),
            money(incurred),
            money(_ratio(incurred, reported)),
            money(exposure),
            number(_ratio(exposed["reported_count"].sum(min_count=1), exposure)),
        ]

    rows = [row(labels[origin], reserves[reserves["origin"] == origin]) for origin in reserves["origin"]]
    rows.append(row("Total", reserves))
    header = ["Origin", "Reported", "Closed", "Open", "Latest incurred", "Severity", "Exposure", "Frequency"]
    return out + [
        pdf.table(header, rows, width=WIDTH * 0.75, total_row=True),
        paragraph(
            "Cumulative claim counts on the latest diagonal. Open = reported - closed; severity = latest incurred / "
            "reported claims; frequency = reported claims per exposure unit (n/a where exposure is missing or 0; for "
            "the total, over the origins with exposure).",
            "note",
        ),
    ]


def _line_section(data: ReportData, segment: str, labels: dict[dt.date, str]) -> list[Flowable]:
    from include.reserving.cells import young_segments  # chainladder: only when a report is rendered

    cells = data.cells[data.cells["segment"] == segment]
    reserves = _with_cells(data.reserves[data.reserves["segment"] == segment], cells).sort_values("origin")
    factors = data.factors[data.factors["segment"] == segment].sort_values("development")
    versions = sorted({str(v) for v in reserves["model_version"]})

    header = ["Origin", *AMOUNT_HEADERS, "Std. error", "CV", "P75", "P95", "Earned premium", "Ultimate LR"]
    rows = []
    for _, r in reserves.iterrows():
        cv = _cv(r["std_err"], r["unpaid"], r["latest_paid"], data.cv_floor)
        rows.append(
            [
                labels[r["origin"]],
                *[money(r[c]) for c in AMOUNTS],
                money(r["std_err"]),
                percent(cv),
                money(r["p75"]),
                money(r["p95"]),
                money(r["earned_premium"]),
                percent(_ratio(r["ultimate"], r["earned_premium"])),
            ]
        )
    premium, loss_ratio = _premium_and_loss_ratio(reserves)
    totals = [money(_known_total(reserves[c])) for c in AMOUNTS]
    rows.append(["Total", *totals, "", "", "", "", money(premium), percent(loss_ratio)])
    young = (
        [
            paragraph(
                f"{segment} is too young for development factors of its own (every cell at one development age): "
                "reserved by the chain ladder with factors borrowed from the rest of the book, without a standard "
                "error."
            )
        ]
        if segment in young_segments(cells)
        else []
    )
    out: list[Flowable] = [
        PageBreak(),
        paragraph(f"2. {segment}", "h1"),
        paragraph(f"Model version {', '.join(versions)}."),
        *young,
        paragraph("Ultimates, case reserves, IBNR and unpaid by origin", "h2"),
        pdf.table(header, rows, width=WIDTH, total_row=True),
        paragraph(
            f"{TERMS_NOTE} Std. error: standard error of the unpaid where the method defines one; P75/P95: the 75th "
            f"and 95th percentiles of the unpaid; CV = std. error / unpaid, n/a where the unpaid is near zero. "
            f"{LOSS_RATIO_NOTE}",
            "note",
        ),
        *_claim_counts(reserves, labels),
        *_methods_section(data, segment, labels),
    ]
    for value, title in (("paid", "Cumulative paid"), ("incurred", "Cumulative incurred")):
        if value in cells.columns and not cells.empty and cells[value].notna().any():
            tri_header, tri_rows = _triangle(cells, value, labels)
            out += [
                CondPageBreak(4 * cm),
                paragraph(f"{title} triangle (rows: origin; columns: development age in months)", "h2"),
                *pdf.wide_table(tri_header, tri_rows, width=WIDTH),
            ]
    out += _link_ratio_exhibit(cells, factors, labels)

    observed = None
    if not cells.empty and "paid" in cells.columns:
        ultimate = dict(zip(reserves["origin"], reserves["ultimate"], strict=True))
        observed = cells.assign(origin=cells["origin"].map(as_date))
        observed = observed[observed["origin"].isin(list(ultimate))]
        observed = observed.assign(percent=observed["paid"] / observed["origin"].map(ultimate).replace(0, math.nan))
    pattern_fig = charts.development_pattern(
        _pattern(factors) if not factors.empty else pd.DataFrame(columns=["development", "percent"]),
        observed,
        title=f"{segment}: development pattern",
    )
    unpaid_fig = charts.unpaid_by_origin(
        [labels[o] for o in reserves["origin"]],
        reserves[["case_reserve", "ibnr", "unpaid", "std_err"]],
        f"{segment}: unpaid by origin",
    )
    half = WIDTH / 2 - 6
    chart_row = Table([[_chart(pattern_fig, half), _chart(unpaid_fig, half)]], colWidths=[half + 6, half + 6])
    chart_row.hAlign = "LEFT"
    out += [KeepTogether([paragraph("Charts", "h2"), chart_row])]
    return out


def _actual_vs_expected(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [PageBreak(), paragraph("3. Actual versus expected on the newest diagonal", "h1")]
    ave = data.actual_vs_expected
    if ave.empty:
        return out + [paragraph("No actual-versus-expected results for this valuation.")]
    ave = ave.sort_values("segment")
    rows = [
        [str(r["segment"]), money(r["actual"]), money(r["expected"]), number(r["ratio"], 3)] for _, r in ave.iterrows()
    ]
    return out + [
        pdf.table(["Line", "Actual paid", "Expected paid", "Actual / expected"], rows, width=WIDTH),
        Spacer(1, 6),
        _chart(charts.actual_vs_expected(ave), WIDTH * 0.6),
    ]


def _backtest(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(6 * cm), paragraph("4. Champion versus challenger backtest", "h1")]
    bt = data.backtest
    if bt.empty:
        return out + [
            paragraph("No backtest this month: drift did not call for retraining, so no challenger was trained.")
        ]
    versions = {role: sorted({str(v) for v in bt.loc[bt["role"] == role, "model_version"]}) for role in Role}
    segments = sorted({str(s) for s in bt["segment"]}, key=lambda s: (s == OVERALL, s))
    header = ["Segment", "Champion WAPE", "Challenger WAPE", "Champion RMSE", "Challenger RMSE", "Better"]
    rows = []
    for segment in segments:

        def pick(role: str, metric: str, segment: str = segment) -> float | None:
            hit = bt[(bt["segment"].astype(str) == segment) & (bt["role"] == role)]
            return None if hit.empty else float(hit[metric].iloc[0])

        wape_ch, wape_cc = pick(Role.CHAMPION, "wape"), pick(Role.CHALLENGER, "wape")
        better = NA
        if wape_ch is not None and wape_cc is not None:
            better = "challenger" if wape_cc < wape_ch else "champion" if wape_ch < wape_cc else "tie"
        rows.append(
            [
                "All lines" if segment == OVERALL else segment,
                number(wape_ch),
                number(wape_cc),
                money(pick(Role.CHAMPION, "rmse")),
                money(pick(Role.CHALLENGER, "rmse")),
                better,
            ]
        )
    described = "; ".join(f"{role}: {', '.join(v) or NA}" for role, v in versions.items())
    return out + [
        paragraph(
            f"Models: {described}. Scored on the paid emerging since each of the last valuations, each refitted as "
            "at that valuation (cumulative); lower is better."
        ),
        Spacer(1, 4),
        pdf.table(header, rows, width=WIDTH),
    ]


def _passes(kinds: list[str], total: int, noun: str) -> str:
    """One line for the passed checks: how many of how many, and of which kinds (the passes are not listed)."""
    counts = Counter(kinds)
    named = ", ".join(f"{kind} ({n})" if n > 1 else kind for kind, n in sorted(counts.items()))
    return f"{len(kinds)} of {total} {noun}" + (f": {named}." if named else ".")


def _compared(reconciliation: pd.DataFrame) -> pd.DataFrame:
    """The reconciliation rows that compare numbers (not the note that control totals were not provided)."""
    r = reconciliation
    return r[r["control_value"].notna() | r["extract_value"].notna()] if not r.empty else r


def _bound(value) -> str:
    return "none" if is_missing(value) else money(value)


def _plausibility_result(passed) -> str:
    return "SKIPPED" if is_missing(passed) else "PASS" if bool(passed) else "FAIL"


def _issues(data: ReportData) -> tuple[list[list[str]], list[int]]:
    """Every failure and warning of the month's checks, one row each, and the indices of the failures.

    Failures: quality expectations that failed, reconciliation measures outside tolerance. Warnings: plausibility
    checks that failed or were skipped (the run goes on, an actuary should know)."""
    rows, failures = [], []
    q = data.quality
    for _, r in q[~q["success"].astype(bool)].iterrows():
        failures.append(len(rows))
        column = "" if is_missing(r.get("column")) else str(r["column"])
        rows.append(
            ["Quality", str(r["expectation"]), column, "FAIL", f"{count(r['unexpected_count'])} unexpected rows"]
        )
    p = data.plausibility
    for r in p[p["passed"].ne(True)].to_dict("records"):
        detail = f"observed {money(r.get('observed'))}, " + (
            "no band"
            if is_missing(r.get("lower")) and is_missing(r.get("upper"))
            else f"band [{_bound(r.get('lower'))}, {_bound(r.get('upper'))}]"
        )
        if not is_missing(r.get("detail")):
            detail += f"; {r['detail']}"
        rows.append(
            [
                "Plausibility",
                str(r["check"]),
                str(r["segment"]),
                "WARNING (skipped)" if is_missing(r["passed"]) else "WARNING (failed)",
                detail,
            ]
        )
    compared = _compared(data.reconciliation)
    for _, r in compared[~compared["passed"].astype(bool)].sort_values(["segment", "measure"]).iterrows():
        failures.append(len(rows))
        detail = (
            f"extract {money(r['extract_value'])}, control {money(r['control_value'])}, difference "
            f"{money(r['difference'])}, tolerance {money(r['tolerance'])}"
        )
        if not is_missing(r.get("note")):
            detail += f"; {r['note']}"
        rows.append(["Reconciliation", str(r["measure"]).replace("_", " "), str(r["segment"]), "FAIL", detail])
    return rows, failures


def _plausibility_line(checks: pd.DataFrame) -> str:
    """One sentence on the month-level plausibility checks: passed, failed and skipped, with their lines."""
    if checks.empty:
        return "No month-level plausibility checks were supplied."

    def clause(rows: pd.DataFrame, what: str) -> str:
        return f"; {len(rows)} {what} ({', '.join(sorted(set(rows['segment'])))})" if len(rows) else ""

    passed = int(checks["passed"].eq(True).sum())
    failed = clause(checks[checks["passed"].eq(False)], "failed")
    skipped = clause(checks[checks["passed"].isna()], "skipped")
    return f"Month-level plausibility: {passed} of {len(checks)} checks passed{failed}{skipped}."


def _reconciliation_line(data: ReportData) -> str:
    compared = _compared(data.reconciliation)
    if compared.empty:
        return (
            f"Reconciliation: control totals were not provided for {data.valuation_date:%B %Y}: the month's extract "
            "was not reconciled to the general ledger."
        )
    ok = compared["passed"].astype(bool)
    kinds = [str(m).replace("_", " ") for m in compared.loc[ok, "measure"]]
    return (
        f"Reconciliation to finance control totals: {_passes(kinds, len(compared), 'line measures within tolerance')}"
        f" Extract: transactions dated in {data.valuation_date:%B %Y} and recorded by the valuation date, per line "
        "of business."
    )


def _data_checks(data: ReportData) -> list[Flowable]:
    """Section 5 on one page: the gate's result, the counts, every failure and warning, the reconciliation result.
    The passed checks are counted, not listed: Appendix A lists every check."""
    q = data.quality
    if q.empty:
        gate = "No data-quality results were supplied."
    else:
        ok = q["success"].astype(bool)
        kinds = [str(e).removeprefix("expect_").replace("_", " ") for e in q.loc[ok, "expectation"]]
        verdict = "The quality gate passed" if ok.all() else "The quality gate FAILED"
        gate = f"{verdict}: {_passes(kinds, len(q), 'checks passed')}"
    rows, failures = _issues(data)
    issues: list[Flowable] = (
        [
            pdf.table(
                ["Kind", "Check", "Line or column", "Result", "Detail"],
                rows,
                width=WIDTH,
                text_columns=5,
                alert_rows=failures,
            )
        ]
        if rows
        else [paragraph("No check failed and none was skipped.")]
    )
    section = [
        paragraph("5. Data quality and reconciliation", "h1"),
        paragraph(gate),
        paragraph(_plausibility_line(data.plausibility)),
        paragraph(_reconciliation_line(data)),
        Spacer(1, 4),
        paragraph("Failures and warnings", "h2"),
        *issues,
        Spacer(1, 4),
        paragraph(
            "Failures: expectations that failed, reconciliation measures outside tolerance. Warnings: plausibility "
            "checks that failed or were skipped. Appendix A lists every check with its result.",
            "note",
        ),
    ]
    return [CondPageBreak(6 * cm), KeepTogether(section)]


def _appendix(data: ReportData) -> list[Flowable]:
    """Appendix A: every quality expectation, plausibility check (observed value and band) and reconciliation
    measure, passed or not."""
    out: list[Flowable] = [PageBreak(), paragraph("Appendix A. Every data check", "h1")]
    q = data.quality
    out.append(paragraph("A.1 Quality expectations", "h2"))
    if q.empty:
        out.append(paragraph("No data-quality results were supplied."))
    else:
        rows = [
            [
                str(r["expectation"]),
                "" if is_missing(r.get("column")) else str(r["column"]),
                "PASS" if bool(r["success"]) else "FAIL",
                count(r.get("unexpected_count")),
            ]
            for _, r in q.iterrows()
        ]
        alerts = [i for i, row in enumerate(rows) if row[2] == "FAIL"]
        header = ["Expectation", "Column", "Result", "Unexpected rows"]
        out.append(pdf.table(header, rows, width=WIDTH, text_columns=3, alert_rows=alerts))
    p = data.plausibility
    out.append(paragraph("A.2 Month-level plausibility checks", "h2"))
    if p.empty:
        out.append(paragraph("No month-level plausibility checks were supplied."))
    else:
        rows = [
            [
                str(r["segment"]),
                str(r["check"]),
                money(r.get("observed")),
                _bound(r.get("lower")),
                _bound(r.get("upper")),
                _plausibility_result(r["passed"]),
                "" if is_missing(r.get("detail")) else str(r["detail"]),
            ]
            for r in p.sort_values(["segment", "check"]).to_dict("records")
        ]
        alerts = [i for i, row in enumerate(rows) if row[5] == "FAIL"]
        header = ["Line", "Check", "Observed", "Lower", "Upper", "Result", "Detail"]
        out.append(pdf.table(header, rows, width=WIDTH, text_columns=2, alert_rows=alerts))
    r = data.reconciliation
    out.append(paragraph("A.3 Reconciliation to finance control totals", "h2"))
    if _compared(r).empty:
        out.append(paragraph(_reconciliation_line(data)))
    else:
        rows = [
            [
                str(row["segment"]),
                str(row["measure"]).replace("_", " "),
                money(row["extract_value"]),
                money(row["control_value"]),
                money(row["difference"]),
                money(row["tolerance"]),
                "PASS" if bool(row["passed"]) else "FAIL",
                "" if is_missing(row.get("note")) else str(row["note"]),
            ]
            for _, row in r.sort_values(["segment", "measure"]).iterrows()
        ]
        alerts = [i for i, row in enumerate(rows) if row[6] == "FAIL"]
        header = ["Line", "Measure", "Extract", "Control total", "Difference", "Tolerance", "Result", "Note"]
        out.append(pdf.table(header, rows, width=WIDTH, text_columns=2, alert_rows=alerts))
    return out


def _drift(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(6 * cm), paragraph("6. Drift", "h1")]
    d = data.drift
    if d.empty:
        return out + [paragraph("No drift metrics were supplied.")]
    rows, alerts = [], []
    for i, (_, r) in enumerate(d.sort_values("feature").iterrows()):
        breached = bool(r["breached"]) if not is_missing(r["breached"]) else False
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
        paragraph(f"{n} of {len(d)} features breached their threshold." if n else "No feature breached its threshold."),
        Spacer(1, 4),
        pdf.table(
            ["Feature", "Kind", "PSI", "KS statistic", "KS p-value", "Breach"],
            rows,
            width=WIDTH,
            text_columns=2,
            alert_rows=alerts,
        ),
    ]


def _health(data: ReportData) -> list[Flowable]:
    out: list[Flowable] = [CondPageBreak(8 * cm), paragraph("7. Pipeline health", "h1")]
    h = data.health
    if h.empty:
        return out + [paragraph("No pipeline runs recorded yet.")]
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
                day(r["valuation_date"]),
                str(r["state"]),
                duration(r["duration_seconds"]),
                "" if is_missing(r["failed_task"]) else str(r["failed_task"]),
            ]
        )
    labels = [day(v) for v in h["valuation_date"]]
    fig = charts.run_durations(labels, (seconds / 60).tolist(), ok.tolist())
    return out + [
        paragraph(summary),
        Spacer(1, 4),
        pdf.table(
            ["Run", "Valuation date", "State", "Duration", "Failed task"],
            rows,
            width=WIDTH,
            text_columns=5,
            alert_rows=alerts,
        ),
        Spacer(1, 6),
        KeepTogether([_chart(fig, WIDTH * 0.6)]),
    ]


# --- document ------------------------------------------------------------------------------------------------


def build_story(data: ReportData) -> list[Flowable]:
    """The report's flowables in reading order."""
    labels = origin_labels(list(data.reserves["origin"]) + list(data.cells.get("origin", [])), data.origin_months)
    sections = [
        ("cover", _cover),
        ("summary", _summary),
        ("analysis of change", _analysis_of_change),
        ("ranges", _ranges),
        *((f"line {s}", lambda d, s=s: _line_section(d, s, labels)) for s in _segments(data)),
        ("actual vs expected", _actual_vs_expected),
        ("backtest", _backtest),
        ("data checks", _data_checks),
        ("drift", _drift),
        ("health", _health),
        ("appendix", _appendix),
    ]
    story: list[Flowable] = []
    for k, (name, section) in enumerate(sections, 1):
        # charts make sections slow on a large book: the log shows which one is being drawn
        log.info("report: section %s (%d of %d)", name, k, len(sections))
        story += section(data)
    return story


def render_reserve_report(data: ReportData, path: str | Path) -> Path:
    """Write the reserve report for ``data`` to ``path`` (a PDF) and return the path; same data, same bytes."""
    v = data.valuation_date.isoformat()
    return pdf.build(
        path,
        build_story(data),
        page=PAGE,
        title=f"Reserve report {v} ({data.status})",
        subject=f"Reserves as at {v}, publication version {data.publication_version}",
        creator=__name__,
        footer=(
            f"Reserve report  |  valuation {v}  |  {data.status.upper()}  |  "
            f"publication v{data.publication_version}  |  model {data.champion_version}"
        ),
    )

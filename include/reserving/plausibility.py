"""Month-level plausibility per line of business: is V's month of the extract like the line's own recent months?

Pure: takes the monthly per-line aggregates of ``warehouse.history.monthly_aggregates`` and the settings, returns
one :class:`PlausibilityCheck` per (line, check), passed, failed or skipped, each with its observed value and band.

- Volume checks (:data:`METRICS`): the month's value against a robust band over the line's previous
  ``plausibility_history_months`` months (:func:`robust_band`): median +- max(``plausibility_band_width`` x MAD
  (scaled to a standard deviation), the relative floor ``plausibility_relative_floor``) on a log-like scale. The
  floor keeps a very stable history from giving a zero-width band; the MAD ignores the odd extreme month. With
  fewer than ``plausibility_min_history`` months (a new line, a young book) the check is skipped and recorded as
  such, never a false alarm. Sums of amounts (paid, case movement) have a wider floor,
  ``plausibility_amount_floor``; their units are judged by the month's median payment, which large losses do not
  move.
- Case-reserve raises, claim by claim (:func:`case_raise_check`): of the claims with a case reserve at the end of the
  month before whose reserve was raised in the month, the median raise as a percentage of the claim's previous
  reserve, against a band around the line's recent months: ``plausibility_case_raise_width`` standard errors of the
  month's median (from the history's spread and the month's count of raised claims). A ratio of each claim to itself
  does not move with claim sizes, inflation or a large loss, so it catches one line's case reserves inflated in one
  month, which the line's sums cannot tell from a heavy month (deflation only where many claims were raised: the
  lower bound stops at 0). Months with fewer than
  ``plausibility_case_raise_min_claims`` raised claims are not judged (nor used as history).
- The set of lines: a line of the previous month's extract, of the previous valuation's ingest or of the month's
  earned exposure with no row in the month is missing; a line in none of the previous month's is new unless
  ``admitted_new_lines`` names it.
- A stalled extract: no row arrived in the month, or the newest row was recorded more than
  ``plausibility_stall_days`` days before the end of V.
- Data defects: rows recorded before their transaction date; status values outside ``TRANSACTION_STATUSES``
  exactly; earned premium or exposure of a line in the month missing, NaN, infinite, zero or negative.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from include.reserving.config import Settings
from include.reserving.dates import end_of_day, month_index
from include.reserving.domain import OVERALL, TRANSACTION_STATUSES

MAD_TO_SD = 1.4826  # the MAD of a normal sample times this estimates its standard deviation
IQR_TO_SD = 1.349  # a normal sample's interquartile range over its standard deviation
MEDIAN_SE = math.sqrt(math.pi / 2)  # the standard error of a normal sample's median, in sigma / sqrt(n)
# The raise band is never narrower than this on the log(1 + raise) scale: a history whose claims were all raised by
# the same fraction (an indexation run) would otherwise give a zero-width band that rounding alone fails.
RAISE_FLOOR = math.log1p(0.05)


@dataclass(frozen=True)
class Metric:
    name: str
    what: str  # what the number is, for the message
    action: str  # what to do when it fails
    # a sum of claim amounts: heavy-tailed (a few large losses triple a small line's month), so its band is never
    # narrower than plausibility_amount_floor; the defects it is there for move it tenfold or more
    amount: bool = False


METRICS = (
    Metric(
        "transactions",
        "transaction rows that arrived in the month",
        "compare the month's row count with the claims system: a duplicated, re-sent or partial extract shows here",
    ),
    Metric(
        "new_claims",
        "claims reported in the month",
        "check the month's claims in the extract for duplicated or missing claims",
    ),
    Metric(
        "paid",
        "paid in the month (without its largest payment)",
        "reconcile the month's payments with the claims system (duplicated rows or rescaled amounts show here)",
        amount=True,
    ),
    Metric(
        "case_movement",
        "gross case-reserve movement in the month (sum of absolute changes, without the largest)",
        "reconcile the month's case-reserve movement with the claims system",
        amount=True,
    ),
    Metric(
        "typical_paid",
        "median positive payment of the month",
        "amounts look rescaled (e.g. cents instead of currency units): check the extract's amount units",
    ),
    Metric(
        "earned_premium",
        "earned premium of the month",
        "check the month's rows of earned_exposure against finance",
    ),
    Metric(
        "exposure",
        "earned exposure units of the month",
        "check the month's rows of earned_exposure against the policy system",
    ),
)


@dataclass(frozen=True)
class PlausibilityCheck:
    """One check of one line (``ALL`` for the whole extract); ``passed`` is None when it was skipped."""

    segment: str
    check: str
    observed: float | None
    lower: float | None
    upper: float | None
    passed: bool | None
    detail: str

    def explain(self) -> str:
        """``<line>: <check> observed X outside [lo, hi]: <what to do>``."""
        return (
            f"{self.segment}: {self.check} observed {_number(self.observed)} outside "
            f"[{_number(self.lower, '-inf')}, {_number(self.upper, 'inf')}]: {self.detail}"
        )

    def as_row(self) -> dict:
        return {
            "segment": self.segment,
            "check": self.check,
            "observed": _storable(self.observed),
            "lower": _storable(self.lower),
            "upper": _storable(self.upper),
            "passed": self.passed,
            "detail": self.detail,
        }


class PlausibilityError(RuntimeError):
    """The month failed plausibility; ``checks`` holds every check's outcome."""

    def __init__(self, message: str, checks: list[PlausibilityCheck]):
        super().__init__(message)
        self.checks = checks


def _number(value: float | None, missing: str = "n/a") -> str:
    if value is None:
        return missing
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _storable(value: float | None) -> float | None:
    """NaN and infinity do not survive every database column: stored as NULL (the detail says what was seen)."""
    return None if value is None or not math.isfinite(value) else float(value)


def robust_band(history: Iterable[float], width: float, relative_floor: float) -> tuple[float, float]:
    """median +- max(width x scaled MAD, log(1 + relative_floor)) of the finite values of ``history`` on the asinh
    scale (log-like for large values, linear near 0), mapped back to the values' units.

    Sums of claim amounts are heavy-tailed and the defects that matter are multiplicative (a units shift, a
    duplicated load), so the band is symmetric in ratios: a floor of 0.5 admits x/÷ 1.5 around the median.
    """
    values = np.arcsinh(np.asarray([v for v in history if v is not None and math.isfinite(v)], dtype="float64"))
    median = float(np.median(values))
    mad = MAD_TO_SD * float(np.median(np.abs(values - median)))
    half = max(width * mad, math.log1p(relative_floor))
    return float(np.sinh(median - half)), float(np.sinh(median + half))


def monthly_metrics(txn: pd.DataFrame, claims: pd.DataFrame, exposure: pd.DataFrame) -> pd.DataFrame:
    """The volume metrics per (segment, month): zeros where a line had no row in a month, NaN where a metric is
    undefined (no payment, no exposure row)."""
    keys = ["segment", "month"]
    amounts = ["paid", "case_movement", "largest_paid", "largest_case_change"]
    raises = ["raise_claims", "raise_q1", "raise_median", "raise_q3"]
    frame = (
        txn[[*keys, "rows", "paid_rows", "median_paid", *amounts, *raises]]
        .merge(claims[[*keys, "new_claims"]], on=keys, how="outer")
        .merge(exposure[[*keys, "earned_premium", "exposure"]], on=keys, how="outer")
    )
    for col in ("rows", "paid_rows", *amounts):
        frame[col] = frame[col].astype("float64").fillna(0.0)
    frame["new_claims"] = frame["new_claims"].astype("float64").fillna(0.0)
    frame["transactions"] = frame["rows"]
    # a single large loss moves a small line's month a lot and is no data defect: the amounts are judged without the
    # month's largest payment and largest case-reserve change (a rescaled or duplicated month moves every row)
    frame["paid"] = frame["paid"] - frame["largest_paid"].clip(lower=0)
    frame["typical_paid"] = frame["median_paid"].astype("float64")  # NaN: no payment (or before the median window)
    frame["case_movement"] = frame["case_movement"] - frame["largest_case_change"]
    for col in ("earned_premium", "exposure"):
        frame[col] = frame[col].astype("float64")
    for col in raises:  # NaN: no claim's reserve was raised
        frame[col] = frame[col].astype("float64")
    frame["present"] = (frame["rows"] > 0) | (frame["new_claims"] > 0)
    return frame.set_index(keys).sort_index()


def evaluate(
    txn: pd.DataFrame,
    claims: pd.DataFrame,
    exposure: pd.DataFrame,
    valuation_date: dt.date,
    settings: Settings,
    known_lines: Iterable[str] = (),
) -> list[PlausibilityCheck]:
    """Every check of V's month (see the module docstring), lines in name order, the extract-wide checks first.

    ``known_lines``: the lines the previous valuation ingested; with the previous month's extract they are the lines
    expected this month (a line whose whole history vanished from the extract is still missed).
    """
    mv = month_index(valuation_date)
    metrics = monthly_metrics(txn, claims, exposure)
    months = metrics.index.get_level_values("month")

    def lines(month: int, column: str = "present") -> set[str]:
        at = metrics[(months == month) & metrics[column].astype(bool)]
        return set(at.index.get_level_values("segment"))

    current, previous = lines(mv), lines(mv - 1) | set(known_lines)
    with_exposure = set(metrics[(months == mv) & metrics["earned_premium"].notna()].index.get_level_values("segment"))
    with_exposure |= set(exposure.loc[exposure["month"] == mv, "segment"])
    admitted = set(settings.admitted_new_lines)
    checks = [stall_check(txn, mv, valuation_date, settings.plausibility_stall_days)]
    for segment in sorted(current | previous | with_exposure):
        checks.extend(_line_set_checks(segment, metrics, mv, current, previous, admitted))
        if segment in current:
            checks.extend(_volume_checks(segment, metrics, mv, settings))
        checks.extend(_positive_checks(segment, metrics, mv))
        checks.extend(_defect_checks(segment, txn))
    return checks


def stall_check(txn: pd.DataFrame, mv: int, valuation_date: dt.date, stall_days: int) -> PlausibilityCheck:
    """The ``extract_stalled`` check (the month with index ``mv``); ``input.run_order`` applies it too, before
    ingest, to ``warehouse.history.month_arrivals``."""
    arrived = int(txn.loc[txn["month"] == mv, "rows"].sum())
    newest = txn["last_recorded"].max() if len(txn) else pd.NaT
    days = (
        math.inf if pd.isna(newest) else (end_of_day(valuation_date) - newest.to_pydatetime()).total_seconds() / 86400
    )
    days = max(days, 0.0)  # restated: rows recorded after V are latest knowledge, not a stall
    passed = arrived > 0 and days <= stall_days
    detail = (
        f"{arrived:,} rows arrived in the month, the newest recorded {_number(round(days, 1))} days before the end "
        f"of {valuation_date} (plausibility_stall_days={stall_days})"
    )
    if not passed:
        detail += ": the extract looks STALLED; re-run the claims extract, then this run"
    return PlausibilityCheck(OVERALL, "extract_stalled", round(days, 1), 0.0, float(stall_days), passed, detail)


def _line_set_checks(
    segment: str, metrics: pd.DataFrame, mv: int, current: set, previous: set, admitted: set
) -> list[PlausibilityCheck]:
    row = metrics.loc[(segment, mv)] if (segment, mv) in metrics.index else None
    arrived = 0.0 if row is None else float(row["rows"] + row["new_claims"])
    if not previous:
        why = "skipped: the extract has no previous month to compare the lines with"
        return [
            PlausibilityCheck(segment, "line_missing", arrived, 1.0, None, None, why),
            PlausibilityCheck(segment, "line_new", None, 0.0, 0.0, None, why),
        ]
    missing = segment not in current and segment not in admitted
    new = segment in current and segment not in previous and segment not in admitted
    how_to_admit = "add it to the setting admitted_new_lines (and load its earned_exposure)"
    missing_detail = (
        "the line has no row (transaction or reported claim) in the month but is in the previous month's extract or "
        f"in earned_exposure: reload the extract with every line, or if the line really stopped, {how_to_admit}"
        if missing
        else "rows or claims arrived in the month"
    )
    new_detail = (
        "a line not in the previous month's extract (renamed or new?): fix a renamed line in the extract; if the "
        f"line is really new, {how_to_admit}"
        if new
        else ("admitted by admitted_new_lines" if segment in admitted else "in the previous month's extract")
    )
    return [
        PlausibilityCheck(segment, "line_missing", arrived, 1.0, None, not missing, missing_detail),
        PlausibilityCheck(segment, "line_new", float(new), 0.0, 0.0, not new, new_detail),
    ]


def _volume_checks(segment: str, metrics: pd.DataFrame, mv: int, settings: Settings) -> list[PlausibilityCheck]:
    line = metrics.xs(segment, level="segment")
    first = int(line.index[line["present"]].min())
    window = line.reindex(range(max(mv - settings.plausibility_history_months, first), mv))
    zeros = ["transactions", "new_claims", "paid", "case_movement"]  # a month without rows is a real zero
    window[zeros] = window[zeros].fillna(0.0)
    checks = []
    for metric in METRICS:
        observed = float(line.at[mv, metric.name]) if mv in line.index else math.nan
        history = window[metric.name].dropna()
        if len(history) < settings.plausibility_min_history:
            detail = (
                f"skipped: {len(history)} months of history, fewer than plausibility_min_history="
                f"{settings.plausibility_min_history}"
            )
            checks.append(PlausibilityCheck(segment, metric.name, observed, None, None, None, detail))
            continue
        if math.isnan(observed) and metric.name == "typical_paid":  # no payment this month: nothing to judge
            detail = "skipped: no nonzero payment in the month"
            checks.append(PlausibilityCheck(segment, metric.name, observed, None, None, None, detail))
            continue
        floor = settings.plausibility_amount_floor if metric.amount else settings.plausibility_relative_floor
        lower, upper = robust_band(history, settings.plausibility_band_width, floor)
        passed = lower <= observed <= upper  # NaN fails
        detail = f"{metric.what} against the previous {len(history)} months"
        if not passed:
            detail = f"{metric.what} is outside its band over the previous {len(history)} months: {metric.action}"
        checks.append(PlausibilityCheck(segment, metric.name, observed, lower, upper, passed, detail))
    current = line.loc[mv] if mv in line.index else None
    checks.append(case_raise_check(segment, current, window, settings))
    return checks


def raise_band(history: pd.DataFrame, claims: int, width: float) -> tuple[float, float]:
    """``(centre, half-width)`` on the log(1 + raise) scale: the median of the history's monthly medians, and
    ``width`` standard errors of the median of ``claims`` raises, sigma from the history's interquartile ranges."""
    centre = float(np.median(np.log1p(history["raise_median"])))
    sigma = float(np.median(np.log1p(history["raise_q3"]) - np.log1p(history["raise_q1"]))) / IQR_TO_SD
    return centre, max(width * MEDIAN_SE * sigma / math.sqrt(claims), RAISE_FLOOR)


def case_raise_check(
    segment: str, month: pd.Series | None, history: pd.DataFrame, settings: Settings
) -> PlausibilityCheck:
    """The month's median case-reserve raise of claims open at the previous month end, in % of their previous
    reserve, against the line's recent months (``raise_claims``, ``raise_q1``, ``raise_median``, ``raise_q3``).

    Judged on the log(1 + raise) scale (:func:`raise_band`), with the history months that had at least
    ``plausibility_case_raise_min_claims`` raised claims: the band is as wide as the month's own sampling noise,
    narrow when many claims were raised and wide when few were. Inflating every raise of the month by a factor
    multiplies the median by it.
    """
    name, minimum = "case_reserve_raise", settings.plausibility_case_raise_min_claims
    what = "median raise of the case reserves open at the previous month end (% of the claim's previous reserve)"
    claims = 0 if month is None or math.isnan(month["raise_claims"]) else int(month["raise_claims"])
    observed = math.nan if claims == 0 else 100 * float(month["raise_median"])
    judged = history[history["raise_claims"] >= minimum]
    if claims < minimum:
        detail = (
            f"skipped: {claims} claims open at the previous month end were raised in the month, fewer than "
            f"plausibility_case_raise_min_claims={minimum}"
        )
        return PlausibilityCheck(segment, name, observed, None, None, None, detail)
    if len(judged) < settings.plausibility_min_history:
        detail = (
            f"skipped: {len(judged)} months of history with at least {minimum} raised claims, fewer than "
            f"plausibility_min_history={settings.plausibility_min_history}"
        )
        return PlausibilityCheck(segment, name, observed, None, None, None, detail)
    centre, half = raise_band(judged, claims, settings.plausibility_case_raise_width)
    lower, upper = 100 * max(math.expm1(centre - half), 0.0), 100 * math.expm1(centre + half)
    passed = lower <= observed <= upper
    detail = f"{what} over {claims} claims, against the previous {len(judged)} months"
    if not passed:
        detail = (
            f"{what} over {claims} claims is outside its band over the previous {len(judged)} months: the line's "
            "case reserves look inflated (or deflated) in the month; reconcile the month's case-reserve changes "
            "with the claims system"
        )
    return PlausibilityCheck(segment, name, observed, lower, upper, passed, detail)


def _positive_checks(segment: str, metrics: pd.DataFrame, mv: int) -> list[PlausibilityCheck]:
    checks = []
    for column, name in (("earned_premium", "earned_premium_positive"), ("exposure", "exposure_positive")):
        observed = float(metrics.at[(segment, mv), column]) if (segment, mv) in metrics.index else math.nan
        passed = math.isfinite(observed) and observed > 0
        if passed:
            detail = f"{column} of the month is finite and positive"
        else:
            seen = "missing" if math.isnan(observed) else _number(observed)
            detail = (
                f"{column} of the month is {seen} (NaN, infinite, missing, zero and negative all fail): load the "
                "line's earned_exposure row for the month with a finite, positive value"
            )
        checks.append(PlausibilityCheck(segment, name, observed, 0.0, None, passed, detail))
    return checks


def _defect_checks(segment: str, txn: pd.DataFrame) -> list[PlausibilityCheck]:
    rows = txn[txn["segment"] == segment]
    early = float(rows["recorded_before_dated"].sum())
    bad = float(rows["bad_status"].sum())
    examples = sorted({str(v) for v in rows["bad_status_example"].dropna()})[:3]
    early_detail = (
        f"{early:,.0f} rows recorded before their transaction date: fix recorded_at or transaction_date in the "
        "claims system's extract"
        if early
        else "no row recorded before its transaction date"
    )
    status_detail = (
        f"{bad:,.0f} rows with a status outside {list(TRANSACTION_STATUSES)} (case matters), e.g. {examples}: fix "
        "the extract's status mapping"
        if bad
        else "every status is one of " + ", ".join(TRANSACTION_STATUSES)
    )
    return [
        PlausibilityCheck(segment, "recorded_before_dated", early, 0.0, 0.0, not early, early_detail),
        PlausibilityCheck(segment, "status_values", bad, 0.0, 0.0, not bad, status_detail),
    ]


def failures(checks: Iterable[PlausibilityCheck]) -> list[PlausibilityCheck]:
    return [c for c in checks if c.passed is False]


def summary(checks: list[PlausibilityCheck], valuation_date: dt.date, basis: str) -> str:
    failed = failures(checks)
    skipped = sum(c.passed is None for c in checks)
    head = (
        f"plausibility of the month ending {valuation_date} ({basis}): {len(checks) - len(failed) - skipped} passed, "
        f"{len(failed)} failed, {skipped} skipped"
    )
    return "\n".join([head, *(f"  FAILED {c.explain()}" for c in failed)])


def raise_for_failures(checks: list[PlausibilityCheck], valuation_date: dt.date, basis: str) -> None:
    """Stop the run when a check failed: raise PlausibilityError listing every failure."""
    if failures(checks):
        raise PlausibilityError(summary(checks, valuation_date, basis), checks)

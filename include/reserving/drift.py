"""Drift between the claims reported in the month ending V and a reference window: PSI, KS and the retrain decision.

Pure functions: the statistics of two samples; ``drift_report`` on a frame of the snapshot's claim-level features for
(V, basis) (read by warehouse/cells.py, stored by warehouse/drift.py); ``decide_retrain`` turns the results into a
decision with its reasons.

PSI = sum over bins of (current share - reference share) * ln(current share / reference share). Numeric features are
cut at the reference deciles (right-closed bins, the outer bins open-ended); categorical features use one bin per level
seen in either sample, so a level that only the current month has counts. An empty bin's share is replaced by ``eps``.

A feature whose reference or current window holds fewer than ``min_sample`` values (the ``drift_min_sample``
setting) is not compared: a handful of claims leaves most of the ten bins empty (8 claims drawn with no shift: median
PSI 3), so its PSI and KS stay None, its note says "not enough data" with the counts, and it cannot trigger a retrain.

Severity is the exception to "the month ending V": it is judged one month back (see ``FEATURES``), on claims whose
initial-incurred window has closed by V, so an incomplete month never looks like a drop in severity.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from include.reserving.dates import add_months, end_of_month
from include.reserving.domain import INITIAL_INCURRED_DAYS

DEFAULT_EPS = 1e-4
MISSING_LEVEL = "<missing>"

# (feature name, snapshot_claims column, kind, months back): what the drift check compares, in the actuary's language.
# Severity (incurred within INITIAL_INCURRED_DAYS of report) is judged one month back: for a claim reported late in
# V's month that window is still open at V (and the last days' rows are not yet recorded), so this month's values
# would sit low against a reference whose windows have closed, and alarm every month.
FEATURES: tuple[tuple[str, str, str, int], ...] = (
    ("claimant_age", "claimant_age", "numeric", 0),
    ("report_delay", "report_delay_days", "numeric", 0),
    ("severity", "initial_incurred", "numeric", 1),
    ("claim_type_mix", "claim_type", "categorical", 0),
    ("line_mix", "line_of_business", "categorical", 0),
    ("region_mix", "region", "categorical", 0),
)


# --- statistics ----------------------------------------------------------------------------------------------------


def _numeric_sample(values: Iterable[Any], name: str) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise ValueError(f"{name} sample is empty (no non-missing values)")
    return arr


def _psi_from_shares(ref: np.ndarray, cur: np.ndarray, eps: float) -> float:
    ref = np.where(ref == 0, eps, ref)
    cur = np.where(cur == 0, eps, cur)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def decile_edges(reference: Sequence[float] | np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner cut points of the reference at its 1/bins, ..., (bins-1)/bins quantiles; ties collapse bins."""
    ref = _numeric_sample(reference, "reference")
    return np.unique(np.quantile(ref, np.arange(1, bins) / bins))


def numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values per bin: (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
    return counts / values.size


def psi_numeric(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    bins: int = 10,
    eps: float = DEFAULT_EPS,
) -> float:
    """PSI of a numeric feature, bins cut at the reference deciles; missing values are ignored."""
    ref = _numeric_sample(reference, "reference")
    cur = _numeric_sample(current, "current")
    edges = decile_edges(ref, bins)
    return _psi_from_shares(numeric_shares(ref, edges), numeric_shares(cur, edges), eps)


def _level(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_LEVEL
    return str(value)


def level_shares(reference: Iterable[Any], current: Iterable[Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Levels seen in either sample (missing is a level of its own) with their reference and current shares."""
    ref_counts: dict[str, int] = {}
    cur_counts: dict[str, int] = {}
    for values, counts in ((reference, ref_counts), (current, cur_counts)):
        for value in values:
            key = _level(value)
            counts[key] = counts.get(key, 0) + 1
    for name, counts in (("reference", ref_counts), ("current", cur_counts)):
        if not counts:
            raise ValueError(f"{name} sample is empty")
    levels = sorted(set(ref_counts) | set(cur_counts))
    ref = np.array([ref_counts.get(k, 0) for k in levels], dtype=float)
    cur = np.array([cur_counts.get(k, 0) for k in levels], dtype=float)
    return levels, ref / ref.sum(), cur / cur.sum()


def psi_categorical(reference: Iterable[Any], current: Iterable[Any], eps: float = DEFAULT_EPS) -> float:
    """PSI of a categorical feature over the union of levels; a level unseen in the reference counts with ``eps``."""
    _, ref, cur = level_shares(reference, current)
    return _psi_from_shares(ref, cur, eps)


@dataclass(frozen=True)
class KsResult:
    statistic: float
    pvalue: float


def ks(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> KsResult:
    """Two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp, two-sided); missing values are ignored."""
    result = stats.ks_2samp(_numeric_sample(reference, "reference"), _numeric_sample(current, "current"))
    return KsResult(statistic=float(result.statistic), pvalue=float(result.pvalue))


# --- windows -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Claims reported from ``start`` to ``end``, both inclusive."""

    start: dt.date
    end: dt.date


def current_window(valuation_date: dt.date, months_back: int = 0) -> Window:
    """The month ending V (``months_back`` 0), or the month ``months_back`` months before it."""
    end = add_months(valuation_date, -months_back) if months_back else valuation_date
    return Window(end.replace(day=1), end)


def lagged_windows(valuation_date: dt.date, reference: Window, months_back: int) -> tuple[Window, Window]:
    """(reference, current) for a feature judged ``months_back`` months back: the current month moves back and the
    reference keeps only what lies before it (a champion trained last month must not see its own month twice)."""
    current = current_window(valuation_date, months_back)
    if not months_back:
        return reference, current
    end = min(reference.end, current.start - dt.timedelta(days=1))
    return Window(reference.start, end), current


def reference_window(
    valuation_date: dt.date, champion_valuation_date: dt.date | None = None, months: int = 12
) -> Window:
    """The ``months`` months up to the champion's training valuation date; without a champion, before V's month."""
    end = champion_valuation_date or add_months(valuation_date, -1)
    end = end_of_month(end)
    return Window(add_months(end, -(months - 1)).replace(day=1), end)


# --- report --------------------------------------------------------------------------------------------------------


@dataclass
class FeatureDrift:
    feature: str
    column: str
    kind: str  # "numeric" or "categorical"
    reference_count: int
    current_count: int
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    breached: bool = False
    note: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    reference: Window | None = None  # the windows compared for this feature (severity: one month back)
    current: Window | None = None


@dataclass
class DriftReport:
    valuation_date: dt.date
    basis: str
    reference: Window
    current: Window
    psi_threshold: float
    features: list[FeatureDrift]

    @property
    def breaches(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.breached]


def too_few(reference_count: int, current_count: int, min_sample: int) -> str | None:
    """The "not enough data" note when either window holds fewer than ``min_sample`` values, else None."""
    short = [
        f"{name} n={n}" for name, n in (("reference", reference_count), ("current", current_count)) if n < min_sample
    ]
    return f"not enough data ({', '.join(short)} < drift_min_sample={min_sample})" if short else None


def _feature_drift(
    feature: str, column: str, kind: str, ref: list, cur: list, psi_threshold: float, min_sample: int, eps: float
):
    if kind == "numeric":
        ref_arr = np.array([np.nan if v is None else float(v) for v in ref], dtype=float)
        cur_arr = np.array([np.nan if v is None else float(v) for v in cur], dtype=float)
        ref_arr, cur_arr = ref_arr[~np.isnan(ref_arr)], cur_arr[~np.isnan(cur_arr)]
        result = FeatureDrift(feature, column, kind, int(ref_arr.size), int(cur_arr.size))
    else:
        result = FeatureDrift(feature, column, kind, len(ref), len(cur))
    # An empty window is never compared, whatever the setting.
    result.note = too_few(result.reference_count, result.current_count, max(min_sample, 1))
    if result.note:
        return result
    if kind == "numeric":
        edges = decile_edges(ref_arr)
        ref_shares, cur_shares = numeric_shares(ref_arr, edges), numeric_shares(cur_arr, edges)
        result.psi = _psi_from_shares(ref_shares, cur_shares, eps)
        ks_result = ks(ref_arr, cur_arr)
        result.ks_statistic, result.ks_pvalue = ks_result.statistic, ks_result.pvalue
        result.detail = {
            "edges": edges.tolist(),
            "reference_shares": ref_shares.tolist(),
            "current_shares": cur_shares.tolist(),
        }
    else:
        levels, ref_shares, cur_shares = level_shares(ref, cur)
        result.psi = _psi_from_shares(ref_shares, cur_shares, eps)
        result.detail = {
            "levels": levels,
            "reference_shares": ref_shares.tolist(),
            "current_shares": cur_shares.tolist(),
        }
    result.breached = result.psi > psi_threshold
    return result


def feature_windows(valuation_date: dt.date, reference: Window) -> list[tuple[Window, Window]]:
    """(reference, current) windows of each feature in ``FEATURES`` order."""
    return [lagged_windows(valuation_date, reference, back) for *_, back in FEATURES]


def windows_to_read(valuation_date: dt.date, reference: Window | None = None) -> list[Window]:
    """The report dates a drift report compares, as few disjoint windows in date order (usually one: the reference
    up to V's month end): the claims reported in them are the report's input. Merged because the database plans one
    range well and twelve overlapping ones badly (it adds their selectivities and reads V's whole snapshot)."""
    reference = reference or reference_window(valuation_date)
    compared = [w for pair in feature_windows(valuation_date, reference) for w in pair if w.start <= w.end]
    merged: list[Window] = []
    for window in sorted(compared, key=lambda w: (w.start, w.end)):
        if merged and window.start <= merged[-1].end + dt.timedelta(days=1):
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def drift_report(
    claims: pd.DataFrame,
    valuation_date: dt.date,
    basis: str,
    psi_threshold: float,
    min_sample: int,
    reference: Window | None = None,
    eps: float = DEFAULT_EPS,
) -> DriftReport:
    """Per-feature drift of claims reported in the month ending V against the reference window.

    ``claims`` holds ``report_date`` and the ``FEATURES`` columns of the snapshot's claims for (V, basis) (every
    claim seen with what was known at V), at least those reported in :func:`windows_to_read`. ``reference`` defaults
    to the 12 months before V's month (no champion yet); pass ``reference_window(V, champion_valuation_date)`` once a
    champion exists. Severity compares the month before V's (claims whose initial-incurred window has closed by V)
    with the reference before that month; its windows are on its FeatureDrift. A feature with fewer than
    ``min_sample`` values in either window is not compared (see the module docstring).
    """
    reference = reference or reference_window(valuation_date)
    current = current_window(valuation_date)
    windows = feature_windows(valuation_date, reference)
    reported = pd.to_datetime(claims["report_date"])
    window_closed = pd.Timestamp(valuation_date - dt.timedelta(days=INITIAL_INCURRED_DAYS))

    def inside(window: Window) -> pd.Series:
        return reported.between(pd.Timestamp(window.start), pd.Timestamp(window.end))

    ref_values, cur_values = [], []
    for (ref, cur), (_, column, _, back) in zip(windows, FEATURES, strict=True):
        settled = reported <= window_closed if back else True  # severity: its initial window must have closed by V
        # A claim in both windows (reference overlapping the current month) counts in both.
        ref_values.append(claims.loc[inside(ref) & settled, column].tolist())
        cur_values.append(claims.loc[inside(cur) & settled, column].tolist())
    results = []
    for i, (feature, column, kind, _) in enumerate(FEATURES):
        result = _feature_drift(feature, column, kind, ref_values[i], cur_values[i], psi_threshold, min_sample, eps)
        result.reference, result.current = windows[i]
        results.append(result)
    return DriftReport(valuation_date, basis, reference, current, psi_threshold, results)


# --- decision ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]

    def summary(self) -> str:
        verdict = "retrain" if self.retrain else "keep the champion, skip training"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide_retrain(
    results: Sequence[FeatureDrift] | DriftReport,
    psi_threshold: float,
    force_retrain: bool = False,
    ave_breach: bool | None = None,
    ave_detail: str | None = None,
) -> RetrainDecision:
    """Retrain iff a PSI exceeds the threshold, the run forces it, or actual-vs-expected breached its tolerance.

    ``ave_breach`` is the hook for the models' actual-vs-expected check on the newest diagonal (None: not evaluated).
    Features not compared (too few values: no PSI) never trigger a retrain; the reasons name them with their note
    either way, so the run log says what the decision did not look at.
    """
    features = results.features if isinstance(results, DriftReport) else list(results)
    reasons: list[str] = []
    for f in features:
        if f.psi is not None and f.psi > psi_threshold:
            reasons.append(f"PSI of {f.feature} is {f.psi:.4f} > {psi_threshold:g}")
    if force_retrain:
        reasons.append("force_retrain was set for this run")
    if ave_breach:
        reasons.append("actual-vs-expected breached its tolerance" + (f" ({ave_detail})" if ave_detail else ""))
    skipped = [f"{f.feature} not compared: {f.note}" for f in features if f.psi is None and f.note]
    if reasons:
        return RetrainDecision(True, tuple(reasons + skipped))
    compared = [f for f in features if f.psi is not None]
    worst = max(compared, key=lambda f: f.psi, default=None)
    quiet = [f"no PSI above {psi_threshold:g}" + (f" (largest: {worst.feature} {worst.psi:.4f})" if worst else "")]
    quiet += skipped
    quiet.append("actual-vs-expected not evaluated" if ave_breach is None else "actual-vs-expected within tolerance")
    return RetrainDecision(False, tuple(quiet))

"""Synthetic claims book: a realistic claims-system extract for the source tables, deterministic under a seed.

``python -m devtools.synth --claims 100000 --start 2015-01 --end 2024-12 --seed 7 [--db URL] [--reset]``

The book has three lines of business with their own reporting delays, settlement times, payment counts and
severities, so paid age-to-age factors look short-tail (Motor), short/medium-tail (Property) and long-tail
(Liability). Each claim is ``BodilyInjury`` or ``PropertyDamage`` (mix per line), has a claimant aged 18-95 and a
region. Its life in ``claim_transactions`` (about 10 rows per claim on average):

- ``open`` at the report date, with the initial case reserve (``case_reserve_change`` > 0);
- partial payments and reserve-only revisions between report and settlement; the case reserve moves towards the
  truth (Liability starts under-reserved, so incurred develops upwards too). Incurred = cumulative paid + reserve;
- ``closed`` at settlement with the final payment (nothing for nil claims) and the reserve released to zero;
- for a few claims ``reopened`` later (a new reserve) and ``closed`` again with one more payment.

``status`` is the event of the row: ``open`` for ordinary rows, ``closed`` on a closure, ``reopened`` on a reopening.
Transaction dates are strictly increasing within a claim and on/after the report date; the report date is on/after
the accident date. ``recorded_at`` is the same day (75%) or a few days later, and for 0.5% of rows 1-6 months later
(late recordings for point-in-time tests). Payments carry claims inflation (``inflation``, default 4% a year) by
payment date. The book is the full run-off: transactions continue past ``end`` (the pipeline reads them point in
time). ``earned_exposure`` holds exposure units and earned premium by line and month (target loss ratio 65%).

Scenario knobs (all default off). Every knob keeps the random draws of the base book, so a book with a knob equals
the book without it except where the knob applies:

- covariate drift from an accident month (``--drift-month``): claimants younger by ``--younger-by`` years (ages still
  clipped to 18-95) and the probability of ``BodilyInjury`` raised by ``--bi-shift`` (absolute, capped at 1);
- development drift from an accident month (``--dev-drift-month``): settlement and payment delays divided by
  ``--payment-speedup`` and severities multiplied by ``--severity-factor``;
- defects with exact counts in the loaded data (rows picked at random, on distinct claims):
  ``--bad-ages N`` claimant ages below 0 or above 120; ``--null-paid N`` transactions with a NULL paid amount;
  ``--unknown-types N`` claims of type ``Unknown``; ``--duplicate-ids N`` transactions that reuse another row's id
  (so ``count(*) - count(distinct transaction_id) = N``); ``--future-dated N`` transactions dated after
  ``--defect-valuation-date`` but recorded on/before it; ``--accident-after-report N`` claims with the accident
  1-30 days after the report; ``--duplicate-rows N`` double-posted payments (same claim, date and amount, new id,
  so ``count(*) - count(distinct (claim_id, transaction_date, paid_amount)) = N``).

Finance control totals (``control_totals``, on by default; ``--no-control-totals``): ``finance_control_totals`` gets
one row per line and month of the book, paid and case-reserve movement summed over the transactions dated in the month
and recorded by its end, as the general ledger closed the month; computed from the rows as written (defects
included), so the pipeline's reconciliation passes on any book the generator writes. Nothing else changes.

Generation is vectorised numpy in chunks of ``chunk_claims`` (50,000) claims, each with its own seed stream, so
memory stays bounded and the rows do not depend on how a caller consumes the chunks. Defect counts are spread over
the chunks. Python API: ``generate_book(BookSpec(...)) -> Book`` (data frames, loaded by ``devtools.book.load_book``),
``write_book(url, spec)`` (streams chunk by chunk; what the CLI runs), ``iter_book(spec)``, ``exposure_frame(spec)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

from devtools.book import CLAIM_COLUMNS, TARGET_LOSS_RATIO, TRANSACTION_COLUMNS, Book, reset_source_tables
from devtools.bulk import bulk_insert
from include.reserving import schema
from include.reserving.warehouse.core import make_engine, redact

LARGE_BOOK_CLAIMS = 100_000  # from this size write_book drops the transaction indexes during the load
MAX_REPORT_DAYS = 5 * 365  # reporting and settlement delays are capped: no 50-year tails
MAX_SETTLE_DAYS = 15 * 365
CLAIM_TYPES = ("BodilyInjury", "PropertyDamage")
UNKNOWN_CLAIM_TYPE = "Unknown"
REGIONS = ("North", "South", "East", "West", "Central")
REGION_SHARES = (0.22, 0.24, 0.18, 0.21, 0.15)

T = TypeVar("T")

# Transaction kinds, in their order on a tie of times within a claim.
_OPEN, _REVISION, _PAYMENT, _CLOSE, _REOPEN, _RECLOSE = range(6)
_STATUS = np.array(["open", "open", "open", "closed", "reopened", "closed"], dtype=object)
_DAYS_PER_MONTH = 30.4375


@dataclass(frozen=True)
class LineProfile:
    """How claims of one line of business arise and develop.

    Delays are lognormal with the given median and log-sd; severities lognormal (median, log-sd) by claim type,
    in money of the book's start month.
    """

    name: str
    code: str
    share: float  # of the claim count
    bi_share: float  # probability that a claim is BodilyInjury
    frequency: float  # claims per exposure unit per year
    growth: float  # exposure growth per year
    report_days: tuple[float, float]
    settle_months: tuple[float, float]  # report to settlement
    severity_bi: tuple[float, float]
    severity_pd: tuple[float, float]
    payments: float  # mean number of payments before the final one (Poisson)
    revisions: float  # mean number of reserve-only revisions (Poisson)
    nil_share: float  # closed without payment
    reopen_share: float
    case_bias: float  # log bias of the initial case estimate (negative: under-reserved)


LINES = (
    LineProfile(
        name="Motor", code="MO", share=0.55, bi_share=0.20, frequency=0.08, growth=0.03,
        report_days=(7, 1.0), settle_months=(3, 0.9), severity_bi=(12_000, 1.1), severity_pd=(2_500, 0.9),
        payments=4, revisions=2, nil_share=0.12, reopen_share=0.03, case_bias=-0.05,
    ),
    LineProfile(
        name="Property", code="PR", share=0.25, bi_share=0.05, frequency=0.04, growth=0.02,
        report_days=(14, 1.1), settle_months=(5, 0.9), severity_bi=(15_000, 1.1), severity_pd=(6_000, 1.2),
        payments=5, revisions=2.5, nil_share=0.15, reopen_share=0.04, case_bias=0.0,
    ),
    LineProfile(
        name="Liability", code="LI", share=0.20, bi_share=0.65, frequency=0.01, growth=0.04,
        report_days=(120, 1.2), settle_months=(30, 0.8), severity_bi=(40_000, 1.3), severity_pd=(10_000, 1.2),
        payments=11, revisions=5, nil_share=0.25, reopen_share=0.06, case_bias=-0.25,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class CovariateDrift:
    """Claims with an accident on/after ``start`` (a month, ``YYYY-MM``) have younger claimants and more BI."""

    start: str
    younger_by: float = 0.0  # years subtracted from claimant ages
    bi_shift: float = 0.0  # added to the probability of BodilyInjury


@dataclass(frozen=True)
class DevelopmentDrift:
    """Claims with an accident on/after ``start`` settle faster and cost more."""

    start: str
    payment_speedup: float = 1.0  # settlement and payment delays divided by this
    severity_factor: float = 1.0  # severities multiplied by this


@dataclass(frozen=True)
class Defects:
    """Injected data defects; each count is exact in the generated and loaded rows."""

    bad_ages: int = 0
    null_paid: int = 0
    unknown_types: int = 0
    duplicate_ids: int = 0
    future_dated: int = 0
    accident_after_report: int = 0
    duplicate_rows: int = 0
    valuation_date: dt.date | None = None  # the date ``future_dated`` rows are dated after

    def __post_init__(self) -> None:
        if any(getattr(self, f.name) < 0 for f in dataclasses.fields(self) if f.type == "int"):
            raise ValueError("defect counts must be non-negative")
        if self.future_dated and self.valuation_date is None:
            raise ValueError("future_dated defects need a valuation_date")


@dataclass(frozen=True)
class BookSpec:
    """What to generate: claim count, accident months ``start``..``end`` (``YYYY-MM``), seed and scenario knobs.

    ``inflation`` is the yearly claims inflation applied by payment date.
    """

    claims: int = 10_000
    start: str = "2015-01"
    end: str = "2024-12"
    seed: int = 0
    inflation: float = 0.04
    covariate_drift: CovariateDrift | None = None
    development_drift: DevelopmentDrift | None = None
    defects: Defects = field(default_factory=Defects)
    chunk_claims: int = 50_000  # claims per generation chunk; part of the seed (another size, other rows)
    control_totals: bool = True  # also write finance_control_totals (derived; changes no generated row)

    def __post_init__(self) -> None:
        if self.claims < 1 or self.chunk_claims < 1:
            raise ValueError("claims and chunk_claims must be at least 1")
        if _month(self.end) < _month(self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")


def _month(text: str | dt.date) -> np.datetime64:
    """First day of a month given as ``YYYY-MM`` (or a date in it)."""
    return np.datetime64(str(text)[:7], "M")


def _months(spec: BookSpec) -> np.ndarray:
    return np.arange(_month(spec.start), _month(spec.end) + 1)


def _exposure_weights(spec: BookSpec) -> np.ndarray:
    """Relative exposure by line (rows) and accident month (columns): growth plus winter seasonality for Property."""
    months = _months(spec)
    years = np.arange(len(months)) / 12.0
    calendar_month = months.astype(int) % 12
    weights = np.empty((len(LINES), len(months)))
    for i, line in enumerate(LINES):
        season = 1 + 0.15 * np.cos(2 * np.pi * calendar_month / 12) if line.name == "Property" else 1.0
        weights[i] = (1 + line.growth) ** years * season
    return weights / weights.sum(axis=1, keepdims=True)


def _mean_severity(line: LineProfile) -> float:
    """Expected claim cost in start-month money (nil claims included)."""
    bi = line.severity_bi[0] * np.exp(line.severity_bi[1] ** 2 / 2)
    pd_ = line.severity_pd[0] * np.exp(line.severity_pd[1] ** 2 / 2)
    return (1 - line.nil_share) * (line.bi_share * bi + (1 - line.bi_share) * pd_)


def exposure_frame(spec: BookSpec) -> pd.DataFrame:
    """Earned exposure units and premium by line and month, consistent with the expected claim counts.

    Premium = expected claims x expected severity (inflated to the month plus the line's mean settlement lag)
    / the target loss ratio, with a gentle underwriting cycle (+-5% over 6 years).
    """
    months = _months(spec)
    years = np.arange(len(months)) / 12.0
    weights = _exposure_weights(spec)
    frames = []
    for i, line in enumerate(LINES):
        expected_claims = spec.claims * line.share * weights[i]
        lag_years = (line.report_days[0] / 365.25) + line.settle_months[0] / 12
        inflated = _mean_severity(line) * (1 + spec.inflation) ** (years + lag_years)
        cycle = 1 + 0.05 * np.sin(2 * np.pi * years / 6)
        frames.append(
            pd.DataFrame(
                {
                    "line_of_business": line.name,
                    "month": months.astype("datetime64[D]"),
                    "earned_premium": np.round(expected_claims * inflated * cycle / TARGET_LOSS_RATIO, 2),
                    "exposure_units": np.round(
                        expected_claims / line.frequency, 2
                    ),  # exposure-years earned in the month
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _control_partial(claims: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """One chunk's control totals per line and month: rows dated in the month and recorded by its end."""
    month = transactions["transaction_date"].to_numpy().astype("datetime64[M]")
    booked = transactions["recorded_at"].to_numpy().astype("datetime64[s]") < (month + 1).astype("datetime64[s]")
    rows = transactions.loc[booked].assign(month=month[booked].astype("datetime64[D]"))
    return (
        rows.assign(line_of_business=rows["claim_id"].map(claims.set_index("claim_id")["line_of_business"]))
        .groupby(["line_of_business", "month"], as_index=False)[["paid_amount", "case_reserve_change"]]
        .sum()
        .rename(columns={"case_reserve_change": "case_reserve_movement"})
    )


def control_totals_frame(spec: BookSpec, partials: list[pd.DataFrame]) -> pd.DataFrame:
    """The general ledger's totals per line and month of the book, from the chunks' partial sums."""
    months = _months(spec).astype("datetime64[D]")
    totals = pd.concat(partials, ignore_index=True).groupby(["line_of_business", "month"], as_index=False).sum()
    totals = totals[totals["month"].isin(months)].reset_index(drop=True)
    return totals.round({"paid_amount": 2, "case_reserve_movement": 2})


def _chunk_sizes(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - start) for start in range(0, total, chunk)]


def _split(count: int, sizes: list[int]) -> list[int]:
    """Spread a defect count over chunks in proportion to their sizes (exact total)."""
    cumulative = np.concatenate([[0], np.cumsum(sizes)])
    bounds = (count * cumulative) // cumulative[-1]
    return np.diff(bounds).tolist()


def _lognormal(rng: np.random.Generator, median_sd: tuple[float, float], size: int) -> np.ndarray:
    return median_sd[0] * np.exp(median_sd[1] * rng.standard_normal(size))


def _per_line(attribute: Callable[[LineProfile], float], line: np.ndarray) -> np.ndarray:
    """A line parameter for every claim, given each claim's line index."""
    return np.array([attribute(ln) for ln in LINES])[line]


def _within_claim_rank(claim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its claim (rows sorted by claim) and each claim's first row."""
    first = np.flatnonzero(np.r_[True, claim[1:] != claim[:-1]])
    counts = np.diff(np.r_[first, len(claim)])
    return np.arange(len(claim)) - np.repeat(first, counts), first


def _generate_chunk(
    spec: BookSpec, index: int, first_claim: int, size: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Claims and transactions of one chunk (before defects) and each transaction's claim position."""
    rng = np.random.default_rng([spec.seed, index])
    months = _months(spec)
    start_day = months[0].astype("datetime64[D]")
    n = size

    # --- claims: every draw is made whatever the knobs, so knobs change only what they claim to change ---
    line = rng.choice(len(LINES), size=n, p=[ln.share for ln in LINES])
    weights = _exposure_weights(spec)
    month = np.empty(n, dtype=np.int64)
    for i in range(len(LINES)):
        members = line == i
        month[members] = rng.choice(len(months), size=int(members.sum()), p=weights[i])
    month_start = months[month].astype("datetime64[D]")
    month_days = ((months[month] + 1).astype("datetime64[D]") - month_start).astype(np.int64)
    accident = month_start + (rng.random(n) * month_days).astype(np.int64)
    type_draw = rng.random(n)
    age_draw = rng.standard_normal(n)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    policy = rng.integers(0, max(n, 1_000) * 4, size=n)
    report_z, settle_z, severity_z = rng.standard_normal((3, n))
    nil = rng.random(n)
    reopen = rng.random(n)
    reopen_gap = rng.uniform(30, 365, n)
    reopen_settle = rng.uniform(30, 270, n)
    reopen_extra = rng.uniform(0.05, 0.3, n)

    bi_prob = _per_line(lambda ln: ln.bi_share, line)
    age_shift = np.zeros(n)
    if (cd := spec.covariate_drift) is not None:
        drifted = accident >= _month(cd.start).astype("datetime64[D]")
        bi_prob = np.where(drifted, np.minimum(bi_prob + cd.bi_shift, 1.0), bi_prob)
        age_shift = np.where(drifted, cd.younger_by, 0.0)
    is_bi = type_draw < bi_prob
    age = np.clip(np.rint(np.where(is_bi, 42, 47) + 15 * age_draw - age_shift), 18, 95).astype(np.int64)

    report_delay = _per_line(lambda ln: ln.report_days[0], line) * np.exp(
        _per_line(lambda ln: ln.report_days[1], line) * report_z
    )
    report = accident + np.floor(np.minimum(report_delay, MAX_REPORT_DAYS)).astype(np.int64)
    settle_median = _per_line(lambda ln: ln.settle_months[0], line) * _DAYS_PER_MONTH
    settle_base = np.clip(
        settle_median * np.exp(_per_line(lambda ln: ln.settle_months[1], line) * settle_z), 1.0, MAX_SETTLE_DAYS
    )
    sev_median = np.where(
        is_bi, _per_line(lambda ln: ln.severity_bi[0], line), _per_line(lambda ln: ln.severity_pd[0], line)
    )
    sev_sd = np.where(
        is_bi, _per_line(lambda ln: ln.severity_bi[1], line), _per_line(lambda ln: ln.severity_pd[1], line)
    )
    severity = sev_median * np.exp(sev_sd * severity_z)
    settle = settle_base
    if (dd := spec.development_drift) is not None:
        drifted = accident >= _month(dd.start).astype("datetime64[D]")
        settle = np.where(drifted, settle_base / dd.payment_speedup, settle_base)
        severity = np.where(drifted, severity * dd.severity_factor, severity)
    is_nil = nil < _per_line(lambda ln: ln.nil_share, line)
    is_reopened = reopen < _per_line(lambda ln: ln.reopen_share, line)

    # --- transaction skeleton: counts depend only on base draws (never on knobs) ---
    payment_rate = _per_line(lambda ln: ln.payments, line) * np.clip(np.sqrt(settle_base / settle_median), 0.3, 3)
    n_payments = np.where(is_nil, 0, rng.poisson(payment_rate))  # before the final one
    n_revisions = rng.poisson(_per_line(lambda ln: ln.revisions, line))
    claim_ids = np.arange(n)
    reopened_ids = claim_ids[is_reopened]
    tx_claim = np.concatenate(
        [
            claim_ids,
            np.repeat(claim_ids, n_revisions),
            np.repeat(claim_ids, n_payments),
            claim_ids,
            reopened_ids,
            reopened_ids,
        ]
    )
    kind = np.concatenate(
        [
            np.full(n, _OPEN),
            np.full(n_revisions.sum(), _REVISION),
            np.full(n_payments.sum(), _PAYMENT),
            np.full(n, _CLOSE),
            np.full(len(reopened_ids), _REOPEN),
            np.full(len(reopened_ids), _RECLOSE),
        ]
    )
    m = len(tx_claim)
    life_fraction = rng.random(m)  # where an intermediate row falls in the claim's life
    weight = rng.gamma(np.where(kind == _CLOSE, 2.0, 1.0))  # the final payment is the largest on average
    reserve_z = rng.standard_normal(m)
    record_draw = rng.random(m)
    record_lag = rng.integers(1, 8, m)
    late_lag = rng.integers(30, 180, m)
    time_of_day = rng.integers(8 * 3600, 18 * 3600, m)

    life = settle[tx_claim]
    fraction = np.select([kind == _OPEN, kind >= _CLOSE], [0.0, 1.0], life_fraction)
    offset = fraction * life
    offset = np.where(kind == _REOPEN, life + reopen_gap[tx_claim], offset)
    offset = np.where(kind == _RECLOSE, life + reopen_gap[tx_claim] + reopen_settle[tx_claim], offset)
    order = np.lexsort((kind, offset, tx_claim))
    tx_claim, kind, fraction, weight, offset = (a[order] for a in (tx_claim, kind, fraction, weight, offset))
    rank, first_row = _within_claim_rank(tx_claim)

    # strictly increasing dates within a claim: a running max of (day - rank), offset per claim so claims stay apart
    day = report[tx_claim].astype(np.int64) + np.floor(offset).astype(np.int64)
    shifted = day - rank + tx_claim * 1_000_000
    day = np.maximum.accumulate(shifted) - tx_claim * 1_000_000 + rank
    tx_date = day.astype("datetime64[D]")

    # payments in cents: the severity split by weights, inflated to the payment date
    pays = (kind == _PAYMENT) | ((kind == _CLOSE) & ~is_nil[tx_claim])
    weight = np.where(pays, weight, 0.0)
    weight_sum = np.bincount(tx_claim, weights=weight, minlength=n)
    years_since_start = (tx_date - start_day).astype(np.int64) / 365.25
    inflation = (1 + spec.inflation) ** years_since_start
    real = np.where(pays, severity[tx_claim] * weight / np.where(weight_sum > 0, weight_sum, 1)[tx_claim], 0.0)
    real = np.where(kind == _RECLOSE, severity[tx_claim] * reopen_extra[tx_claim], real)
    paid = np.rint(real * inflation * 100).astype(np.int64)

    # case reserve after each row: the current estimate of the ultimate less paid so far, converging to the truth
    cumulative_paid = np.cumsum(paid)
    cumulative_paid -= np.repeat(cumulative_paid[first_row] - paid[first_row], np.diff(np.r_[first_row, m]))
    main_life = (kind <= _CLOSE) & (kind != _RECLOSE)
    ultimate = np.bincount(tx_claim, weights=np.where(main_life, paid, 0), minlength=n)
    nil_estimate = severity * (1 + spec.inflation) ** ((report - start_day).astype(np.int64) / 365.25) * 100
    ultimate = np.where(is_nil, nil_estimate, ultimate)
    bias = _per_line(lambda ln: ln.case_bias, line)[tx_claim]
    estimate = ultimate[tx_claim] * np.exp((bias + 0.3 * reserve_z) * (1 - fraction))
    reserve = np.maximum(estimate - cumulative_paid, 0)
    extra = severity[tx_claim] * reopen_extra[tx_claim] * inflation * 100 * np.exp(0.2 * reserve_z)
    reserve = np.select([(kind == _CLOSE) | (kind == _RECLOSE), kind == _REOPEN], [0, extra], reserve)
    reserve = np.rint(reserve).astype(np.int64)
    reserve_change = np.diff(reserve, prepend=0)
    reserve_change[first_row] = reserve[first_row]

    lag = np.where(record_draw < 0.75, 0, np.where(record_draw < 0.995, record_lag, late_lag))
    recorded = (tx_date + lag).astype("datetime64[s]") + time_of_day.astype("timedelta64[s]")

    claim_id = np.array([f"C{i:09d}" for i in range(first_claim, first_claim + n)], dtype=object)
    codes = np.array([ln.code for ln in LINES], dtype=object)
    claims = pd.DataFrame(
        {
            "claim_id": claim_id,
            "policy_id": codes[line] + np.array([f"-{p:08d}" for p in policy.tolist()], dtype=object),
            "line_of_business": np.array([ln.name for ln in LINES], dtype=object)[line],
            "claim_type": np.where(is_bi, CLAIM_TYPES[0], CLAIM_TYPES[1]).astype(object),
            "accident_date": accident,
            "report_date": report,
            "claimant_age": age,
            "region": np.array(REGIONS, dtype=object)[region],
        }
    )
    sequence = np.array([f"-{i:03d}" for i in range(rank.max(initial=0) + 1)], dtype=object)
    transactions = pd.DataFrame(
        {
            "transaction_id": np.array(
                list(map(operator.add, claim_id[tx_claim].tolist(), sequence[rank].tolist())), dtype=object
            ),
            "claim_id": claim_id[tx_claim],
            "transaction_date": tx_date,
            "recorded_at": recorded,
            "paid_amount": paid / 100,
            "case_reserve_change": reserve_change / 100,
            "status": _STATUS[kind],
        }
    )
    return claims, transactions, tx_claim


class _ClaimPicker:
    """Draws distinct claims for defects, so defects never overlap and every count stays exact."""

    def __init__(self, rng: np.random.Generator, n_claims: int):
        self.rng = rng
        self.order = rng.permutation(n_claims)
        self.used = np.zeros(n_claims, dtype=bool)

    def claims(self, count: int, eligible: np.ndarray | None, what: str) -> np.ndarray:
        ok = ~self.used[self.order] if eligible is None else eligible[self.order] & ~self.used[self.order]
        picked = self.order[ok][:count]
        if len(picked) < count:
            raise ValueError(f"only {len(picked)} claims of a chunk are eligible for {count} {what} defects")
        self.used[picked] = True
        return picked

    def rows(self, count: int, tx_claim: np.ndarray, row_ok: np.ndarray, what: str) -> np.ndarray:
        """One random eligible row on each of ``count`` distinct claims."""
        has_row = np.bincount(tx_claim[row_ok], minlength=len(self.used)) > 0
        picked = self.claims(count, has_row, what)
        rows = self.rng.permutation(np.flatnonzero(row_ok & np.isin(tx_claim, picked)))
        _, first = np.unique(tx_claim[rows], return_index=True)
        return rows[first]


def _inject_defects(
    claims: pd.DataFrame, transactions: pd.DataFrame, tx_claim: np.ndarray, defects: Defects, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply ``defects`` (this chunk's counts) to the chunk's frames."""
    pick = _ClaimPicker(rng, len(claims))
    if defects.bad_ages:
        rows = pick.claims(defects.bad_ages, None, "bad_ages")
        ages = claims["claimant_age"].to_numpy(copy=True)
        low = np.arange(len(rows)) % 2 == 0  # half below 0, half above 120
        ages[rows] = np.where(low, rng.integers(-10, 0, len(rows)), rng.integers(121, 151, len(rows)))
        claims["claimant_age"] = ages
    if defects.unknown_types:
        rows = pick.claims(defects.unknown_types, None, "unknown_types")
        claims.loc[rows, "claim_type"] = UNKNOWN_CLAIM_TYPE
    if defects.accident_after_report:
        rows = pick.claims(defects.accident_after_report, None, "accident_after_report")
        accident = claims["accident_date"].to_numpy(copy=True)
        accident[rows] = claims["report_date"].to_numpy()[rows] + rng.integers(1, 31, len(rows)).astype(
            "timedelta64[D]"
        )
        claims["accident_date"] = accident

    paid = transactions["paid_amount"].to_numpy(copy=True)
    ids = transactions["transaction_id"].to_numpy(copy=True)
    if defects.future_dated:
        valuation = np.datetime64(defects.valuation_date, "D")
        dates = transactions["transaction_date"].to_numpy(copy=True).astype("datetime64[D]")
        last_date = np.full(len(claims), np.datetime64("NaT"), dtype="datetime64[D]")
        np.maximum.at(last_date.view(np.int64), tx_claim, dates.view(np.int64))
        # a claim finished by V, so the moved row cannot collide with another row of its claim
        settled = (last_date <= valuation)[tx_claim]
        recorded_by_v = transactions["recorded_at"].to_numpy() < (valuation + 1).astype("datetime64[s]")
        rows = pick.rows(defects.future_dated, tx_claim, settled & recorded_by_v, "future_dated")
        dates[rows] = valuation + rng.integers(1, 32, len(rows)).astype("timedelta64[D]")
        transactions["transaction_date"] = dates
    if defects.null_paid:
        paid[pick.rows(defects.null_paid, tx_claim, paid > 0, "null_paid")] = np.nan
    if defects.duplicate_ids:
        sources = pick.rows(defects.duplicate_ids, tx_claim, np.ones(len(ids), dtype=bool), "duplicate_ids")
        targets = pick.rows(defects.duplicate_ids, tx_claim, np.ones(len(ids), dtype=bool), "duplicate_ids")
        ids[targets] = ids[sources]
    transactions["paid_amount"] = paid
    transactions["transaction_id"] = ids
    if defects.duplicate_rows:
        rows = pick.rows(defects.duplicate_rows, tx_claim, paid > 0, "duplicate_rows")
        copies = transactions.iloc[rows].copy()
        copies["transaction_id"] = copies["transaction_id"] + "-D"  # a double posting gets its own system id
        order = np.argsort(np.r_[tx_claim, tx_claim[rows]], kind="stable")
        transactions = pd.concat([transactions, copies], ignore_index=True).iloc[order].reset_index(drop=True)
    return claims, transactions


def iter_book(spec: BookSpec) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield the book's (claims, transactions) chunk by chunk, defects included; exposure is ``exposure_frame``."""
    sizes = _chunk_sizes(spec.claims, spec.chunk_claims)
    counts = {
        f.name: _split(getattr(spec.defects, f.name), sizes)
        for f in dataclasses.fields(Defects)
        if f.name != "valuation_date"
    }
    first_claim = 0
    for index, size in enumerate(sizes):
        claims, transactions, tx_claim = _generate_chunk(spec, index, first_claim, size)
        chunk_defects = Defects(
            **{name: c[index] for name, c in counts.items()}, valuation_date=spec.defects.valuation_date
        )
        if chunk_defects != Defects(valuation_date=spec.defects.valuation_date):
            claims, transactions = _inject_defects(
                claims, transactions, tx_claim, chunk_defects, np.random.default_rng([spec.seed, index, 1])
            )
        yield claims, transactions
        first_claim += size


def generate_book(spec: BookSpec) -> Book:
    """The whole book in memory (fine up to a few hundred thousand claims; ``write_book`` streams larger ones)."""
    parts = list(iter_book(spec))
    return Book(
        claims=pd.concat([c for c, _ in parts], ignore_index=True),
        transactions=pd.concat([t for _, t in parts], ignore_index=True),
        exposure=exposure_frame(spec),
        control_totals=control_totals_frame(spec, [_control_partial(c, t) for c, t in parts])
        if spec.control_totals
        else None,
    )


@dataclass(frozen=True)
class WriteSummary:
    claims: int
    transactions: int
    seconds: float
    db: str

    def __str__(self) -> str:
        return (
            f"synthetic book: {self.claims:,} claims, {self.transactions:,} transactions in {self.seconds:.1f} s "
            f"-> {self.db}"
        )


def _prefetch(items: Iterator[T]) -> Iterator[T]:
    """Yield ``items``, producing the next one in a background thread while the caller works on the current one."""
    slot: queue.Queue = queue.Queue(maxsize=1)

    def produce() -> None:
        try:
            for item in items:
                slot.put((True, item))
            slot.put((False, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slot.put((False, exc))

    threading.Thread(target=produce, daemon=True, name="synth-prefetch").start()
    while True:
        more, item = slot.get()
        if not more:
            if item is not None:
                raise item
            return
        yield item


def write_book(url: str, spec: BookSpec, reset: bool = False, progress: bool = True) -> WriteSummary:
    """Generate the book chunk by chunk and bulk-load each chunk into the database at ``url``.

    Memory stays at about two chunks whatever the book size (the next chunk is generated in a thread while the
    current one loads). From ``LARGE_BOOK_CLAIMS`` claims the claim_transactions indexes are dropped during the load
    and rebuilt at the end. Each chunk is its own transaction: after a failure, rerun with ``reset=True``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    engine = make_engine(url)
    # a large load is several times faster into an unindexed table, with the indexes built once at the end
    indexes = list(schema.claim_transactions.indexes) if spec.claims >= LARGE_BOOK_CLAIMS else []
    try:
        schema.create_all(engine)
        if reset:
            reset_source_tables(engine)
        for index in indexes:
            index.drop(engine, checkfirst=True)
        n_transactions, partials = 0, []
        with tqdm(total=spec.claims, unit="claims", unit_scale=True, desc="synth", disable=not progress) as bar:
            for claims, transactions in _prefetch(iter_book(spec)):
                bulk_insert(engine, schema.claims, claims[CLAIM_COLUMNS])
                n_transactions += bulk_insert(engine, schema.claim_transactions, transactions[TRANSACTION_COLUMNS])
                if spec.control_totals:
                    partials.append(_control_partial(claims, transactions))
                bar.update(len(claims))
        bulk_insert(engine, schema.earned_exposure, exposure_frame(spec))
        if partials:
            bulk_insert(engine, schema.finance_control_totals, control_totals_frame(spec, partials))
    finally:
        for index in indexes:
            index.create(engine, checkfirst=True)
        engine.dispose()
    return WriteSummary(spec.claims, n_transactions, time.perf_counter() - started, redact(url))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.synth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--claims", type=int, default=100_000, help="number of claims (default 100000)")
    parser.add_argument("--start", default="2015-01", help="first accident month YYYY-MM (default 2015-01)")
    parser.add_argument("--end", default="2024-12", help="last accident month YYYY-MM (default 2024-12)")
    parser.add_argument("--seed", type=int, default=7, help="random seed: same seed, identical rows (default 7)")
    parser.add_argument("--inflation", type=float, default=0.04, help="claims inflation per year (default 0.04)")
    parser.add_argument("--db", help="SQLAlchemy URL (default: the reserving_db connection or the SQLite file)")
    parser.add_argument("--reset", action="store_true", help="delete the source tables' rows first")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-control-totals",
        dest="control_totals",
        action="store_false",
        help="do not write finance_control_totals (the general ledger's totals per line and month)",
    )
    cov = parser.add_argument_group("covariate drift (claims with an accident from --drift-month)")
    cov.add_argument("--drift-month", help="first drifted accident month YYYY-MM")
    cov.add_argument("--younger-by", type=float, default=0.0, help="claimants younger by this many years")
    cov.add_argument("--bi-shift", type=float, default=0.0, help="added to P(BodilyInjury), e.g. 0.15")
    dev = parser.add_argument_group("development drift (claims with an accident from --dev-drift-month)")
    dev.add_argument("--dev-drift-month", help="first drifted accident month YYYY-MM")
    dev.add_argument("--payment-speedup", type=float, default=1.0, help="settlement delays divided by this")
    dev.add_argument("--severity-factor", type=float, default=1.0, help="severities multiplied by this")
    bad = parser.add_argument_group("defects (exact counts)")
    bad.add_argument("--bad-ages", type=int, default=0, help="claimant ages below 0 or above 120")
    bad.add_argument("--null-paid", type=int, default=0, help="transactions with a NULL paid amount")
    bad.add_argument("--unknown-types", type=int, default=0, help=f"claims of type {UNKNOWN_CLAIM_TYPE!r}")
    bad.add_argument("--duplicate-ids", type=int, default=0, help="transactions reusing another row's id")
    bad.add_argument(
        "--future-dated", type=int, default=0, help="rows dated after --defect-valuation-date, recorded by it"
    )
    bad.add_argument("--defect-valuation-date", type=dt.date.fromisoformat, help="valuation date for --future-dated")
    bad.add_argument("--accident-after-report", type=int, default=0, help="claims with accident after report")
    bad.add_argument("--duplicate-rows", type=int, default=0, help="double-posted payments (claim, date, amount)")
    return parser


def spec_from_args(args: argparse.Namespace) -> BookSpec:
    """The BookSpec that parsed CLI arguments describe."""
    covariate = development = None
    if args.drift_month:
        covariate = CovariateDrift(args.drift_month, younger_by=args.younger_by, bi_shift=args.bi_shift)
    if args.dev_drift_month:
        development = DevelopmentDrift(
            args.dev_drift_month, payment_speedup=args.payment_speedup, severity_factor=args.severity_factor
        )
    defects = Defects(
        bad_ages=args.bad_ages,
        null_paid=args.null_paid,
        unknown_types=args.unknown_types,
        duplicate_ids=args.duplicate_ids,
        future_dated=args.future_dated,
        accident_after_report=args.accident_after_report,
        duplicate_rows=args.duplicate_rows,
        valuation_date=args.defect_valuation_date,
    )
    return BookSpec(
        claims=args.claims,
        start=args.start,
        end=args.end,
        seed=args.seed,
        inflation=args.inflation,
        covariate_drift=covariate,
        development_drift=development,
        defects=defects,
        control_totals=args.control_totals,
    )


def main(argv: list[str] | None = None) -> WriteSummary:
    from include.reserving.config import warehouse_url

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    summary = write_book(args.db or warehouse_url(), spec, reset=args.reset, progress=not args.quiet)
    print(summary)
    return summary


if __name__ == "__main__":
    main()

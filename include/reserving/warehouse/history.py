"""Monthly per-line aggregates of the SOURCE tables as at V, for month-level plausibility (plausibility.py): grouped
queries, each row a (line, month); the transactions' volumes only over the history window the checks judge.

A month's rows are attributed the way the basis sees them arrive: ``as_recorded`` by the month they were recorded
in (``recorded_at``; rows recorded after V are not in the extract, as in ingest), ``restated`` by the month they are
dated in (recording time ignored). Claims count in the month they were reported; earned premium and exposure in
their month. The data-defect counts (``recorded_at`` before ``transaction_date``, status values outside the known
set) are counted per (line, month) over the whole extract as at V, by a pass that joins only the defective rows.

Case-reserve raises are judged claim by claim: for each claim with a case reserve at the end of the month before
(the sum of its earlier changes) whose reserve was raised in the month, the raise (the sum of its positive changes)
as a fraction of that previous reserve; per (line, month) the count of such claims and the quartiles of the fraction.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import Float, case, cast, func, or_, select
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.dates import month_index, month_start
from include.reserving.domain import SEGMENT_SEPARATOR, TRANSACTION_STATUSES, Basis
from include.reserving.warehouse.cells import (
    LINE_ONLY,
    _month_index_sql,
    extract_filters,
    segment_definition,
    segment_definition_at,
)
from include.reserving.warehouse.core import read_frame

Bind = Engine | Connection


def monthly_aggregates(
    bind: Bind, valuation_date: dt.date, basis: str, median_months: int = 24
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(transactions, claims, exposure)`` per (segment, month index) as at V; see the module docstring.

    transactions (V's month and the ``median_months`` before it; a row of an older month carries only defects):
    rows, paid, case_movement (gross: the sum of absolute case-reserve changes), the largest single
    payment and case-reserve change (a large loss is not a defect), paid_rows, last_recorded,
    recorded_before_dated, bad_status and one bad_status_example (over the whole extract), and median_paid (the
    median positive payment: a sort, not a sum); claims: new_claims; exposure:
    earned_premium, exposure (sums: NaN or infinity survive them).
    """
    c, t, e = schema.claims, schema.claim_transactions, schema.earned_exposure
    claim_filter, txn_filter = extract_filters(valuation_date, basis)
    arrival = t.c.recorded_at if basis == Basis.AS_RECORDED else t.c.transaction_date
    month = _month_index_sql(arrival)
    paid = func.coalesce(t.c.paid_amount, 0)
    case_change = func.coalesce(t.c.case_reserve_change, 0)
    nonzero = t.c.paid_amount != 0
    bad_status = or_(
        t.c.status.is_(None), t.c.status.not_in(TRANSACTION_STATUSES)
    )  # IN is case-sensitive on both databases
    # Volumes and the median are only judged over the history window (V's month and the ``median_months`` before
    # it), so only that window's rows are aggregated; the defects below are counted over the whole extract.
    first_month = month_index(valuation_date) - median_months
    since = month_start(first_month)
    since = dt.datetime.combine(since, dt.time()) if basis == Basis.AS_RECORDED else since
    joined = t.join(c, c.c.claim_id == t.c.claim_id)
    transactions = (
        select(
            c.c.line_of_business.label("segment"),
            month.label("month"),
            func.count().label("rows"),
            func.sum(paid).label("paid"),
            func.sum(func.abs(case_change)).label("case_movement"),
            func.max(paid).label("largest_paid"),
            func.max(func.abs(case_change)).label("largest_case_change"),
            func.sum(case((nonzero, 1), else_=0)).label("paid_rows"),
            func.max(t.c.recorded_at).label("last_recorded"),
        )
        .select_from(joined)
        .where(txn_filter, claim_filter, arrival >= since)
        .group_by(c.c.line_of_business, month)
    )
    # Only the defective rows reach the join (the predicate is on the transactions alone), so counting them over
    # the whole extract costs one filtered pass, not a second aggregate of the book.
    early = t.c.recorded_at < t.c.transaction_date
    defects = (
        select(
            c.c.line_of_business.label("segment"),
            month.label("month"),
            func.sum(case((early, 1), else_=0)).label("recorded_before_dated"),
            func.sum(case((bad_status, 1), else_=0)).label("bad_status"),
            func.min(case((bad_status, func.coalesce(t.c.status, "NULL")))).label("bad_status_example"),
        )
        .select_from(joined)
        .where(txn_filter, claim_filter, or_(early, bad_status))
        .group_by(c.c.line_of_business, month)
    )
    # The median positive payment: a few large losses do not move it, a units shift moves it whole. Window
    # functions give it on both databases (SQLite has no median aggregate).
    partition = (c.c.line_of_business, month)
    ranked = (
        select(
            c.c.line_of_business.label("segment"),
            month.label("month"),
            t.c.paid_amount.label("amount"),
            func.row_number().over(partition_by=partition, order_by=t.c.paid_amount).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        .select_from(joined)
        .where(txn_filter, claim_filter, t.c.paid_amount > 0, arrival >= since)
        .subquery()
    )
    middle = (ranked.c.rn * 2 >= ranked.c.n) & (ranked.c.rn * 2 <= ranked.c.n + 2)  # one row (odd n) or two
    medians = (
        select(ranked.c.segment, ranked.c.month, func.avg(ranked.c.amount).label("median_paid"))
        .where(middle)
        .group_by(ranked.c.segment, ranked.c.month)
    )
    report_month = _month_index_sql(c.c.report_date)
    claims = (
        select(c.c.line_of_business.label("segment"), report_month.label("month"), func.count().label("new_claims"))
        .where(claim_filter)
        .group_by(c.c.line_of_business, report_month)
    )
    exposure_month = _month_index_sql(e.c.month)
    exposure = (
        select(
            e.c.line_of_business.label("segment"),
            exposure_month.label("month"),
            func.sum(e.c.earned_premium).label("earned_premium"),
            func.sum(e.c.exposure_units).label("exposure"),
        )
        .where(e.c.month <= valuation_date)
        .group_by(e.c.line_of_business, exposure_month)
    )
    raises = _case_raises(txn_filter, claim_filter, arrival, month, since, first_month)
    frames = [read_frame(bind, query) for query in (transactions, claims, exposure, medians, raises, defects)]
    for frame in frames:
        frame["month"] = frame["month"].astype("int64")
    keys = ["segment", "month"]
    found, raises_frame, medians_frame = frames.pop(), frames.pop(), frames.pop()
    txn = (
        frames[0]
        .merge(medians_frame, on=keys, how="left")
        .merge(raises_frame, on=keys, how="left")
        .merge(found, on=keys, how="outer")
    )
    for column in ("recorded_before_dated", "bad_status"):
        txn[column] = txn[column].fillna(0).astype("int64")
    txn["last_recorded"] = pd.to_datetime(txn["last_recorded"])
    return txn, frames[1], frames[2]


def _case_raises(txn_filter, claim_filter, arrival, month, since, first_month: int):
    """Per (line, month) from ``first_month`` (arrivals from ``since``): raise_claims (claims with a case reserve at
    the previous month end that was raised in the month) and raise_q1 / raise_median / raise_q3 of raise / previous
    reserve over those claims.

    Only the claims raised in the window are aggregated (a semi-join: a 10-year book has most of its claims closed
    long before), per (claim, month) with every month before ``first_month`` folded into one (the opening reserve);
    a running sum over the claim's months gives its reserve at each previous month end. The claims (line, filter)
    are joined after the aggregation, one row per claim month rather than per transaction.
    """
    t, c = schema.claim_transactions, schema.claims
    change = func.coalesce(t.c.case_reserve_change, 0)
    bucket = case((month < first_month, first_month - 1), else_=month)
    # a superset is enough here (the aggregation applies the extract's filters): without them the pass is one scan
    raised_claims = select(t.c.claim_id).where(arrival >= since, t.c.case_reserve_change > 0)
    per_claim = (
        select(
            t.c.claim_id,
            bucket.label("month"),
            func.sum(change).label("net"),
            func.sum(case((change > 0, change), else_=0)).label("raised"),
        )
        .where(txn_filter, t.c.claim_id.in_(raised_claims))
        .group_by(t.c.claim_id, bucket)
        .subquery()
    )
    previous = func.sum(per_claim.c.net).over(
        partition_by=per_claim.c.claim_id, order_by=per_claim.c.month, rows=(None, -1)
    )
    claim_months = select(
        per_claim.c.claim_id, per_claim.c.month, per_claim.c.raised, previous.label("previous")
    ).subquery()
    with_previous = (
        select(
            c.c.line_of_business.label("segment"), claim_months.c.month, claim_months.c.raised, claim_months.c.previous
        )
        .select_from(claim_months.join(c, c.c.claim_id == claim_months.c.claim_id))
        .where(claim_filter)
        .subquery()
    )
    ratio = cast(with_previous.c.raised, Float) / cast(with_previous.c.previous, Float)
    partition = (with_previous.c.segment, with_previous.c.month)
    ranked = (
        select(
            with_previous.c.segment,
            with_previous.c.month,
            ratio.label("ratio"),
            func.row_number().over(partition_by=partition, order_by=ratio).label("rn"),
            func.count().over(partition_by=partition).label("n"),
        )
        # a previous reserve under half a cent is a rounding residue of a released reserve, not an open claim
        .where(with_previous.c.month >= first_month, with_previous.c.raised > 0, with_previous.c.previous > 0.005)
        .subquery()
    )
    rn, n = ranked.c.rn, ranked.c.n

    def quantile(share: int) -> object:  # share/4 of the way: one row, or the mean of two at an exact boundary
        return func.avg(case(((rn * 4 >= n * share) & (rn * 4 <= n * share + 4), ranked.c.ratio)))

    return select(
        ranked.c.segment,
        ranked.c.month,
        func.count().label("raise_claims"),
        quantile(1).label("raise_q1"),
        quantile(2).label("raise_median"),
        quantile(3).label("raise_q3"),
    ).group_by(ranked.c.segment, ranked.c.month)


def ingested_lines(bind: Engine, valuation_date: dt.date, basis: str) -> list[str]:
    """The lines of business the ingest of ``valuation_date`` found (its triangle cells): the lines the pipeline
    knew last month, even when the extract has since lost a line's whole history. Cells cut finer than the line
    (setting segment_by, line first) give their labels' line part."""
    tc = schema.triangle_cells
    query = select(tc.c.segment).distinct().where(tc.c.valuation_date == valuation_date, tc.c.basis == basis)
    segments = read_frame(bind, query)["segment"]
    if segment_definition_at(bind, valuation_date, basis) in (None, segment_definition(LINE_ONLY)):
        return sorted(segments)
    return sorted({segment.split(SEGMENT_SEPARATOR)[0] for segment in segments})


def month_arrivals(bind: Bind, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """What arrived in V's month, from two cheap aggregates of the source tables (before anything is ingested): one
    row in the shape of :func:`monthly_aggregates`' transactions (month, rows, last_recorded: the stalled-extract
    check's input) plus ``exposure_rows`` (earned_exposure rows of the month) and ``last_exposure`` (the latest
    month with a row, by V)."""
    t, e = schema.claim_transactions, schema.earned_exposure
    _, txn_filter = extract_filters(valuation_date, basis)
    arrival = t.c.recorded_at if basis == Basis.AS_RECORDED else t.c.transaction_date
    start = month_start(month_index(valuation_date))
    since = dt.datetime.combine(start, dt.time()) if basis == Basis.AS_RECORDED else start
    transactions = select(
        func.coalesce(func.sum(case((arrival >= since, 1), else_=0)), 0).label("rows"),
        func.max(t.c.recorded_at).label("last_recorded"),
    ).where(txn_filter)
    exposure = select(
        func.coalesce(func.sum(case((e.c.month >= start, 1), else_=0)), 0).label("exposure_rows"),
        func.max(e.c.month).label("last_exposure"),
    ).where(e.c.month <= valuation_date)
    found = pd.concat([read_frame(bind, query) for query in (transactions, exposure)], axis=1)
    found["month"] = month_index(valuation_date)
    for column in ("rows", "exposure_rows"):
        found[column] = found[column].astype("int64")
    found["last_recorded"] = pd.to_datetime(found["last_recorded"])
    return found

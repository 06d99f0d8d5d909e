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
import math

import pandas as pd
from sqlalchemy import Float, case, cast, delete, func, or_, select
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.dates import end_of_day, month_index, month_start
from include.reserving.domain import SEGMENT_SEPARATOR, TRANSACTION_STATUSES, Basis
from include.reserving.warehouse.cells import (
    LINE_ONLY,
    _month_index_sql,
    extract_filters,
    segment_definition,
    segment_definition_at,
)
from include.reserving.warehouse.core import _connection, insert_rows, key_clause, read_frame

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
    earned_premium, exposure (sums: NaN or infinity survive them). Sums of money are rounded to the cent (stored
    amounts are cents), so they do not depend on the order the database adds them in.
    """
    return _aggregates(bind, valuation_date, basis, month_index(valuation_date) - median_months, whole_extract=True)


def aggregates_since(
    bind: Bind,
    valuation_date: dt.date,
    basis: str,
    previous: tuple[pd.DataFrame, pd.DataFrame],
    median_months: int = 24,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What :func:`monthly_aggregates` returns, from the previous month end P's (``previous``: its transactions and
    claims frames, as :func:`stored_aggregates` reads them back) plus V's month read from the source.

    Only valid when the months before V's are as P saw them: the book as recorded, P's rows still in the source
    (the ingest's premise), and no row recorded by P that joined the extract since (:func:`rows_joining_before`).
    Then a month's transactions (by ``recorded_at``), its reported claims, medians, raises and defects are P's.
    """
    mv = month_index(valuation_date)
    first_month = mv - median_months
    txn_now, claims_now, exposure = _aggregates(bind, valuation_date, basis, mv, whole_extract=False)
    stored_txn, stored_claims = previous
    old = stored_txn[stored_txn["month"] < mv].copy()
    # months that left the window keep only their defect counts (the full path aggregates volumes over the window)
    before = old["month"] < first_month
    old.loc[before, VOLUME_COLUMNS] = math.nan
    old = old[~before | (old["recorded_before_dated"] > 0) | (old["bad_status"] > 0)]
    txn = _canonical_transactions(pd.concat([old, txn_now], ignore_index=True))
    claims = _canonical_claims(pd.concat([stored_claims[stored_claims["month"] < mv], claims_now], ignore_index=True))
    return txn, claims, exposure


def _aggregates(
    bind: Bind, valuation_date: dt.date, basis: str, first_month: int, whole_extract: bool
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The frames of :func:`monthly_aggregates` with volumes from ``first_month``; ``whole_extract``: defects and
    reported claims over the whole extract (else from ``first_month`` too)."""
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
    since = month_start(first_month)
    since = dt.datetime.combine(since, dt.time()) if basis == Basis.AS_RECORDED else since
    recent = [] if whole_extract else [arrival >= since]
    joined = t.join(c, c.c.claim_id == t.c.claim_id)
    transactions = (
        select(
            c.c.line_of_business.label("segment"),
            month.label("month"),
            func.count().label("rows"),
            func.round(func.sum(paid), 2).label("paid"),
            func.round(func.sum(func.abs(case_change)), 2).label("case_movement"),
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
        .where(txn_filter, claim_filter, or_(early, bad_status), *recent)
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
    reported_since = [] if whole_extract else [c.c.report_date >= month_start(first_month)]
    claims = (
        select(c.c.line_of_business.label("segment"), report_month.label("month"), func.count().label("new_claims"))
        .where(claim_filter, *reported_since)
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
    # arrived by V (rows recorded after V are not in the extract: a re-run of a past month end, or a backfill)
    arrived = arrival < end_of_day(valuation_date) if basis == Basis.AS_RECORDED else arrival <= valuation_date
    raises = _case_raises(txn_filter, claim_filter, arrival, month, (arrival >= since, arrived), first_month)
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
    return _canonical_transactions(txn), _canonical_claims(frames[1]), _canonical_exposure(frames[2])


TRANSACTION_COLUMNS = [
    "segment",
    "month",
    "rows",
    "paid",
    "case_movement",
    "largest_paid",
    "largest_case_change",
    "paid_rows",
    "last_recorded",
    "median_paid",
    "raise_claims",
    "raise_q1",
    "raise_median",
    "raise_q3",
    "recorded_before_dated",
    "bad_status",
    "bad_status_example",
]
VOLUME_COLUMNS = TRANSACTION_COLUMNS[2:14]  # aggregated over the history window only (NaN on older defect rows)
DEFECT_COLUMNS = ["recorded_before_dated", "bad_status"]


def _canonical_transactions(frame: pd.DataFrame) -> pd.DataFrame:
    """One dtype per column (floats for every volume: NaN where a month has none), rows by (segment, month): a
    frame read back, merged or recomputed compares equal value for value."""
    frame = frame.reindex(columns=TRANSACTION_COLUMNS)
    frame["month"] = frame["month"].astype("int64")
    for column in VOLUME_COLUMNS:
        if column != "last_recorded":
            frame[column] = frame[column].astype("float64")  # numeric(18,2) sums arrive as Decimal
    frame["last_recorded"] = pd.to_datetime(frame["last_recorded"]).astype("datetime64[us]")
    for column in DEFECT_COLUMNS:
        frame[column] = frame[column].fillna(0).astype("int64")
    example = frame["bad_status_example"]
    frame["bad_status_example"] = example.astype(object).where(example.notna(), None)
    return frame.sort_values(["segment", "month"]).reset_index(drop=True)


def _canonical_claims(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=["segment", "month", "new_claims"])
    frame[["month", "new_claims"]] = frame[["month", "new_claims"]].astype("int64")
    return frame.sort_values(["segment", "month"]).reset_index(drop=True)


def _canonical_exposure(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=["segment", "month", "earned_premium", "exposure"])
    frame["month"] = frame["month"].astype("int64")
    frame[["earned_premium", "exposure"]] = frame[["earned_premium", "exposure"]].astype("float64")
    return frame.sort_values(["segment", "month"]).reset_index(drop=True)


def _case_raises(txn_filter, claim_filter, arrival, month, window, first_month: int):
    """Per (line, month) from ``first_month`` (``window``: arrivals from its start, by V): raise_claims (claims with
    a case reserve at the previous month end that was raised in the month) and raise_q1 / raise_median / raise_q3 of
    raise / previous reserve over those claims.

    Only the claims raised in the window are aggregated (a semi-join: a 10-year book has most of its claims closed
    long before), per (claim, month) with every month before ``first_month`` folded into one (the opening reserve);
    a running sum over the claim's months gives its reserve at each previous month end. The claims (line, filter)
    are joined after the aggregation, one row per claim month rather than per transaction.
    """
    t, c = schema.claim_transactions, schema.claims
    change = func.coalesce(t.c.case_reserve_change, 0)
    bucket = case((month < first_month, first_month - 1), else_=month)
    # a superset is enough here (the aggregation applies the extract's filters): without them the pass is one scan.
    # DISTINCT: over the raw rows PostgreSQL 15 guessed ten times the claims and walked the whole claim_id index
    # across a table in recording order (46 s instead of 5 s at 1M claims); over distinct claims it hashes them.
    # Bounded by V too: a month end before the extract's last (a backfill; the synthetic book, whose claims develop
    # on to 2044) would otherwise read the history of every claim raised after V as well (1M claims, V's month: 116k
    # claims' histories instead of those raised in the month; 1.9 s -> 0.9 s, the same aggregates).
    raised_claims = select(t.c.claim_id).distinct().where(*window, t.c.case_reserve_change > 0)
    per_claim = (
        select(
            t.c.claim_id,
            bucket.label("month"),
            func.round(func.sum(change), 2).label("net"),
            func.round(func.sum(case((change > 0, change), else_=0)), 2).label("raised"),
        )
        .where(txn_filter, t.c.claim_id.in_(raised_claims))
        .group_by(t.c.claim_id, bucket)
        .subquery()
    )
    previous = func.sum(per_claim.c.net).over(
        partition_by=per_claim.c.claim_id, order_by=per_claim.c.month, rows=(None, -1)
    )
    # to the cent: the reserve is the same number however the months before are grouped (one opening bucket in the
    # incremental path, one per month in the full path)
    claim_months = select(
        per_claim.c.claim_id, per_claim.c.month, per_claim.c.raised, func.round(previous, 2).label("previous")
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


def rows_joining_before(bind: Bind, previous: dt.date, valuation_date: dt.date) -> int:
    """Transactions recorded by the previous month end P that are in the extract as recorded at V but were not in
    P's: dated after P, or on a claim reported after P. They are attributed to the month they were recorded in, a
    month before V's, so while there are any, the months P aggregated are not V's (:func:`aggregates_since`)."""
    c, t = schema.claims, schema.claim_transactions
    by_p = end_of_day(previous)
    # two index range reads: the rows dated in (P, V], the claims reported in (P, V]; a row in both counts once
    dated_since = (
        select(func.count())
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(
            t.c.recorded_at < by_p,
            t.c.transaction_date > previous,
            t.c.transaction_date <= valuation_date,
            c.c.report_date <= valuation_date,
        )
    )
    newly_reported = (
        select(func.count())
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(
            t.c.recorded_at < by_p,
            t.c.transaction_date <= previous,
            c.c.report_date > previous,
            c.c.report_date <= valuation_date,
        )
    )
    with _connection(bind, write=False) as conn:
        return sum(int(conn.execute(query).scalar_one()) for query in (dated_since, newly_reported))


def store_aggregates(
    bind: Bind, valuation_date: dt.date, basis: str, txn: pd.DataFrame, claims: pd.DataFrame, window_start: int
) -> int:
    """Replace the stored aggregates of (V, basis) (see schema.monthly_aggregates) by ``txn`` and ``claims``, the
    frames of :func:`monthly_aggregates` whose volumes start at month ``window_start``; returns the rows written."""
    both = txn.merge(claims, on=["segment", "month"], how="outer", indicator=True)
    both["in_transactions"] = both.pop("_merge") != "right_only"
    for column in ("rows", "paid_rows", "raise_claims", "new_claims"):
        both[column] = both[column].astype("Int64")  # counts, NULL where the frame has none
    ma = schema.monthly_aggregates
    key = {"valuation_date": valuation_date, "basis": str(basis)}
    with _connection(bind, write=True) as conn:
        conn.execute(delete(ma).where(key_clause(ma, key)))
        return insert_rows(conn, ma, both.assign(window_start=window_start, **key))


def stored_aggregates(bind: Bind, valuation_date: dt.date, basis: str) -> tuple[pd.DataFrame, pd.DataFrame, int] | None:
    """The transactions and claims frames stored for (V, basis) and the month their volumes start at; None when
    nothing is stored."""
    ma = schema.monthly_aggregates
    query = select(ma).where(ma.c.valuation_date == valuation_date, ma.c.basis == basis)
    frame = read_frame(bind, query)
    if frame.empty:
        return None
    txn = _canonical_transactions(frame[frame["in_transactions"].astype(bool)])
    claims = _canonical_claims(frame[frame["new_claims"].notna()])
    return txn, claims, int(frame["window_start"].min())

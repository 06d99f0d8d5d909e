"""Triangle cells, cell increments, the claim snapshot and its metadata, keyed by (V, basis); the point-in-time reads
of the book: the whole book as at V (the full path), or what the as-recorded book gained since the previous month end
(the incremental path) with the stored facts that say whether that path may run (:func:`previous_ingest`).

Basis ``as_recorded`` keeps transactions dated and recorded by V, so a re-run next year reproduces the numbers;
``restated`` keeps everything dated by V whatever its recording time (latest knowledge).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateTable, DropTable

from include.reserving import schema
from include.reserving.cells import CELL_COLUMNS
from include.reserving.dates import end_of_day, month_index, month_start, parse_valuation_date
from include.reserving.domain import INITIAL_INCURRED_DAYS, SEGMENT_SEPARATOR, Basis
from include.reserving.warehouse.core import (
    clear_staged,
    insert_rows,
    key_clause,
    read_frame,
    replace_rows,
    swap_staged,
)

if TYPE_CHECKING:
    from include.reserving.drift import Window


LINE_ONLY = ("line_of_business",)  # the default segment definition (setting segment_by)


def segment_label(claims, segment_by: Sequence[str] = LINE_ONLY):
    """The one expression naming a claim's reserving segment: its ``segment_by`` attributes (columns of ``claims``,
    the table or a select of its columns) joined by " | " in the setting's order, e.g. "Motor | North"; the plain
    line of business by default, so a line-level book keeps its labels."""
    parts = [claims.c[name] for name in segment_by]
    label = parts[0]
    for part in parts[1:]:
        label = label.concat(literal(SEGMENT_SEPARATOR, String)).concat(part)
    return label


def segment_definition(segment_by: Sequence[str] = LINE_ONLY) -> str:
    """How a snapshot records the segment definition it was cut by (``snapshots.segment_by``)."""
    return ",".join(segment_by)


def missing_segment_attributes(
    engine: Engine, valuation_date: dt.date, segment_by: Sequence[str] = LINE_ONLY
) -> dict[str, int]:
    """Per attribute of ``segment_by``: how many claims reported by V have none (NULL); only those with some. The
    schema's NOT NULL attributes (the line) are not counted: the default definition costs no query."""
    c = schema.claims
    nullable = [a for a in segment_by if c.c[a].nullable]
    if not nullable:
        return {}
    counts = select(*[func.sum(case((c.c[a].is_(None), 1), else_=0)).label(a) for a in nullable]).where(
        c.c.report_date <= valuation_date
    )
    with engine.connect() as conn:
        found = conn.execute(counts).mappings().one()
    return {a: int(n) for a, n in found.items() if n}


def _month_index_sql(col):
    return cast(extract("year", col), Integer) * 12 + cast(extract("month", col), Integer) - 1


def _days_between_sql(dialect: str, start, end):
    if dialect == "sqlite":
        return cast(func.julianday(end) - func.julianday(start), Integer)
    return end - start  # PostgreSQL: date - date is an integer number of days


def _plus_days_sql(dialect: str, col, days: int):
    if dialect == "sqlite":
        return func.date(col, f"+{int(days)} days")
    return col + days


def extract_filters(valuation_date: dt.date, basis: str):
    """Rows of the extract as at V: claims reported and transactions dated (and recorded) by V."""
    c, t = schema.claims, schema.claim_transactions
    claim_filter = c.c.report_date <= valuation_date
    txn_filter = t.c.transaction_date <= valuation_date
    if basis == Basis.AS_RECORDED:
        txn_filter = and_(txn_filter, t.c.recorded_at < end_of_day(valuation_date))
    return claim_filter, txn_filter


def _transaction_rows(*conditions, segment_by: Sequence[str] = LINE_ONLY):
    """The transactions meeting ``conditions`` with the claim columns ingest needs (``segment``: the claim's)."""
    c, t = schema.claims, schema.claim_transactions
    return (
        select(
            t.c.claim_id,
            t.c.transaction_date,
            t.c.paid_amount,
            t.c.case_reserve_change,
            t.c.status,
            segment_label(c, segment_by).label("segment"),
            c.c.accident_date,
            c.c.report_date,
        )
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(*conditions)
    )


def _book_rows(valuation_date: dt.date, basis: str, segment_by: Sequence[str] = LINE_ONLY):
    """Every transaction of the book as at V (the full path)."""
    claim_filter, txn_filter = extract_filters(valuation_date, basis)
    return _transaction_rows(txn_filter, claim_filter, segment_by=segment_by).subquery("book_rows")


def _rows_since(previous: dt.date, valuation_date: dt.date, segment_by: Sequence[str] = LINE_ONLY):
    """The transactions as recorded at V that were not in the book as recorded at the previous month end P.

    The book as at V only grows with V (each filter is "by V"), so these are exactly the rows of V less those of P,
    in three disjoint parts: recorded since P (late-recorded rows dated in earlier periods among them); recorded by P
    but dated after it; recorded and dated by P on a claim reported since P. The first reads the index on
    ``recorded_at``, the second the one on ``transaction_date``, the third the claims reported in the month.
    """
    c, t = schema.claims, schema.claim_transactions
    since, by = end_of_day(previous), end_of_day(valuation_date)
    reported_by_v = c.c.report_date <= valuation_date
    recorded_since = _transaction_rows(
        t.c.recorded_at >= since,
        t.c.recorded_at < by,
        t.c.transaction_date <= valuation_date,
        reported_by_v,
        segment_by=segment_by,
    )
    dated_since = _transaction_rows(
        t.c.recorded_at < since,
        t.c.transaction_date > previous,
        t.c.transaction_date <= valuation_date,
        reported_by_v,
        segment_by=segment_by,
    )
    newly_reported = _transaction_rows(
        t.c.recorded_at < since,
        t.c.transaction_date <= previous,
        c.c.report_date > previous,
        reported_by_v,
        segment_by=segment_by,
    )
    return union_all(recorded_since, dated_since, newly_reported).subquery("rows_since")


ROWS_SINCE = "ingest_rows_since"  # the month's rows, staged for one incremental ingest (a temporary table)


def stage_rows_since(
    conn: Connection, valuation_date: dt.date, previous: dt.date, segment_by: Sequence[str] = LINE_ONLY
) -> Table:
    """The rows of V not in P (:func:`_rows_since`) in a temporary table of the caller's connection and transaction:
    the snapshot's UPDATE and the increments both read them, so the source is searched for the month's rows once
    (each search joins the month's transactions to every claim). Drop it with :func:`drop_rows_since`."""
    found = _rows_since(previous, valuation_date, segment_by)
    staged = Table(
        ROWS_SINCE,
        MetaData(),
        *[Column(col.name, col.type) for col in found.c],
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",  # PostgreSQL drops it with the transaction whatever happens
    )
    # SQLite keeps a temporary table with the pooled connection: one a killed earlier try left goes first
    conn.execute(DropTable(staged, if_exists=True))
    conn.execute(CreateTable(staged))
    conn.execute(insert(staged).from_select([col.name for col in found.c], select(found)))
    return staged


def drop_rows_since(conn: Connection, staged: Table) -> None:
    conn.execute(DropTable(staged, if_exists=True))


def _claim_totals(dialect: str, rows):
    """Per claim of ``rows``: paid, incurred, initial incurred (booked within the initial window of the report) and
    closures less reopenings."""
    amount = func.coalesce(rows.c.paid_amount, 0) + func.coalesce(rows.c.case_reserve_change, 0)
    initial_window = rows.c.transaction_date <= _plus_days_sql(dialect, rows.c.report_date, INITIAL_INCURRED_DAYS)
    closure = case((rows.c.status == "closed", 1), (rows.c.status == "reopened", -1), else_=0)
    return select(
        rows.c.claim_id,
        func.sum(func.coalesce(rows.c.paid_amount, 0)).label("paid"),
        func.sum(amount).label("incurred"),
        func.sum(case((initial_window, amount), else_=0)).label("initial_incurred"),
        func.sum(closure).label("net_closures"),
    ).group_by(rows.c.claim_id)


SNAPSHOT_COLUMNS = [c.name for c in schema.snapshot_claims.columns]
CARRIED = {"paid": "paid_to_date", "incurred": "incurred_to_date"}  # claim totals -> snapshot columns


def _snapshot_select(valuation_date: dt.date, basis: str, attributes, totals, carried=None):
    """Snapshot rows: ``attributes`` (claims, or the previous snapshot) plus ``totals`` (their transactions' sums,
    outer-joined: a claim without rows has zeros); ``carried`` the previous snapshot's figures the totals add to."""

    def add(name):
        more = func.coalesce(totals.c[name], 0)
        return more if carried is None else carried.c[CARRIED.get(name, name)] + more

    net_closures = add("net_closures")
    return select(
        literal(valuation_date).label("valuation_date"),
        literal(basis).label("basis"),
        attributes.c.claim_id,
        attributes.c.line_of_business,
        attributes.c.claim_type,
        attributes.c.region,
        attributes.c.accident_date,
        attributes.c.report_date,
        attributes.c.claimant_age,
        attributes.c.report_delay_days,
        func.round(add("paid"), 2).label("paid_to_date"),
        func.round(add("incurred"), 2).label("incurred_to_date"),
        func.round(add("initial_incurred"), 2).label("initial_incurred"),
        (net_closures > 0).label("is_closed"),
        net_closures.label("net_closures"),
    ).select_from(attributes.outerjoin(totals, totals.c.claim_id == attributes.c.claim_id))


def _claim_attributes(dialect: str, *conditions):
    c = schema.claims
    return (
        select(
            c.c.claim_id,
            c.c.line_of_business,
            c.c.claim_type,
            c.c.region,
            c.c.accident_date,
            c.c.report_date,
            c.c.claimant_age,
            _days_between_sql(dialect, c.c.accident_date, c.c.report_date).label("report_delay_days"),
        )
        .where(*conditions)
        .subquery("claim_attributes")
    )


def _replace_snapshot(conn: Connection, valuation_date: dt.date, basis: str, query) -> None:
    s = schema.snapshot_claims
    conn.execute(delete(s).where(s.c.valuation_date == valuation_date, s.c.basis == basis))
    conn.execute(insert(s).from_select(SNAPSHOT_COLUMNS, query))


def write_claim_snapshot(conn: Connection, valuation_date: dt.date, basis: str) -> None:
    """Replace V's claim snapshot by INSERT ... SELECT inside the caller's transaction.

    The rows never leave the database, so the transaction itself is the staging: a kill rolls it back whole, and
    the partition is written once instead of staged and copied again.
    """
    dialect = conn.dialect.name
    claim_filter, _ = extract_filters(valuation_date, basis)
    totals = _claim_totals(dialect, _book_rows(valuation_date, basis)).subquery("claim_totals")
    attributes = _claim_attributes(dialect, claim_filter)
    _replace_snapshot(conn, valuation_date, basis, _snapshot_select(valuation_date, basis, attributes, totals))


def write_claim_snapshot_since(conn: Connection, valuation_date: dt.date, previous: dt.date, rows) -> None:
    """Replace V's as-recorded claim snapshot by the previous month end's plus the rows recorded since (inside the
    caller's transaction), in three set-based statements:

    1. P's rows copied as V's, and the claims reported since with zero figures: a plain copy, no join, so the rows
       stream into V's partition in P's order (joining a month's totals to a million carried rows made PostgreSQL
       spill both sides to disk and write V's rows, and their index entries, in hash order: 2-3x the copy);
    2. one UPDATE of only the claims the month's rows touched (a few percent of the book): their figures moved on
       by the month's totals, as the full path would sum them (amounts rounded to the cent as stored).

    ``rows``: the rows of V not in P (:func:`stage_rows_since`).
    """
    dialect = conn.dialect.name
    basis = str(Basis.AS_RECORDED)
    s, c = schema.snapshot_claims, schema.claims
    conn.execute(delete(s).where(s.c.valuation_date == valuation_date, s.c.basis == basis))
    carried = select(literal(valuation_date), literal(basis), *[s.c[n] for n in SNAPSHOT_COLUMNS[2:]]).where(
        s.c.valuation_date == previous, s.c.basis == basis
    )
    reported = _claim_attributes(dialect, c.c.report_date > previous, c.c.report_date <= valuation_date)
    # what the full path writes for a claim without rows (round(0, 2): numeric 0.00, on SQLite the real 0.0)
    zero = {m: func.round(literal(0), 2) for m in ("paid_to_date", "incurred_to_date", "initial_incurred")}
    zero |= {"is_closed": literal(False), "net_closures": literal(0)}
    new = select(
        literal(valuation_date),
        literal(basis),
        *[zero[n].label(n) if n in zero else reported.c[n] for n in SNAPSHOT_COLUMNS[2:]],
    )
    conn.execute(insert(s).from_select(SNAPSHOT_COLUMNS, union_all(carried, new)))
    totals = _claim_totals(dialect, rows).subquery("claim_totals")
    net_closures = s.c.net_closures + totals.c.net_closures
    moved_on = (
        update(s)
        .where(s.c.valuation_date == valuation_date, s.c.basis == basis, s.c.claim_id == totals.c.claim_id)
        .values(
            paid_to_date=func.round(s.c.paid_to_date + totals.c.paid, 2),
            incurred_to_date=func.round(s.c.incurred_to_date + totals.c.incurred, 2),
            initial_incurred=func.round(s.c.initial_incurred + totals.c.initial_incurred, 2),
            is_closed=net_closures > 0,
            net_closures=net_closures,
        )
    )
    conn.execute(moved_on)


def _increments(engine: Engine, rows, reported, segment_by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (segment, accident month, calendar month): the sums of ``rows`` (transactions) and the claims of
    ``reported``, as month indices (``accident_m``, ``month_m``)."""
    acc_m = _month_index_sql(rows.c.accident_date)
    txn_m = _month_index_sql(rows.c.transaction_date)
    closure = case((rows.c.status == "closed", 1), (rows.c.status == "reopened", -1), else_=0)
    txn_agg = select(
        rows.c.segment,
        acc_m.label("accident_m"),
        txn_m.label("month_m"),
        func.sum(func.coalesce(rows.c.paid_amount, 0)).label("paid"),
        func.sum(func.coalesce(rows.c.paid_amount, 0) + func.coalesce(rows.c.case_reserve_change, 0)).label("incurred"),
        func.sum(closure).label("closed_count"),
        func.count().label("transaction_count"),
    ).group_by(rows.c.segment, acc_m, txn_m)
    c = schema.claims
    rep_acc_m, rep_m = _month_index_sql(c.c.accident_date), _month_index_sql(c.c.report_date)
    label = segment_label(c, segment_by)
    rep_agg = (
        select(
            label.label("segment"),
            rep_acc_m.label("accident_m"),
            rep_m.label("month_m"),
            func.count().label("reported_count"),
        )
        .where(reported)
        .group_by(label, rep_acc_m, rep_m)
    )
    with engine.connect() as conn:
        txn, rep = (read_frame(conn, query) for query in (txn_agg, rep_agg))
    return txn, rep


def book_increments(
    engine: Engine, valuation_date: dt.date, basis: str, segment_by: Sequence[str] = LINE_ONLY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The book as at V per (segment, accident month, calendar month): transactions' sums, claims reported."""
    claim_filter, _ = extract_filters(valuation_date, basis)
    return _increments(engine, _book_rows(valuation_date, basis, segment_by), claim_filter, segment_by)


INCREMENT_VALUES = ["paid", "incurred", "closed_count", "transaction_count", "reported_count"]


def _month_start_sql(dialect: str, col):
    if dialect == "sqlite":
        return func.date(col, "start of month")  # the text form SQLite keeps dates in
    return cast(func.date_trunc("month", col), Date)


def write_increments_since(
    conn: Connection, valuation_date: dt.date, previous: dt.date, rows, segment_by: Sequence[str] = LINE_ONLY
) -> None:
    """Replace V's as-recorded increments by the previous month end P's plus what the book gained since (the rows of
    V not in P: ``rows``, staged by :func:`stage_rows_since`; the claims reported since P), summed in the database
    inside the caller's transaction. P's increments must be cut by the same ``segment_by``
    (ingest.incremental_premise)."""
    dialect = conn.dialect.name
    basis = Basis.AS_RECORDED
    ci, c = schema.cell_increments, schema.claims
    closure = case((rows.c.status == "closed", 1), (rows.c.status == "reopened", -1), else_=0)
    carried = select(ci.c.segment, ci.c.accident_month, ci.c.month, *[ci.c[n] for n in INCREMENT_VALUES]).where(
        ci.c.valuation_date == previous, ci.c.basis == basis
    )
    moved = select(
        rows.c.segment,
        _month_start_sql(dialect, rows.c.accident_date),
        _month_start_sql(dialect, rows.c.transaction_date),
        func.coalesce(rows.c.paid_amount, 0),
        func.coalesce(rows.c.paid_amount, 0) + func.coalesce(rows.c.case_reserve_change, 0),
        closure,
        literal(1),
        literal(0),
    )
    reported = select(
        segment_label(c, segment_by),
        _month_start_sql(dialect, c.c.accident_date),
        _month_start_sql(dialect, c.c.report_date),
        literal(0),
        literal(0),
        literal(0),
        literal(0),
        literal(1),
    ).where(c.c.report_date > previous, c.c.report_date <= valuation_date)
    parts = union_all(carried, moved, reported).subquery("parts")
    keys = [parts.c.segment, parts.c.accident_month, parts.c.month]
    query = select(
        literal(valuation_date),
        literal(str(basis)),
        *keys,
        func.round(func.sum(parts.c.paid), 2),
        func.round(func.sum(parts.c.incurred), 2),
        *[func.sum(parts.c[n]) for n in INCREMENT_VALUES[2:]],
    ).group_by(*keys)
    cols = ["valuation_date", "basis", "segment", "accident_month", "month", *INCREMENT_VALUES]
    conn.execute(delete(ci).where(ci.c.valuation_date == valuation_date, ci.c.basis == basis))
    conn.execute(insert(ci).from_select(cols, query))


def exposure_aggregates(
    bind: Engine | Connection, valuation_date: dt.date, origin_months: int, segment_by: Sequence[str] = LINE_ONLY
) -> pd.DataFrame:
    """Earned premium and exposure per (segment, origin month) for the months by V. ``earned_exposure`` is per line
    of business: segments below line level (``segment_by`` beyond the line) get none (the methods that need premium
    fall back to the chain ladder and say so, methods.py)."""
    e = schema.earned_exposure
    if tuple(segment_by) != LINE_ONLY:
        return pd.DataFrame(columns=["segment", "origin_m", "earned_premium", "exposure"]).astype(
            {"segment": object, "origin_m": "int64", "earned_premium": "float64", "exposure": "float64"}
        )
    exp_m = _month_index_sql(e.c.month)
    exp_origin_m = exp_m - (exp_m % origin_months)
    query = (
        select(
            e.c.line_of_business.label("segment"),
            exp_origin_m.label("origin_m"),
            func.sum(e.c.earned_premium).label("earned_premium"),
            func.sum(e.c.exposure_units).label("exposure"),
        )
        .where(e.c.month <= valuation_date)
        .group_by(e.c.line_of_business, exp_origin_m)
    )
    return read_frame(bind, query)


def load_increments(bind: Engine | Connection, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """The stored increments of (V, basis) with month indices (``accident_m``, ``month_m``)."""
    ci = schema.cell_increments
    query = select(ci.c.segment, ci.c.accident_month, ci.c.month, *[ci.c[n] for n in INCREMENT_VALUES]).where(
        ci.c.valuation_date == valuation_date, ci.c.basis == basis
    )
    frame = read_frame(bind, query)
    frame["accident_m"] = [month_index(d) for d in frame.pop("accident_month")]
    frame["month_m"] = [month_index(d) for d in frame.pop("month")]
    return frame


def write_increments(conn: Connection, key: Mapping[str, Any], increments: pd.DataFrame) -> None:
    """Replace the increments of ``key`` (inside the caller's transaction)."""
    ci = schema.cell_increments
    rows = increments.assign(
        accident_month=[month_start(int(m)) for m in increments["accident_m"]],
        month=[month_start(int(m)) for m in increments["month_m"]],
    ).drop(columns=["accident_m", "month_m"])
    conn.execute(delete(ci).where(key_clause(ci, key)))
    insert_rows(conn, ci, rows.assign(**key))


@dataclass(frozen=True)
class PreviousIngest:
    """What the warehouse holds for the month end P before V, and what the source says now: the premises of the
    incremental ingest (ingest.incremental_premise judges them)."""

    valuation_date: dt.date
    snapshot: Mapping[str, Any] | None  # snapshots row (claim_count, transaction_count, segment_by); None: none
    increment_totals: Mapping[str, Any]  # sums of P's stored increments (transaction_count, reported_count)
    gate: Mapping[str, Any] | None  # P's row-count check (gate_success, element_count); None: P not gated
    recorded_by: Callable[[], int]  # rows of claim_transactions recorded by P now (asked only when needed)
    reported_by: Callable[[], int]  # claims reported by P now


def previous_ingest(engine: Engine, previous: dt.date, basis: str, row_count_check: str) -> PreviousIngest:
    """The stored facts about the ingest and gate of the month end P (``row_count_check``: the gate's key of its
    extract row count, whose element count is the rows recorded by P it saw)."""
    from include.reserving.warehouse.quality import check_row, transactions_recorded_by

    s, ci, c = schema.snapshots, schema.cell_increments, schema.claims
    with engine.connect() as conn:
        snapshot = (
            conn.execute(
                select(s.c.claim_count, s.c.transaction_count, s.c.segment_by).where(
                    s.c.valuation_date == previous, s.c.basis == basis
                )
            )
            .mappings()
            .first()
        )
        totals = (
            conn.execute(
                select(
                    func.count().label("rows"),
                    func.coalesce(func.sum(ci.c.transaction_count), 0).label("transaction_count"),
                    func.coalesce(func.sum(ci.c.reported_count), 0).label("reported_count"),
                ).where(ci.c.valuation_date == previous, ci.c.basis == basis)
            )
            .mappings()
            .one()
        )
    gate = check_row(engine, previous, basis, row_count_check)

    def reported_by() -> int:
        query = select(func.count()).select_from(c).where(c.c.report_date <= previous)
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    return PreviousIngest(
        previous,
        None if snapshot is None else dict(snapshot),
        dict(totals),
        gate,
        lambda: transactions_recorded_by(engine, previous),
        reported_by,
    )


def clear_staged_cells(engine: Engine, prefix: str) -> None:
    """Staged cells an earlier try of this task, killed between staging and swap, left behind."""
    clear_staged(engine, schema.triangle_cells_staging, prefix)


def stage_cells(bind: Engine | Connection, cells: pd.DataFrame, key: Mapping[str, Any], load_id: str) -> None:
    """Load the cells of ``key`` into the staging table under ``load_id`` (its own transaction given an engine)."""
    insert_rows(bind, schema.triangle_cells_staging, cells.assign(load_id=load_id, **key))


def swap_cells(conn: Connection, key: Mapping[str, Any], load_id: str, expected: int) -> None:
    """Replace the cells of ``key`` by the ``expected`` staged ones, inside the caller's transaction."""
    swap_staged(conn, schema.triangle_cells, schema.triangle_cells_staging, key, load_id, expected)


def snapshot_claim_count(conn: Connection, key: Mapping[str, Any]) -> int:
    sc = schema.snapshot_claims
    return conn.execute(select(func.count()).select_from(sc).where(key_clause(sc, key))).scalar_one()


def record_snapshot(conn: Connection, key: Mapping[str, Any], **facts: Any) -> None:
    """Replace the snapshot's metadata row (grains, counts, paid total, cells hash, run id)."""
    replace_rows(conn, schema.snapshots, key, [facts])


def segment_definition_at(engine: Engine, valuation_date: dt.date, basis: str) -> str | None:
    """The segment definition the snapshot of (V, basis) was cut by (a snapshot before the setting: by line of
    business); None: no snapshot."""
    s = schema.snapshots
    query = select(s.c.segment_by).where(s.c.valuation_date == valuation_date, s.c.basis == basis)
    with engine.connect() as conn:
        found = conn.execute(query).first()
    return None if found is None else (found[0] or segment_definition(LINE_ONLY))


def origin_months(engine: Engine, valuation_date: dt.date, basis: str) -> int | None:
    """The origin grain in months the snapshot of (V, basis) was cut at (recorded as ``3m``); None: no snapshot."""
    s = schema.snapshots
    query = select(s.c.origin_grain).where(s.c.valuation_date == valuation_date, s.c.basis == basis)
    with engine.connect() as conn:
        grain = conn.execute(query).scalar_one_or_none()
    return None if grain is None else int(str(grain).removesuffix("m"))


def load_cells(engine: Engine, valuation_date: dt.date | str, basis: str = Basis.AS_RECORDED) -> pd.DataFrame:
    """Read the cells partition for (V, basis) back as the models' input frame."""
    valuation_date = parse_valuation_date(valuation_date)
    tc = schema.triangle_cells
    query = (
        select(*[tc.c[n] for n in CELL_COLUMNS])
        .where(tc.c.valuation_date == valuation_date, tc.c.basis == basis)
        .order_by(tc.c.segment, tc.c.origin, tc.c.development)
    )
    frame = read_frame(engine, query)
    if frame.empty:
        raise LookupError(f"no triangle cells for valuation {valuation_date} ({basis}): run ingest first")
    return frame


def claim_features(
    engine: Engine, valuation_date: dt.date, basis: str, columns: Sequence[str], windows: Sequence[Window]
) -> pd.DataFrame:
    """``report_date`` and ``columns`` of the snapshot's claims for (V, basis) reported within any of ``windows``."""
    t = schema.snapshot_claims
    query = select(t.c.report_date, *[t.c[c] for c in columns]).where(
        t.c.valuation_date == valuation_date,
        t.c.basis == basis,
        or_(*[t.c.report_date.between(w.start, w.end) for w in windows]),
    )
    return read_frame(engine, query)

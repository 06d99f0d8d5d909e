"""Triangle cells, the claim snapshot and its metadata, keyed by (V, basis); the point-in-time reads of the book.

Basis ``as_recorded`` keeps transactions dated and recorded by V, so a re-run next year reproduces the numbers;
``restated`` keeps everything dated by V whatever its recording time (latest knowledge).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Integer, and_, case, cast, delete, extract, func, insert, literal, or_, select
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.cells import CELL_COLUMNS
from include.reserving.dates import end_of_day, month_index, parse_valuation_date
from include.reserving.domain import INITIAL_INCURRED_DAYS, Basis
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


def write_claim_snapshot(conn: Connection, valuation_date: dt.date, basis: str) -> None:
    """Replace V's claim snapshot by INSERT ... SELECT inside the caller's transaction.

    The rows never leave the database, so the transaction itself is the staging: a kill rolls it back whole, and
    the partition is written once instead of staged and copied again.
    """
    c, t, s = schema.claims, schema.claim_transactions, schema.snapshot_claims
    dialect = conn.dialect.name
    claim_filter, txn_filter = extract_filters(valuation_date, basis)
    amount = func.coalesce(t.c.paid_amount, 0) + func.coalesce(t.c.case_reserve_change, 0)
    initial_window = t.c.transaction_date <= _plus_days_sql(dialect, c.c.report_date, INITIAL_INCURRED_DAYS)
    closure = case((t.c.status == "closed", 1), (t.c.status == "reopened", -1), else_=0)
    txn_totals = (
        select(
            t.c.claim_id,
            func.sum(func.coalesce(t.c.paid_amount, 0)).label("paid_to_date"),
            func.sum(amount).label("incurred_to_date"),
            func.sum(case((initial_window, amount), else_=0)).label("initial_incurred"),
            func.sum(closure).label("net_closures"),
        )
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(txn_filter, claim_filter)
        .group_by(t.c.claim_id)
        .subquery("txn_totals")
    )
    query = (
        select(
            literal(valuation_date).label("valuation_date"),
            literal(basis).label("basis"),
            c.c.claim_id,
            c.c.line_of_business,
            c.c.claim_type,
            c.c.region,
            c.c.accident_date,
            c.c.report_date,
            c.c.claimant_age,
            _days_between_sql(dialect, c.c.accident_date, c.c.report_date).label("report_delay_days"),
            func.round(func.coalesce(txn_totals.c.paid_to_date, 0), 2).label("paid_to_date"),
            func.round(func.coalesce(txn_totals.c.incurred_to_date, 0), 2).label("incurred_to_date"),
            func.round(func.coalesce(txn_totals.c.initial_incurred, 0), 2).label("initial_incurred"),
            (func.coalesce(txn_totals.c.net_closures, 0) > 0).label("is_closed"),
        )
        .select_from(c.outerjoin(txn_totals, txn_totals.c.claim_id == c.c.claim_id))
        .where(claim_filter)
    )
    cols = [
        "valuation_date",
        "basis",
        "claim_id",
        "line_of_business",
        "claim_type",
        "region",
        "accident_date",
        "report_date",
        "claimant_age",
        "report_delay_days",
        "paid_to_date",
        "incurred_to_date",
        "initial_incurred",
        "is_closed",
    ]
    conn.execute(delete(s).where(s.c.valuation_date == valuation_date, s.c.basis == basis))
    conn.execute(insert(s).from_select(cols, query))


def cell_aggregates(
    engine: Engine, valuation_date: dt.date, basis: str, origin_months: int, development_months: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The book as at V aggregated per (segment, origin month, evaluation period): transactions (paid, incurred,
    closures, count), reported claims, and earned premium and exposure per (segment, origin month)."""
    c, t, e = schema.claims, schema.claim_transactions, schema.earned_exposure
    claim_filter, txn_filter = extract_filters(valuation_date, basis)
    mv = month_index(valuation_date)
    acc_m = _month_index_sql(c.c.accident_date)
    origin_m = acc_m - (acc_m % origin_months)

    def bucket(col):  # evaluation period j: (V - (j+1) grains, V - j grains], counted back from V
        return (mv - _month_index_sql(col)) // development_months

    closure = case((t.c.status == "closed", 1), (t.c.status == "reopened", -1), else_=0)
    txn_agg = (
        select(
            c.c.line_of_business.label("segment"),
            origin_m.label("origin_m"),
            bucket(t.c.transaction_date).label("bucket"),
            func.sum(func.coalesce(t.c.paid_amount, 0)).label("paid"),
            func.sum(func.coalesce(t.c.paid_amount, 0) + func.coalesce(t.c.case_reserve_change, 0)).label("incurred"),
            func.sum(closure).label("closed_count"),
            func.count().label("n_txn"),
        )
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(txn_filter, claim_filter)
        .group_by(c.c.line_of_business, origin_m, bucket(t.c.transaction_date))
    )
    rep_agg = (
        select(
            c.c.line_of_business.label("segment"),
            origin_m.label("origin_m"),
            bucket(c.c.report_date).label("bucket"),
            func.count().label("reported_count"),
        )
        .where(claim_filter)
        .group_by(c.c.line_of_business, origin_m, bucket(c.c.report_date))
    )
    exp_m = _month_index_sql(e.c.month)
    exp_origin_m = exp_m - (exp_m % origin_months)
    exp_agg = (
        select(
            e.c.line_of_business.label("segment"),
            exp_origin_m.label("origin_m"),
            func.sum(e.c.earned_premium).label("earned_premium"),
            func.sum(e.c.exposure_units).label("exposure"),
        )
        .where(e.c.month <= valuation_date)
        .group_by(e.c.line_of_business, exp_origin_m)
    )
    with engine.connect() as conn:
        return tuple(read_frame(conn, query) for query in (txn_agg, rep_agg, exp_agg))


def clear_staged_cells(engine: Engine, prefix: str) -> None:
    """Staged cells an earlier try of this task, killed between staging and swap, left behind."""
    clear_staged(engine, schema.triangle_cells_staging, prefix)


def stage_cells(engine: Engine, cells: pd.DataFrame, key: Mapping[str, Any], load_id: str) -> None:
    """Load the cells of ``key`` into the staging table under ``load_id`` (its own transaction)."""
    insert_rows(engine, schema.triangle_cells_staging, cells.assign(load_id=load_id, **key))


def swap_cells(conn: Connection, key: Mapping[str, Any], load_id: str, expected: int) -> None:
    """Replace the cells of ``key`` by the ``expected`` staged ones, inside the caller's transaction."""
    swap_staged(conn, schema.triangle_cells, schema.triangle_cells_staging, key, load_id, expected)


def snapshot_claim_count(conn: Connection, key: Mapping[str, Any]) -> int:
    sc = schema.snapshot_claims
    return conn.execute(select(func.count()).select_from(sc).where(key_clause(sc, key))).scalar_one()


def record_snapshot(conn: Connection, key: Mapping[str, Any], **facts: Any) -> None:
    """Replace the snapshot's metadata row (grains, counts, paid total, cells hash, run id)."""
    replace_rows(conn, schema.snapshots, key, [facts])


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

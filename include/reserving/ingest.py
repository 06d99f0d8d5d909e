"""Point-in-time ingest: the claims book as it stood at valuation date V, aggregated in SQL.

Two partitions are written for (V, basis) in one transaction, so readers see both old or both new:

* ``snapshot_claims``: one row per claim reported by V with the claim-level features the quality gate and drift
  need, by ``INSERT ... SELECT`` inside that transaction (no transaction row reaches Python, and the 1M-row
  partition is written once);
* ``triangle_cells``: the long-format cells frame (see schema.py), from an aggregate query whose result has one row
  per (segment, origin, evaluation period); cumulation and the dense grid are done on that small result, which is
  bulk-loaded into a staging table first and swapped in by the same transaction. On PostgreSQL the cells aggregate
  runs on a second connection while the snapshot is written, so the two passes share the wall time.

Basis ``as_recorded`` (default) keeps transactions dated and recorded by V, so a re-run next year reproduces the
numbers; ``restated`` keeps everything dated by V whatever its recording time (latest knowledge).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Integer, and_, case, cast, delete, extract, func, insert, literal, select
from sqlalchemy.engine import Connection, Engine

from include.reserving import cells as cells_module
from include.reserving import schema
from include.reserving.dates import end_of_day, month_index, month_start, parse_valuation_date
from include.reserving.domain import Basis
from include.reserving.warehouse.core import insert_rows

log = logging.getLogger(__name__)

INITIAL_INCURRED_DAYS = 30
CELL_COLUMNS = [
    "segment",
    "origin",
    "development",
    "paid",
    "incurred",
    "reported_count",
    "closed_count",
    "earned_premium",
    "exposure",
]


@dataclass(frozen=True)
class IngestResult:
    valuation_date: dt.date
    basis: str
    claim_count: int
    transaction_count: int
    cell_count: int
    paid_total: float
    cells_hash: str

    def as_xcom(self) -> dict:
        """What downstream tasks need to find the partition (by reference, never the data)."""
        return {
            "valuation_date": self.valuation_date.isoformat(),
            "basis": self.basis,
            "claim_count": self.claim_count,
            "transaction_count": self.transaction_count,
            "cell_count": self.cell_count,
            "paid_total": self.paid_total,
            "cells_hash": self.cells_hash,
        }


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


def _extract_filters(valuation_date: dt.date, basis: str):
    """Rows of the extract as at V: claims reported and transactions dated (and recorded) by V."""
    c, t = schema.claims, schema.claim_transactions
    claim_filter = c.c.report_date <= valuation_date
    txn_filter = t.c.transaction_date <= valuation_date
    if basis == "as_recorded":
        txn_filter = and_(txn_filter, t.c.recorded_at < end_of_day(valuation_date))
    return claim_filter, txn_filter


def _swap(conn: Connection, target, staging, key: dict, load_id: str) -> None:
    """Replace target's partition ``key`` by the staged rows of ``load_id`` (caller holds the transaction)."""
    cols = [col.name for col in target.columns]
    conn.execute(delete(target).where(and_(*[target.c[k] == v for k, v in key.items()])))
    conn.execute(
        insert(target).from_select(cols, select(*[staging.c[n] for n in cols]).where(staging.c.load_id == load_id))
    )
    conn.execute(delete(staging).where(staging.c.load_id == load_id))


def _clear_stale_staging(engine: Engine, staging, key: dict) -> None:
    """A task killed between staging and swap leaves rows behind; the retry removes them first."""
    with engine.begin() as conn:
        conn.execute(delete(staging).where(and_(*[staging.c[k] == v for k, v in key.items()])))


def replace_snapshot_claims(conn: Connection, valuation_date: dt.date, basis: str) -> None:
    """Replace V's claim snapshot by INSERT ... SELECT inside the caller's transaction.

    The rows never leave the database, so the transaction itself is the staging: a kill rolls it back whole, and
    the partition is written once instead of staged and copied again.
    """
    c, t, s = schema.claims, schema.claim_transactions, schema.snapshot_claims
    dialect = conn.dialect.name
    claim_filter, txn_filter = _extract_filters(valuation_date, basis)
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


def aggregate_cells(
    engine: Engine, valuation_date: dt.date, basis: str, origin_months: int, development_months: int
) -> tuple[pd.DataFrame, int]:
    """The cells frame as at V, aggregated in SQL; returns (cells, number of transactions read)."""
    c, t, e = schema.claims, schema.claim_transactions, schema.earned_exposure
    claim_filter, txn_filter = _extract_filters(valuation_date, basis)
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
        txn = pd.DataFrame(conn.execute(txn_agg).mappings().all(), columns=list(txn_agg.selected_columns.keys()))
        rep = pd.DataFrame(conn.execute(rep_agg).mappings().all(), columns=list(rep_agg.selected_columns.keys()))
        exp = pd.DataFrame(conn.execute(exp_agg).mappings().all(), columns=list(exp_agg.selected_columns.keys()))
    n_txn = int(txn["n_txn"].sum()) if len(txn) else 0
    return _cumulate(txn, rep, exp, mv, development_months), n_txn


def _cumulate(txn: pd.DataFrame, rep: pd.DataFrame, exp: pd.DataFrame, mv: int, dev_m: int) -> pd.DataFrame:
    """Dense grid of evaluation periods per (segment, origin), cumulative sums, ages in months."""
    keys = ["segment", "origin_m", "bucket"]
    for frame in (txn, rep):
        for col in ("origin_m", "bucket"):
            frame[col] = frame[col].astype("int64")
    merged = txn.drop(columns="n_txn").merge(rep, on=keys, how="outer")
    if merged.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    grid = []
    for (segment, origin_m), _ in merged.groupby(["segment", "origin_m"]):
        # evaluation periods from the one holding the origin start up to V (bucket 0)
        first_bucket = (mv - int(origin_m)) // dev_m
        grid.extend((segment, origin_m, b) for b in range(first_bucket, -1, -1))
    dense = pd.DataFrame(grid, columns=keys).merge(merged, on=keys, how="left")
    outside = len(merged) - int(merged.merge(dense[keys], on=keys).shape[0])
    if outside:  # dated before the accident: the quality gate names these rows; say here they are not in cells
        log.warning("%d aggregated cells fall before their origin start and are left out of the triangle", outside)
    value_cols = ["paid", "incurred", "closed_count", "reported_count"]
    dense[value_cols] = dense[value_cols].astype("float64").fillna(0.0)
    dense = dense.sort_values(["segment", "origin_m", "bucket"], ascending=[True, True, False])
    dense[value_cols] = dense.groupby(["segment", "origin_m"])[value_cols].cumsum()
    dense["development"] = (mv - dense["bucket"] * dev_m) - dense["origin_m"] + 1
    dense = dense.merge(exp, on=["segment", "origin_m"], how="left")
    dense["origin"] = [month_start(int(m)) for m in dense["origin_m"]]
    dense["paid"] = dense["paid"].round(2)
    dense["incurred"] = dense["incurred"].round(2)
    dense["reported_count"] = dense["reported_count"].astype("int64")
    dense["closed_count"] = dense["closed_count"].astype("int64")
    dense["earned_premium"] = dense["earned_premium"].astype("float64").round(2)
    dense["exposure"] = dense["exposure"].astype("float64")
    out = dense[CELL_COLUMNS].sort_values(["segment", "origin", "development"]).reset_index(drop=True)
    return out


def cells_hash(cells: pd.DataFrame) -> str:
    """Content hash of a cells frame, stable across runs and databases (the training-data fingerprint)."""
    canon = cells[CELL_COLUMNS].sort_values(["segment", "origin", "development"]).copy()
    canon["origin"] = canon["origin"].astype(str)
    for col in ("paid", "incurred", "earned_premium"):
        canon[col] = canon[col].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    canon["exposure"] = canon["exposure"].map(lambda v: "" if pd.isna(v) else f"{v:.6f}")
    return hashlib.sha256(canon.to_csv(index=False).encode()).hexdigest()


def ingest(
    engine: Engine,
    valuation_date: dt.date | str,
    basis: str = "as_recorded",
    origin_months: int = 3,
    development_months: int = 3,
    run_id: str | None = None,
    source_engine: Engine | None = None,
    before_swap: Callable[[], None] | None = None,
) -> IngestResult:
    """Snapshot the book as at V into ``snapshot_claims`` and ``triangle_cells`` for (V, basis), idempotently.

    ``source_engine`` is the claims system (defaults to the warehouse). ``before_swap`` runs after the cells are
    staged and the snapshot written, before the swap commits: tests use it to kill the task at the worst moment.
    """
    valuation_date = parse_valuation_date(valuation_date)
    if basis not in tuple(Basis):
        raise ValueError(f"basis {basis!r} is invalid: use one of {[b.value for b in Basis]}")
    if source_engine is not None and source_engine.url != engine.url:
        raise NotImplementedError("a claims source outside the warehouse needs the extract copied in first")
    key = {"valuation_date": valuation_date, "basis": basis}
    load_id = uuid.uuid4().hex
    _clear_stale_staging(engine, schema.triangle_cells_staging, key)

    def stage_cells() -> tuple[pd.DataFrame, int]:
        log.info("ingest V=%s: aggregating transactions to triangle cells in the database", valuation_date)
        cells, n_txn = aggregate_cells(engine, valuation_date, basis, origin_months, development_months)
        staged = cells.assign(load_id=load_id, valuation_date=valuation_date, basis=basis)
        insert_rows(engine, schema.triangle_cells_staging, staged)
        return cells, n_txn

    # Both passes over the transactions at once where the database has more than one writer: the cells aggregate
    # runs on its own connection while this transaction writes the snapshot (PostgreSQL runs the INSERT ... SELECT
    # on one core).
    sc = schema.snapshot_claims
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-cells") as pool:
        staged = pool.submit(stage_cells)
        if engine.dialect.name == "sqlite":
            staged.result()  # a single writer: the cells are staged before the snapshot's transaction opens
        with engine.begin() as conn:
            log.info("ingest V=%s basis=%s: writing the claim snapshot", valuation_date, basis)
            replace_snapshot_claims(conn, valuation_date, basis)
            cells, n_txn = staged.result()
            latest = cells_module.latest_diagonal(cells) if len(cells) else cells
            paid_total = round(float(latest["paid"].sum()), 2) if len(latest) else 0.0
            digest = cells_hash(cells)
            if before_swap is not None:
                before_swap()
            log.info("ingest V=%s basis=%s: swapping in the cells", valuation_date, basis)
            _swap(conn, schema.triangle_cells, schema.triangle_cells_staging, key, load_id)
            n_claims = conn.execute(
                select(func.count()).select_from(sc).where(sc.c.valuation_date == valuation_date, sc.c.basis == basis)
            ).scalar_one()
            conn.execute(delete(schema.snapshots).where(*[schema.snapshots.c[k] == v for k, v in key.items()]))
            conn.execute(
                insert(schema.snapshots).values(
                    **key,
                    origin_grain=f"{origin_months}m",
                    development_grain=f"{development_months}m",
                    claim_count=n_claims,
                    transaction_count=n_txn,
                    paid_total=paid_total,
                    cells_hash=digest,
                    run_id=run_id,
                )
            )
    result = IngestResult(valuation_date, basis, n_claims, n_txn, len(cells), paid_total, digest)
    log.info(
        "ingest V=%s basis=%s: %d claims, %d transactions, %d cells, paid to date %.2f",
        valuation_date,
        basis,
        n_claims,
        n_txn,
        len(cells),
        paid_total,
    )
    return result


def load_cells(engine: Engine, valuation_date: dt.date | str, basis: str = "as_recorded") -> pd.DataFrame:
    """Read the cells partition for (V, basis) back as the models' input frame."""
    valuation_date = parse_valuation_date(valuation_date)
    tc = schema.triangle_cells
    query = (
        select(*[tc.c[n] for n in CELL_COLUMNS])
        .where(tc.c.valuation_date == valuation_date, tc.c.basis == basis)
        .order_by(tc.c.segment, tc.c.origin, tc.c.development)
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).mappings().all(), columns=CELL_COLUMNS)
    if frame.empty:
        raise LookupError(f"no triangle cells for valuation {valuation_date} ({basis}): run ingest first")
    return frame

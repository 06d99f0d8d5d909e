"""Point-in-time ingest: the claims book as it stood at valuation date V, aggregated in SQL (warehouse/cells.py),
cumulated here.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from include.reserving import cells as cells_module
from include.reserving.cells import CELL_COLUMNS
from include.reserving.dates import month_index, month_start, parse_valuation_date
from include.reserving.domain import Basis
from include.reserving.warehouse import cells as store
from include.reserving.warehouse.core import staging_load_id

log = logging.getLogger(__name__)


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


def cumulate_cells(txn: pd.DataFrame, rep: pd.DataFrame, exp: pd.DataFrame, mv: int, dev_m: int) -> pd.DataFrame:
    """The cells frame from the aggregates of :func:`warehouse.cells.cell_aggregates` (V's month index ``mv``, the
    development grain ``dev_m``): a dense grid of evaluation periods per (segment, origin), cumulative sums, ages."""
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
    basis: str = Basis.AS_RECORDED,
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
    key = {"valuation_date": valuation_date, "basis": str(basis)}
    prefix, load_id = staging_load_id(f"cells|{valuation_date}|{basis}|{run_id}")
    store.clear_staged_cells(engine, prefix)

    def stage_cells() -> tuple[pd.DataFrame, int]:
        log.info("ingest V=%s: aggregating transactions to triangle cells in the database", valuation_date)
        txn, rep, exp = store.cell_aggregates(engine, valuation_date, basis, origin_months, development_months)
        cells = cumulate_cells(txn, rep, exp, month_index(valuation_date), development_months)
        store.stage_cells(engine, cells, key, load_id)
        return cells, int(txn["n_txn"].sum()) if len(txn) else 0

    # Both passes over the transactions at once where the database has more than one writer: the cells aggregate
    # runs on its own connection while this transaction writes the snapshot (PostgreSQL runs the INSERT ... SELECT
    # on one core).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-cells") as pool:
        staged = pool.submit(stage_cells)
        if engine.dialect.name == "sqlite":
            staged.result()  # a single writer: the cells are staged before the snapshot's transaction opens
        with engine.begin() as conn:
            log.info("ingest V=%s basis=%s: writing the claim snapshot", valuation_date, basis)
            store.write_claim_snapshot(conn, valuation_date, basis)
            cells, n_txn = staged.result()
            latest = cells_module.latest_diagonal(cells) if len(cells) else cells
            paid_total = round(float(latest["paid"].sum()), 2) if len(latest) else 0.0
            digest = cells_hash(cells)
            if before_swap is not None:
                before_swap()
            log.info("ingest V=%s basis=%s: swapping in the cells", valuation_date, basis)
            store.swap_cells(conn, key, load_id, len(cells))
            n_claims = store.snapshot_claim_count(conn, key)
            store.record_snapshot(
                conn,
                key,
                origin_grain=f"{origin_months}m",
                development_grain=f"{development_months}m",
                claim_count=n_claims,
                transaction_count=n_txn,
                paid_total=paid_total,
                cells_hash=digest,
                run_id=run_id,
            )
    result = IngestResult(valuation_date, str(basis), n_claims, n_txn, len(cells), paid_total, digest)
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

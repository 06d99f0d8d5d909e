"""Point-in-time ingest: the claims book as it stood at valuation date V, aggregated in SQL (warehouse/cells.py),
cumulated here.

Three partitions are written for (V, basis) in one transaction, so readers see all old or all new:

* ``snapshot_claims``: one row per claim reported by V with the claim-level features the quality gate and drift
  need, by ``INSERT ... SELECT`` inside that transaction (no transaction row reaches Python, and the 1M-row
  partition is written once);
* ``cell_increments``: the book per (segment, accident month, calendar month), what each month added; small;
* ``triangle_cells``: the long-format cells frame (see schema.py), the increments summed to the origin and
  development grains and cumulated, bulk-loaded into a staging table first and swapped in by the same transaction.
  On PostgreSQL the increments' aggregate runs on a second connection while the snapshot is written, so the two
  passes share the wall time.

Two paths, the same rows. The **full path** reads the whole book. The **incremental path** reads only what the
book as recorded gained since the previous month end P (the rows recorded since, late recordings and corrections
dated in earlier periods among them, which land in their own earlier cells, staged once in a temporary table) and
adds it to P's increments and snapshot (P's claims copied as they are, then only the claims the month touched
updated); it runs when P was ingested on the same basis and gated clean and the source still holds what P saw
(:func:`incremental_premise`), and the log says which path ran and why.

Basis ``as_recorded`` (default) keeps transactions dated and recorded by V, so a re-run next year reproduces the
numbers; ``restated`` keeps everything dated by V whatever its recording time (latest knowledge: the full path).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from include.reserving import cells as cells_module
from include.reserving.cells import CELL_COLUMNS
from include.reserving.dates import month_index, month_start, parse_valuation_date, previous_month_end
from include.reserving.domain import Basis
from include.reserving.quality.suite import ROW_COUNT_CHECK
from include.reserving.schema import SEGMENT_LENGTH
from include.reserving.warehouse import cells as store
from include.reserving.warehouse.core import staging_load_id, without_jit

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
    path: str  # "incremental" (the previous month end's plus the rows recorded since) or "full"

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
            "path": self.path,
        }


INCREMENT_KEYS = ["segment", "accident_m", "month_m"]
INCREMENT_MONEY = ["paid", "incurred"]
INCREMENT_COUNTS = ["closed_count", "transaction_count", "reported_count"]


def increments_frame(txn: pd.DataFrame, rep: pd.DataFrame) -> pd.DataFrame:
    """The increments (see schema.cell_increments) from the aggregates of :func:`warehouse.cells.book_increments`:
    one row per (segment, accident month, calendar month), amounts to the cent, counts as integers, sorted."""
    return canonical_increments(txn.merge(rep, on=INCREMENT_KEYS, how="outer"))


def canonical_increments(frame: pd.DataFrame) -> pd.DataFrame:
    """Increments as both paths cumulate them: amounts to the cent (as stored, numeric(18,2)), integer counts,
    sorted by key, so the sums are taken in the same order."""
    frame = frame.reindex(columns=INCREMENT_KEYS + INCREMENT_MONEY + INCREMENT_COUNTS)
    frame[["accident_m", "month_m"]] = frame[["accident_m", "month_m"]].astype("int64")
    frame[INCREMENT_MONEY] = frame[INCREMENT_MONEY].astype("float64").fillna(0.0).round(2)
    frame[INCREMENT_COUNTS] = frame[INCREMENT_COUNTS].astype("float64").fillna(0).astype("int64")
    return frame.sort_values(INCREMENT_KEYS).reset_index(drop=True)


def cumulate_cells(increments: pd.DataFrame, exp: pd.DataFrame, mv: int, origin_m: int, dev_m: int) -> pd.DataFrame:
    """The cells frame from the increments (:func:`increments_frame`) and the exposure per (segment, origin month),
    given V's month index ``mv`` and the origin and development grains in months: a dense grid of evaluation
    periods per (segment, origin), cumulative sums, ages."""
    keys = ["segment", "origin_m", "bucket"]
    if increments.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    # evaluation period j: (V - (j+1) grains, V - j grains], counted back from V
    merged = (
        increments.assign(
            origin_m=increments["accident_m"] - increments["accident_m"] % origin_m,
            bucket=(mv - increments["month_m"]) // dev_m,
        )
        .groupby(keys, as_index=False)[["paid", "incurred", "closed_count", "reported_count"]]
        .sum()
    )
    grid = []
    for (segment, origin), _ in merged.groupby(["segment", "origin_m"]):
        # evaluation periods from the one holding the origin start up to V (bucket 0)
        first_bucket = (mv - int(origin)) // dev_m
        grid.extend((segment, origin, b) for b in range(first_bucket, -1, -1))
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


class SegmentDefinitionError(ValueError):
    """The claims cannot be cut into the segments the setting ``segment_by`` defines."""


def incremental_premise(
    basis: str, previous: store.PreviousIngest, segment_by: Sequence[str] = store.LINE_ONLY
) -> str | None:
    """Why V must be ingested in full (a sentence for the log), or None when V's cells and snapshot may be derived
    from the previous month end P's plus the rows recorded since.

    The book as recorded at V is P's plus the rows recorded since (and rows of P's dates on claims reported since);
    that holds for what the warehouse holds of P when P was ingested on this basis, passed its gate, and the source
    still has the rows P's gate counted and the claims P's snapshot held (the recount guard of the gate's
    incremental uniqueness check, extended to the claims), and P's increments are cut into the same segments
    (``segment_by``; a snapshot without a recorded definition was cut by line of business).
    """
    p = previous.valuation_date
    if basis != Basis.AS_RECORDED:
        return f"basis {basis}: rows of any past date may have been recorded since {p}"
    if previous.snapshot is None:
        return f"{p} was not ingested on basis {basis}"
    if previous.gate is None or previous.gate["element_count"] is None:
        return f"{p} has no quality gate result on basis {basis}"
    if not previous.gate["gate_success"]:
        return f"{p} failed its quality gate"
    before = previous.snapshot.get("segment_by") or store.segment_definition(store.LINE_ONLY)
    now = store.segment_definition(segment_by)
    if before != now:
        return f"{p} was cut into segments by {before}, this run by {now} (setting segment_by)"
    stored = (previous.increment_totals["transaction_count"], previous.increment_totals["reported_count"])
    expected = (previous.snapshot["transaction_count"], previous.snapshot["claim_count"])
    if tuple(int(v) for v in stored) != tuple(int(v) for v in expected):
        return (
            f"{p}'s stored increments ({stored[0]} transactions, {stored[1]} claims) do not tie to its snapshot "
            f"({expected[0]}, {expected[1]}): it was ingested before increments were kept"
        )
    recorded = previous.recorded_by()
    if recorded != previous.gate["element_count"]:
        return (
            f"the transactions recorded by {p} changed since its gate ({previous.gate['element_count']} then, "
            f"{recorded} now): history was rewritten at the source"
        )
    reported = previous.reported_by()
    if reported != previous.snapshot["claim_count"]:
        return (
            f"the claims reported by {p} changed since its ingest ({previous.snapshot['claim_count']} then, "
            f"{reported} now): history was rewritten at the source"
        )
    return None


def ingest(
    engine: Engine,
    valuation_date: dt.date | str,
    basis: str = Basis.AS_RECORDED,
    origin_months: int = 3,
    development_months: int = 3,
    run_id: str | None = None,
    source_engine: Engine | None = None,
    before_swap: Callable[[], None] | None = None,
    incremental: bool = True,
    segment_by: Sequence[str] = store.LINE_ONLY,
) -> IngestResult:
    """Snapshot the book as at V into ``snapshot_claims``, ``cell_increments`` and ``triangle_cells`` for
    (V, basis), idempotently.

    With ``incremental`` (the default) and the previous month end P ingested and gated clean (see
    :func:`incremental_premise`), V's increments and snapshot are P's plus the rows recorded since: the same rows
    the full path writes, for a read of the month's rows instead of the whole book. The log says which path ran
    and why. ``source_engine`` is the claims system (defaults to the warehouse). ``before_swap`` runs after the
    cells are staged and the snapshot written, before the swap commits: tests use it to kill the task at the worst
    moment. ``segment_by`` (the setting): the claim attributes whose values name a cell's segment.
    """
    valuation_date = parse_valuation_date(valuation_date)
    segment_by = tuple(segment_by)
    if basis not in tuple(Basis):
        raise ValueError(f"basis {basis!r} is invalid: use one of {[b.value for b in Basis]}")
    if source_engine is not None and source_engine.url != engine.url:
        raise NotImplementedError("a claims source outside the warehouse needs the extract copied in first")
    key = {"valuation_date": valuation_date, "basis": str(basis)}
    missing = store.missing_segment_attributes(engine, valuation_date, segment_by)
    if missing:
        raise SegmentDefinitionError(
            "setting segment_by "
            f"{list(segment_by)}: "
            + "; ".join(
                f"claims.{column} is NULL on {n} claims reported by {valuation_date}" for column, n in missing.items()
            )
            + ": fill the column in the extract, or take it out of segment_by"
        )
    previous = previous_month_end(valuation_date)
    if incremental:
        full_because = incremental_premise(
            basis, store.previous_ingest(engine, previous, basis, ROW_COUNT_CHECK), segment_by
        )
    else:
        full_because = "incremental ingest is switched off (setting incremental_ingest)"
    path = "full" if full_because else "incremental"
    log.info(
        "ingest V=%s basis=%s: %s path (%s)",
        valuation_date,
        basis,
        path,
        full_because or f"{previous} was ingested and gated clean: adding the rows recorded since",
    )
    prefix, load_id = staging_load_id(f"cells|{valuation_date}|{basis}|{run_id}")
    store.clear_staged_cells(engine, prefix)
    mv = month_index(valuation_date)

    def stage_cells(bind, increments: pd.DataFrame) -> pd.DataFrame:
        too_long = sorted({s for s in increments["segment"] if len(s) > SEGMENT_LENGTH})
        if too_long:
            raise SegmentDefinitionError(
                f"setting segment_by {list(segment_by)}: the segment labels {too_long[:3]} exceed the warehouse's "
                f"{SEGMENT_LENGTH} characters: shorten the attribute values or segment by fewer attributes"
            )
        exposure = store.exposure_aggregates(bind, valuation_date, origin_months, segment_by)
        cells = cumulate_cells(increments, exposure, mv, origin_months, development_months)
        store.stage_cells(bind, cells, key, load_id)
        return cells

    def full_pass() -> tuple[pd.DataFrame, pd.DataFrame]:
        log.info("ingest V=%s: aggregating the book to increments in the database", valuation_date)
        increments = increments_frame(*store.book_increments(engine, valuation_date, basis, segment_by))
        return increments, stage_cells(engine, increments)

    # The full path's two passes over the transactions at once where the database has more than one writer: the
    # increments' aggregate runs on its own connection while this transaction writes the snapshot (PostgreSQL runs
    # the INSERT ... SELECT on one core). The incremental path reads a month's rows: all of it in this transaction.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-cells") as pool:
        staged = pool.submit(full_pass) if full_because else None
        if staged is not None and engine.dialect.name == "sqlite":
            staged.result()  # a single writer: the cells are staged before the snapshot's transaction opens
        with engine.begin() as conn:
            log.info("ingest V=%s basis=%s: writing the claim snapshot", valuation_date, basis)
            if staged is not None:
                store.write_claim_snapshot(conn, valuation_date, basis)
                increments, cells = staged.result()
                store.write_increments(conn, key, increments)
            else:
                without_jit(conn)
                rows = store.stage_rows_since(conn, valuation_date, previous, segment_by)
                store.write_claim_snapshot_since(conn, valuation_date, previous, rows)
                store.write_increments_since(conn, valuation_date, previous, rows, segment_by)
                store.drop_rows_since(conn, rows)
                increments = canonical_increments(store.load_increments(conn, valuation_date, basis))
                cells = stage_cells(conn, increments)
            n_txn = int(increments["transaction_count"].sum())
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
                segment_by=store.segment_definition(segment_by),
            )
    result = IngestResult(valuation_date, str(basis), n_claims, n_txn, len(cells), paid_total, digest, path)
    log.info(
        "ingest V=%s basis=%s (%s path): %d claims, %d transactions, %d cells, paid to date %.2f",
        valuation_date,
        basis,
        path,
        n_claims,
        n_txn,
        len(cells),
        paid_total,
    )
    return result

"""Landing: the claims system's rows copied into the warehouse's contract tables, incrementally.

When the claims system is another database or schema (connection ``claims_source``) or names things its own way
(setting ``source_mapping``), each run copies what the warehouse does not have yet, after the contract check passed
on the source; everything downstream (reconcile, ingest, the gate) then reads the warehouse as always.

- transactions: the rows recorded after the latest ``recorded_at`` the warehouse holds (the contract's extract is
  append-only by ``recorded_at``) and, on the as-recorded basis, before V + 1 day (a later month lands later);
- claims: those reported by V (all, on the restated basis) and those of the landed transactions that the warehouse
  does not hold yet; their attributes are the claims system's when they land. Counting both sides first keeps the
  usual month, where nothing is missing, to two counts;
- earned exposure and finance control totals: small, replaced whole, so a revised month follows the source.

One warehouse transaction (serialised against other runs' landings): a failure lands nothing, a re-run lands only
what is still missing, so the copy is idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.sourcemap import SourceMapping
from include.reserving.warehouse.source import mapped_table

log = logging.getLogger(__name__)

LANDING_LOCK_KEY = 7_310_044  # pg_advisory_xact_lock key serialising landings
CHUNK_ROWS = 20_000
IN_LIST = 1_000


@dataclass(frozen=True)
class LandingResult:
    transactions: int
    claims: int
    exposure_rows: int
    control_rows: int | None  # None: the source has no finance control totals
    after: dt.datetime | None  # the watermark the copy started from (exclusive)
    before: dt.datetime | None  # the bound it copied up to (exclusive); None on the restated basis

    def summary(self) -> str:
        window = f"recorded after {self.after or 'the beginning'}" + (
            f" and before {self.before}" if self.before else ""
        )
        control = "no control totals in the source" if self.control_rows is None else f"{self.control_rows} control"
        return (
            f"landed {self.transactions} transaction(s) {window}, {self.claims} new claim(s), "
            f"{self.exposure_rows} exposure row(s), {control} row(s)"
        )


def _lock(conn: Connection) -> None:
    """Two runs landing at once would both copy the rows above one watermark: take turns (PostgreSQL: an advisory
    lock; SQLite: a write matching no row takes the database's write lock now; it looks the row up by earned
    exposure's primary key, not by scanning the transactions)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LANDING_LOCK_KEY})
    else:
        e = schema.earned_exposure
        conn.execute(e.update().where(e.c.line_of_business.is_(None)).values(month=e.c.month))


def _insert_ignoring_present(conn: Connection, table, rows: list[dict]) -> None:
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(table).on_conflict_do_nothing(), rows)


def _land_claims(src: Connection, conn: Connection, claims_view, ids: set[str]) -> int:
    """Copy the claims of ``ids`` that the warehouse does not hold yet; returns how many."""
    claims = schema.claims
    missing = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_LIST):  # IN lists of bounded size
        chunk = ordered[start : start + IN_LIST]
        held = set(conn.execute(select(claims.c.claim_id).where(claims.c.claim_id.in_(chunk))).scalars())
        missing.extend(i for i in chunk if i not in held)
    landed = 0
    for start in range(0, len(missing), IN_LIST):
        chunk = missing[start : start + IN_LIST]
        rows = [dict(r._mapping) for r in src.execute(select(*claims_view.c).where(claims_view.c.claim_id.in_(chunk)))]
        if rows:
            _insert_ignoring_present(conn, claims, rows)
            landed += len(rows)
    return landed


def _source_has(source: Engine, mapping: SourceMapping, name: str) -> bool:
    from sqlalchemy import inspect

    schema_name, table_name = mapping.location(name)
    insp = inspect(source)
    return table_name in set(insp.get_table_names(schema=schema_name)) | set(insp.get_view_names(schema=schema_name))


def _copy_small(source: Engine, conn: Connection, mapping: SourceMapping, table) -> int:
    """Replace a small table whole with the source's rows."""
    columns = [c.name for c in table.columns]
    view = mapped_table(mapping, table.name, columns, typed=True)
    with source.connect() as src:
        rows = [dict(r._mapping) for r in src.execute(select(*view.c))]
    conn.execute(delete(table))
    if rows:
        conn.execute(insert(table), rows)
    return len(rows)


def land(
    source: Engine, warehouse: Engine, mapping: SourceMapping, valuation_date: dt.date, restated: bool = False
) -> LandingResult:
    """Copy what the warehouse lacks of the source's rows as at V (see the module docstring)."""
    txn, claims = schema.claim_transactions, schema.claims
    txn_view = mapped_table(mapping, txn.name, [c.name for c in txn.columns], typed=True)
    claims_view = mapped_table(mapping, claims.name, [c.name for c in claims.columns], typed=True)
    before = None if restated else dt.datetime.combine(valuation_date + dt.timedelta(days=1), dt.time())
    schema.create_all(warehouse)
    with warehouse.begin() as conn:
        _lock(conn)
        after = conn.execute(select(func.max(txn.c.recorded_at))).scalar()
        query = select(*txn_view.c)
        if after is not None:
            query = query.where(txn_view.c.recorded_at > after)
        if before is not None:
            query = query.where(txn_view.c.recorded_at < before)
        copied, new_claims = 0, 0
        with source.connect() as src:
            result = src.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(query)
            for part in result.mappings().partitions(CHUNK_ROWS):
                rows = [dict(r) for r in part]
                conn.execute(insert(txn), rows)
                new_claims += _land_claims(src, conn, claims_view, {r["claim_id"] for r in rows} - {None})
                copied += len(rows)
                log.info("landing: %d transaction(s) copied so far", copied)
            reported = claims_view.c.report_date <= valuation_date if before is not None else true()
            held_reported = claims.c.report_date <= valuation_date if before is not None else true()
            count = select(func.count()).select_from(claims_view).where(reported)
            if src.execute(count).scalar() != conn.execute(select(func.count()).where(held_reported)).scalar():
                ids = set(src.execute(select(claims_view.c.claim_id).where(reported)).scalars())
                new_claims += _land_claims(src, conn, claims_view, ids)
        exposure_rows = _copy_small(source, conn, mapping, schema.earned_exposure)
        control_rows = None
        if _source_has(source, mapping, schema.finance_control_totals.name):
            control_rows = _copy_small(source, conn, mapping, schema.finance_control_totals)
    return LandingResult(copied, new_claims, exposure_rows, control_rows, after, before)

"""Running the gate for valuation date V: the run's views, the suite built for V, the passes, the artifacts, the
report. Great Expectations is imported (after its process-wide settings) only when a gate runs.

The views: GX reads a query asset's column names by executing the whole query (psycopg2 then buffers every row: 53 s
and 2.5 GB for 10M transactions); a view is a table asset whose columns come from the catalogue, with no scan. Each
run makes its own and drops them at the end; a run killed midway leaves them, so the next run first drops any view
of the gate's (the gate runs one valuation at a time: the DAG has max_active_runs=1).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import inspect, literal_column, select
from sqlalchemy.engine import Connection, Dialect, Engine

from include.reserving import artifacts, schema
from include.reserving.config import Settings
from include.reserving.dates import end_of_day, previous_month_end
from include.reserving.domain import Basis
from include.reserving.quality import decisions
from include.reserving.quality.decisions import PreviousGate
from include.reserving.quality.report import QualityGateError, QualityReport
from include.reserving.quality.suite import (
    CLAIM_COUNT_CHECK,
    EXTRACT,
    NO_BAD_ROWS,
    RECENT,
    REQUIRED_COLUMNS,
    ROW_COUNT_CHECK,
    SNAPSHOT,
    SUITE_VERSION,
    Check,
    build_checks,
)
from include.reserving.warehouse import quality as store
from include.reserving.warehouse.core import make_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateRun:
    """One run of the gate: what is judged (V, basis, the checks), in which tables and views, where results go."""

    engine_url: str
    valuation_date: dt.date
    basis: str
    checks: list[Check]
    tables: dict[str, str]  # asset -> the table or view GX reads
    missing: dict[str, set[str]]  # asset -> required columns it lacks
    artifact_uri: str  # folder for validation_results.json and data_docs/
    run_id: str | None


def previous_gate(bind: Engine | Connection, valuation_date: dt.date, basis: str) -> PreviousGate | None:
    """What the gate stored for the month end before V (the volume baseline, the uniqueness scope's premise)."""
    return decisions.previous_gate(store.check_row(bind, previous_month_end(valuation_date), basis, ROW_COUNT_CHECK))


def run_quality_gate(
    engine_url: str,
    valuation_date: dt.date,
    basis: str,
    settings: Settings,
    artifact_dir: str | Path,
    previous: PreviousGate | None = None,
    run_id: str | None = None,
) -> QualityReport:
    """Validate the extract as at V in the warehouse and keep the results; never raises on bad data.

    ``artifact_dir`` is a folder (local path or fsspec URL) that receives ``validation_results.json`` and Data Docs
    (``data_docs/index.html``). ``previous`` is what the gate stored for the month end before V (``previous_gate``;
    None for the first valuation: the volume check is then left out and uniqueness is checked over every row).
    """
    if basis not in tuple(Basis):
        raise ValueError(f"basis {basis!r} is invalid: use one of {[b.value for b in Basis]}")
    engine = make_engine(engine_url)
    try:
        _drop_leftover_views(engine)
        present = {t: _present_columns(engine, t) for t in REQUIRED_COLUMNS}
        for table, columns in present.items():
            if not columns:
                raise QualityGateError(f"source table {table} does not exist in the warehouse")
        missing = decisions.missing_columns(present)
        checked_through = None
        if settings.incremental_uniqueness and not missing[EXTRACT]:
            recorded_by = partial(store.transactions_recorded_by, engine)
            checked_through = decisions.uniqueness_checked_through(previous, basis, recorded_by)
        if checked_through is not None and not _claims_as_counted(engine, checked_through, basis):
            checked_through = None  # the row-level checks read the claims too: every row is checked again
        checks = build_checks(valuation_date, basis, settings, decisions.volume_baseline(previous), checked_through)
        queries = {
            EXTRACT: transactions_extract_sql(engine.dialect, valuation_date, basis, present),
            SNAPSHOT: snapshot_claims_sql(engine.dialect, valuation_date, basis),
        }
        if checked_through is not None:  # the row-level checks judge the rows recorded since (suite.build_checks)
            queries[RECENT] = transactions_extract_sql(
                engine.dialect, valuation_date, basis, present, recorded_after=end_of_day(checked_through)
            )
        views = _create_views(engine, queries)
        try:
            tables = {table: table for table in REQUIRED_COLUMNS} | views
            run = GateRun(engine_url, valuation_date, basis, checks, tables, missing, str(artifact_dir), run_id)
            return _validate(run)
        finally:
            _drop_views(engine, views.values())
    finally:
        engine.dispose()


def _claims_as_counted(engine: Engine, previous: dt.date, basis: str) -> bool:
    """Whether the claims reported by the previous month end P still number what P's snapshot held (its gate's
    claim count): the extract's report dates come from them, so a claim removed or added since would change the
    verdict on rows P's gate judged (the transactions' own count is ``decisions.uniqueness_checked_through``'s)."""
    counted = store.check_row(engine, previous, basis, CLAIM_COUNT_CHECK)
    reported = store.claims_reported_by(engine, previous)
    if counted is None or counted["element_count"] != reported:
        log.warning(
            "the claims reported by %s changed since its gate (%s then, %d now): every row of the extract is checked",
            previous,
            None if counted is None else counted["element_count"],
            reported,
        )
        return False
    return True


def _apply_gx_settings() -> None:
    """GX's process-wide settings, applied when a gate runs: importing the quality package changes nothing."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave the warehouse network
    # GX logs some 250 INFO lines of its own plumbing per validation ("Skipping registering function ..."), burying
    # the gate's summary in the task log; its warnings and errors still show.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _validate(run: GateRun) -> QualityReport:
    """The passes, the artifacts (validation results, Data Docs) and the report."""
    _apply_gx_settings()
    from include.reserving.quality import validation  # GX: after its settings

    local_dir = artifacts.writable_dir(run.artifact_uri)
    passes = validation.run_passes(run, local_dir)
    results = passes.results
    (local_dir / "validation_results.json").write_text(
        json.dumps(
            {
                "valuation_date": run.valuation_date.isoformat(),
                "basis": run.basis,
                "suite_version": SUITE_VERSION,
                "run_id": run.run_id,
                "success": all(r.success for r in results),
                "validations": passes.validations,
                "failure_examples": passes.failure_examples,
            },
            indent=2,
            default=str,
        )
    )
    if not artifacts.is_local(run.artifact_uri):  # uploaded: the temporary local copy goes
        artifacts.publish_dir(local_dir, run.artifact_uri)
        shutil.rmtree(local_dir, ignore_errors=True)

    by_key = {r.key: r for r in results}
    row_count, claim_count = by_key.get(ROW_COUNT_CHECK), by_key.get(CLAIM_COUNT_CHECK)
    asset_rows = {EXTRACT: row_count, SNAPSHOT: claim_count}
    for r in results:  # "N bad rows of M" for the query checks too
        if r.expectation == NO_BAD_ROWS and asset_rows.get(r.asset) is not None and not r.error:
            r.element_count = asset_rows[r.asset].element_count
    report = QualityReport(
        valuation_date=run.valuation_date,
        basis=run.basis,
        suite_version=SUITE_VERSION,
        checks=results,
        row_count=row_count.unexpected_count if row_count else None,
        claim_count=claim_count.unexpected_count if claim_count else None,
        artifact_uri=run.artifact_uri,
        run_id=run.run_id,
    )
    log.info("%s", report.summary())
    return report


# --- the run's views -----------------------------------------------------------------------------------------------


def _present_columns(engine: Engine, table: str) -> set[str]:
    insp = inspect(engine)
    if not insp.has_table(table):
        return set()
    return {c["name"] for c in insp.get_columns(table)}


def _view_prefix(asset: str) -> str:
    return f"quality_{asset}_"  # then the run's token


def _create_views(engine: Engine, queries: dict[str, str]) -> dict[str, str]:
    """One view per derived asset, for this run only; returns asset -> view name."""
    token = uuid.uuid4().hex[:12]
    views = {asset: _view_prefix(asset) + token for asset in queries}
    with engine.begin() as conn:
        for asset, sql in queries.items():
            conn.exec_driver_sql(f'CREATE VIEW "{views[asset]}" AS {sql}')
    return views


def _drop_leftover_views(engine: Engine) -> None:
    """Drop the views of runs killed before they could drop their own (one gate runs at a time per warehouse)."""
    prefixes = tuple(_view_prefix(asset) for asset in (EXTRACT, SNAPSHOT, RECENT))
    _drop_views(engine, [name for name in inspect(engine).get_view_names() if name.startswith(prefixes)])


def _drop_views(engine: Engine, names: Iterable[str]) -> None:
    with engine.begin() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}"')


def _compile(dialect: Dialect, statement) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def transactions_extract_sql(
    dialect: Dialect,
    valuation_date: dt.date,
    basis: str,
    present: dict[str, set[str]],
    recorded_after: dt.datetime | None = None,
) -> str:
    """The transactions as at V joined to their claims, as SQL text (the body of the run's view).

    As recorded: every row recorded by the end of V, whatever its date, so that a row dated after V shows up as a
    defect instead of vanishing. Restated: rows dated by V (later rows are simply later, not defects). Columns missing
    from the source (``present``: the columns found per table) are left out here and reported by the column checks,
    so the query itself never fails. ``recorded_after``: only the rows recorded since then (``recorded_at`` present).
    """
    t, c = schema.claim_transactions, schema.claims
    t_cols, c_cols = present[t.name], present[c.name]
    wanted_t = [n for n in REQUIRED_COLUMNS["claim_transactions"] if n in t_cols]
    wanted_c = [n for n in ("accident_date", "report_date") if n in c_cols]
    columns = [t.c[n] for n in wanted_t] + [c.c[n] for n in wanted_c]
    source = t.outerjoin(c, c.c.claim_id == t.c.claim_id) if "claim_id" in t_cols and "claim_id" in c_cols else t
    if not columns:
        columns = [literal_column("NULL").label("no_required_columns")]
    query = select(*columns).select_from(source)
    if basis == Basis.AS_RECORDED and "recorded_at" in t_cols:
        query = query.where(t.c.recorded_at < end_of_day(valuation_date))
    elif basis == Basis.RESTATED and "transaction_date" in t_cols:
        query = query.where(t.c.transaction_date <= valuation_date)
    if recorded_after is not None:
        query = query.where(t.c.recorded_at >= recorded_after)
    return _compile(dialect, query)


def snapshot_claims_sql(dialect: Dialect, valuation_date: dt.date, basis: str) -> str:
    """The claim snapshot partition for (V, basis), as SQL text (the body of the run's view)."""
    s = schema.snapshot_claims
    columns = [col for col in s.columns if col.name not in ("valuation_date", "basis")]
    query = select(*columns).where(s.c.valuation_date == valuation_date, s.c.basis == basis)
    return _compile(dialect, query)

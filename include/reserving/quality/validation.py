"""The Great Expectations side of a gate run: a context, the warehouse as a SQL data source, one suite per asset
and the two passes, each GX result turned into a ``CheckResult``. Importing this module imports GX: the runner does,
after applying GX's process-wide settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import great_expectations as gx
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from include.reserving.quality import decisions
from include.reserving.quality.expectations import expectation
from include.reserving.quality.report import CheckResult, examples
from include.reserving.quality.suite import (
    ASSETS,
    COLUMNS_MATCH,
    RECENT,
    ROW_COUNT,
    SQL_TYPE,
    SUITE_VERSION,
    Check,
)

if TYPE_CHECKING:
    from include.reserving.quality.runner import GateRun

DOCS_SITE = "reserving_quality"
SLOWEST_SHOWN = 5  # the gate's slowest queries named in the log: where a month's gate spends its time

log = logging.getLogger(__name__)


@contextmanager
def timed_queries() -> Iterator[list[tuple[float, str]]]:
    """Collect (seconds, statement) of every query this thread runs meanwhile (GX bundles several expectations into
    one query, so the query is the unit that costs); the slowest are logged at the end."""
    timings: list[tuple[float, str]] = []
    thread = threading.get_ident()

    def before(conn, cursor, statement, parameters, context, executemany):
        if threading.get_ident() == thread:
            conn.info.setdefault("gate_query_started", []).append(time.perf_counter())

    def after(conn, cursor, statement, parameters, context, executemany):
        started = conn.info.get("gate_query_started")
        if threading.get_ident() == thread and started:
            timings.append((time.perf_counter() - started.pop(), " ".join(statement.split())))

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    try:
        yield timings
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "after_cursor_execute", after)
        total = sum(seconds for seconds, _ in timings)
        log.info("gate: %d queries, %.1f s in the database; the slowest:", len(timings), total)
        for seconds, statement in sorted(timings, key=lambda t: -t[0])[:SLOWEST_SHOWN]:
            log.info("gate query %.2f s: %s", seconds, statement[:300])


@dataclass
class Passes:
    """What the two passes found: a result per check (suite order) and GX's own results, serialised."""

    results: list[CheckResult]
    validations: list[dict[str, Any]]  # pass 1: every check, bad rows counted
    failure_examples: list[dict[str, Any]]  # pass 2: examples for the failed row-level checks


def run_passes(run: GateRun, local_dir: Path) -> Passes:
    """Validate ``run``'s checks in the warehouse; Data Docs go to ``local_dir / "data_docs"``."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(local_dir / "data_docs"),
            },
        },
    )
    datasource = _add_datasource(context, run.engine_url)
    tag = f"{run.valuation_date.isoformat()}_{run.basis}"
    batches = {
        asset: datasource.add_table_asset(name=asset, table_name=table).add_batch_definition_whole_table(
            f"{asset}_{tag}"
        )
        for asset, table in run.tables.items()
        if asset in ASSETS or asset == RECENT
    }

    def batch_of(check: Check) -> str:  # after a clean month, row-level checks read only the rows recorded since
        return RECENT if check.row_level and RECENT in batches else check.asset

    def validate(name: str, checks: list[Check], result_format: dict) -> list:
        definitions = []
        for asset, batch in batches.items():
            asset_checks = [c for c in checks if batch_of(c) == asset]
            if not asset_checks:
                continue
            suite = context.suites.add(
                gx.ExpectationSuite(name=f"reserving_{asset}_{name}", meta={"suite_version": SUITE_VERSION})
            )
            for check in asset_checks:
                suite.add_expectation(expectation(check))
            definition = gx.ValidationDefinition(name=f"{asset}_{name}_{tag}", data=batch, suite=suite)
            definitions.append(context.validation_definitions.add(definition))
        checkpoint = gx.Checkpoint(
            name=f"reserving_quality_{name}_{tag}", validation_definitions=definitions, result_format=result_format
        )
        return list(context.checkpoints.add(checkpoint).run().run_results.values())

    # Pass 1 counts bad rows without fetching examples: for a passing check, an example query is a full scan.
    by_key = {c.key: c for c in run.checks}
    with timed_queries():
        validations = validate(
            f"v{SUITE_VERSION}", run.checks, {"result_format": "BASIC", "partial_unexpected_count": 0}
        )
    results = [
        _check_result(by_key[r.expectation_config.meta["check_key"]], r, run.missing)
        for validation in validations
        for r in validation.results
    ]
    # Pass 2 fetches a few examples for the failed row-level checks only (fresh expectations of the same checks);
    # the query checks brought theirs in pass 1.
    details = []
    needs_examples = decisions.needs_examples(results)
    if needs_examples:
        again = [c for c in run.checks if c.key in needs_examples]
        details = validate(
            f"v{SUITE_VERSION}_failure_examples", again, {"result_format": "SUMMARY", "partial_unexpected_count": 20}
        )
        found = {
            r.expectation_config.meta["check_key"]: examples(r.result.get("partial_unexpected_list") or [])
            for validation in details
            for r in validation.results
        }
        for r in results:
            r.examples = found.get(r.key, r.examples)
    context.build_data_docs(site_names=[DOCS_SITE])  # once for every validation, not once per validation action
    order = {c.key: i for i, c in enumerate(run.checks)}
    results.sort(key=lambda r: order[r.key])
    return Passes(results, [v.to_json_dict() for v in validations], [v.to_json_dict() for v in details])


def _add_datasource(context, engine_url: str):
    backend = make_url(engine_url).get_backend_name()
    if backend == "sqlite":
        return context.data_sources.add_sqlite(name="warehouse", connection_string=engine_url)
    if backend == "postgresql":
        return context.data_sources.add_postgres(name="warehouse", connection_string=engine_url)
    return context.data_sources.add_sql(name="warehouse", connection_string=engine_url)


def _exception_message(result) -> str | None:
    info = result.exception_info or {}
    candidates = [info] if "raised_exception" in info else list(info.values())
    for item in candidates:
        if isinstance(item, dict) and item.get("raised_exception"):
            return str(item.get("exception_message") or "an exception was raised").splitlines()[0]
    return None


def _check_result(check: Check, result, missing: dict[str, set[str]]) -> CheckResult:
    details = result.result or {}
    out = CheckResult(
        key=check.key,
        asset=check.asset,
        expectation=check.expectation,
        column=check.column,
        description=check.description,
        success=bool(result.success),
    )
    if check.expectation == ROW_COUNT:
        # the observed count, kept in both: next month's volume baseline is read back from element_count
        out.unexpected_count = out.element_count = details.get("observed_value")
    elif check.expectation == COLUMNS_MATCH:
        out.examples = sorted(set(check.kwargs["column_set"]) - set(details.get("observed_value") or []))
    elif check.expectation == SQL_TYPE:
        observed = details.get("observed_value")
        out.examples = [observed] if observed is not None else []
    else:
        out.unexpected_count = details.get("unexpected_count")
        out.element_count = details.get("element_count")
        out.examples = examples(details.get("partial_unexpected_list") or [])
    if not out.success:
        gone = [c for c in check.columns if c in missing.get(check.asset, set())]
        out.error = f"column {', '.join(gone)} is missing from {check.asset}" if gone else _exception_message(result)
    return out

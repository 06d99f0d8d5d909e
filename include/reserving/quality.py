"""The data-quality gate: a Great Expectations 1.x suite, defined here in code, validated inside the warehouse.

The suite checks the extract as at valuation date V (``basis`` ``as_recorded``: transactions recorded by the end of
V; ``restated``: latest knowledge, transactions dated by V) and the claim snapshot ingest wrote for (V, basis). GX runs
every check as SQL through its SQL data source (SQLite or PostgreSQL): no rows are pulled into pandas. Four assets:

- ``claims`` and ``claim_transactions`` (table assets): required columns present with the expected types (metadata
  only, no scan);
- ``transactions_extract`` (a view made for the run): claim_transactions joined to claims, as at V: ids, dates and
  amounts not null, amounts finite and within bounds, no duplicate transaction ids or (claim, date, amount) rows,
  report date <= transaction date <= V, row count above zero and within the tolerance of the previous valuation's
  (uniqueness, after a clean gate at the previous month end V', only for the groups holding a row recorded after V':
  see ``uniqueness_checked_through``);
- ``snapshot_claims`` (a view of the partition for (V, basis)): claim id, dates, line and type not null, claim type
  allowed, claimant age 0-120, accident date <= report date <= V, at least one claim.

``run_quality_gate`` returns a ``QualityReport`` and keeps the validation results (JSON) and Data Docs (HTML) under
``artifact_dir``; ``raise_for_failures`` stops the run with a message naming every failed check, its column, the count
of bad rows and a few examples; ``store_quality_results`` replaces the rows of (V, basis) in ``quality_results``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import and_, delete, inspect, literal_column, select
from sqlalchemy.engine import Engine, make_url

from include.reserving import artifacts, schema
from include.reserving.config import Settings
from include.reserving.dates import end_of_day, previous_month_end
from include.reserving.domain import CLAIM_TYPES, Basis
from include.reserving.warehouse.core import make_engine

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave the warehouse network
# GX logs some 250 INFO lines of its own plumbing per validation ("Skipping registering function ..."), burying the
# gate's summary in the task log; its warnings and errors still show.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402  (after the analytics switch)
import great_expectations.expectations as gxe  # noqa: E402

log = logging.getLogger(__name__)

# Bump when a check is added, removed or changed: stored results name the suite version they were judged by.
SUITE_VERSION = "2"
EXAMPLE_COUNT = 5
ROW_COUNT_CHECK = "transactions_extract.row_count.nonzero"  # its element_count is next month's volume baseline
DOCS_SITE = "reserving_quality"

# Required source columns and their type family: generic SQLAlchemy types, so one list serves SQLite and PostgreSQL.
TYPE_FAMILIES = {
    "string": ["String"],
    "date": ["Date"],
    "timestamp": ["DateTime"],
    "integer": ["Integer"],
    "number": ["Numeric", "Integer"],  # Float is a Numeric
}
REQUIRED_COLUMNS = {
    "claims": {
        "claim_id": "string",
        "line_of_business": "string",
        "claim_type": "string",
        "accident_date": "date",
        "report_date": "date",
        "claimant_age": "integer",
        "region": "string",
    },
    "claim_transactions": {
        "transaction_id": "string",
        "claim_id": "string",
        "transaction_date": "date",
        "recorded_at": "timestamp",
        "paid_amount": "number",
        "case_reserve_change": "number",
    },
}
AMOUNT_COLUMNS = ("paid_amount", "case_reserve_change")


class QualityGateError(RuntimeError):
    """The extract failed the quality gate; ``report`` holds every check's outcome."""

    def __init__(self, message: str, report: QualityReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class CheckResult:
    key: str  # stable name of the check, e.g. "snapshot_claims.claimant_age.between"
    asset: str
    expectation: str
    column: str | None
    description: str
    success: bool
    unexpected_count: int | None = None  # bad rows (for a row-count check: the observed count)
    element_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None  # why the check could not be evaluated

    def explain(self) -> str:
        """One line for an actuary: what failed, where, how many rows, a few examples."""
        where = f" [column {self.column}]" if self.column else ""
        head = f"{self.key} ({self.asset}) - expected: {self.description}{where}"
        if self.error:
            return f"{head}: NOT EVALUATED, {self.error}"
        if self.expectation == "expect_table_row_count_to_be_between":
            empty = " (the extract is EMPTY)" if self.unexpected_count == 0 else ""
            return f"{head}: observed {self.unexpected_count} rows{empty}"
        if self.expectation == "expect_table_columns_to_match_set":
            return f"{head}: MISSING columns {self.examples}"
        if self.expectation == "expect_column_to_have_sql_type_family":
            return f"{head}: found type {self.examples[0] if self.examples else 'unknown'}"
        count = "?" if self.unexpected_count is None else self.unexpected_count
        of = f" of {self.element_count}" if self.element_count is not None else ""
        examples = f", e.g. {self.examples}" if self.examples else ""
        return f"{head}: {count} bad rows{of}{examples}"


@dataclass
class QualityReport:
    valuation_date: dt.date
    basis: str
    suite_version: str
    checks: list[CheckResult]
    row_count: int | None  # rows in the transactions extract: pass it as previous_row_count next month
    claim_count: int | None
    artifact_uri: str | None = None  # folder with validation_results.json and data_docs/index.html
    run_id: str | None = None

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        failed = self.failures
        head = (
            f"quality gate for V={self.valuation_date} basis={self.basis} (suite v{self.suite_version}): "
            f"{len(self.checks) - len(failed)} of {len(self.checks)} checks passed"
        )
        if self.artifact_uri:
            head += f"; validation results and Data Docs in {self.artifact_uri}"
        return "\n".join([head, *[f"  FAILED {c.explain()}" for c in failed]])


class ExpectColumnToHaveSqlTypeFamily(gxe.ExpectColumnValuesToBeInTypeList):
    """The column's declared type is an instance of one of the generic SQLAlchemy types named in ``type_list``.

    GX's own type-list check resolves names in the dialect's module, where SQLite's reflected DATE and DATETIME
    match nothing; generic types (Date, DateTime, String, Numeric) judge SQLite and PostgreSQL alike.
    """

    def _validate_sqlalchemy(self, actual_column_type, expected_types_list, execution_engine):
        families = tuple(getattr(sa.types, name) for name in expected_types_list)
        if isinstance(actual_column_type, str):  # PostgreSQL: GX reports the type as text, e.g. "VARCHAR(32)"
            observed = str(actual_column_type)
            base = observed.split("(")[0].strip().lower()
            type_class = execution_engine.engine.dialect.ischema_names.get(base) or _TYPE_ALIASES.get(base)
            success = type_class is not None and issubclass(type_class, families)
        else:
            observed = type(actual_column_type).__name__
            success = isinstance(actual_column_type, families)
        return {"success": success, "result": {"observed_value": observed}}


class ExpectNoBadRows(gxe.UnexpectedRowsExpectation):
    """No row of the batch is returned by ``unexpected_rows_query``: counted and sampled in one SQL pass.

    The query returns at most ``EXAMPLE_COUNT`` example rows, each carrying the total number of bad rows in the column
    ``bad_rows`` (``count(*) OVER ()``, or a sum over duplicate groups). GX's own UnexpectedRowsExpectation runs its
    query twice (a count, then the rows); this one reads the count off the examples. ``column_list`` names the columns
    the check is about, for the message and for telling a missing column from a bad row.
    """

    column_list: list[str]
    metric_dependencies: ClassVar[tuple[str, ...]] = ("unexpected_rows_query.table",)

    def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
        rows = metrics["unexpected_rows_query.table"]
        count = int(rows[0][BAD_ROWS]) if rows else 0
        examples = [{k: v for k, v in row.items() if k != BAD_ROWS} for row in rows]
        return {
            "success": count == 0,
            "result": {"observed_value": count, "unexpected_count": count, "partial_unexpected_list": examples},
        }


BAD_ROWS = "bad_rows"


def duplicates_query(columns: list[str], recorded_after: dt.datetime | None = None) -> str:
    """Groups of rows sharing ``columns`` (NULLs left to the not-null checks): one GROUP BY, no window over the rows.

    With ``recorded_after``, only the groups holding a row recorded since then, each counted over every row of the
    batch: a semi-join on the month's few new rows instead of grouping all ten million.
    """
    cols = ", ".join(columns)
    where = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    if recorded_after is not None:
        key = f"({cols})" if len(columns) > 1 else cols
        new_rows = f"recorded_at >= '{recorded_after:%Y-%m-%d %H:%M:%S}'"
        where += f" AND {key} IN (SELECT {cols} FROM {{batch}} WHERE {new_rows})"
    return (
        f"SELECT {cols}, copies, sum(copies) OVER () AS {BAD_ROWS} FROM ("
        f"SELECT {cols}, count(*) AS copies FROM {{batch}} WHERE {where} GROUP BY {cols} HAVING count(*) > 1"
        f") AS duplicate_groups ORDER BY {cols} LIMIT {EXAMPLE_COUNT}"
    )


def bad_rows_query(columns: list[str], condition: str, order_by: str) -> str:
    """Rows meeting ``condition`` (the bad ones), counted over the whole batch, a few shown."""
    return (
        f"SELECT {', '.join(columns)}, count(*) OVER () AS {BAD_ROWS} FROM {{batch}} WHERE {condition} "
        f"ORDER BY {order_by} LIMIT {EXAMPLE_COUNT}"
    )


# Type names a dialect prints but does not list among its reflection names.
_TYPE_ALIASES = {
    "varchar": sa.String,
    "char": sa.String,
    "datetime": sa.DateTime,
    "decimal": sa.Numeric,
    "int": sa.Integer,
}


# --- the suite -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One expectation of the suite with its stable key and its meaning."""

    key: str
    asset: str
    description: str
    expectation: Any  # a great_expectations.expectations.Expectation


def _volume_bounds(previous_row_count: int | None, tolerance: float) -> tuple[int, int] | None:
    if previous_row_count is None:
        return None
    low = math.ceil(previous_row_count * (1 - tolerance) - 1e-9)
    return max(low, 0), math.floor(previous_row_count * (1 + tolerance) + 1e-9)


def build_checks(
    valuation_date: dt.date,
    basis: str,
    settings: Settings,
    previous_row_count: int | None = None,
    checked_through: dt.date | None = None,
) -> list[Check]:
    """The suite as at V: every check with its key, asset, plain-language meaning and GX expectation.

    ``checked_through`` (see ``uniqueness_checked_through``): the uniqueness checks look only at the groups holding
    a row recorded after that date; the rows recorded up to it were found unique by its own gate.
    """
    checks: list[Check] = []

    def add(key: str, asset: str, description: str, expectation_cls, **kwargs) -> None:
        expectation = expectation_cls(**kwargs, description=description, meta={"check_key": key})
        checks.append(Check(key, asset, description, expectation))

    for table, columns in REQUIRED_COLUMNS.items():
        add(
            f"{table}.columns",
            table,
            f"{table} has the required columns",
            gxe.ExpectTableColumnsToMatchSet,
            column_set=sorted(columns),
            exact_match=False,
        )
        for column, family in columns.items():
            add(
                f"{table}.{column}.type",
                table,
                f"{table}.{column} is of type {family}",
                ExpectColumnToHaveSqlTypeFamily,
                column=column,
                type_list=TYPE_FAMILIES[family],
            )

    x = "transactions_extract"
    add(ROW_COUNT_CHECK, x, "the transaction extract as at V is not empty", gxe.ExpectTableRowCountToBeBetween,
        min_value=1)  # fmt: skip
    bounds = _volume_bounds(previous_row_count, settings.volume_tolerance)
    if bounds is not None:
        add(
            f"{x}.row_count.volume",
            x,
            f"transaction count within {settings.volume_tolerance:.0%} of the previous valuation's "
            f"{previous_row_count} (between {bounds[0]} and {bounds[1]})",
            gxe.ExpectTableRowCountToBeBetween,
            min_value=bounds[0],
            max_value=bounds[1],
        )
    for column in ("transaction_id", "claim_id", "transaction_date", *AMOUNT_COLUMNS):
        add(f"{x}.{column}.not_null", x, f"{column} is not null", gxe.ExpectColumnValuesToNotBeNull, column=column)
    add(f"{x}.report_date.not_null", x, "the transaction's claim exists in claims with a report date",
        gxe.ExpectColumnValuesToNotBeNull, column="report_date")  # fmt: skip
    for column in AMOUNT_COLUMNS:
        add(
            f"{x}.{column}.bounds",
            x,
            f"{column} is finite and between {settings.amount_min:,.2f} and {settings.amount_max:,.2f}",
            gxe.ExpectColumnValuesToBeBetween,
            column=column,
            min_value=settings.amount_min,
            max_value=settings.amount_max,
        )
    # Uniqueness as GROUP BY ... HAVING count(*) > 1: GX's own uniqueness checks join every row to its group count
    # (a window or a self-join over 10M rows: 17 s and 80 s), then count again for the examples.
    since, scope = None, ""
    if checked_through is not None:
        since = end_of_day(checked_through)
        scope = f" (rows recorded after {checked_through}, whose gate passed, against every row as at V)"
    add(f"{x}.transaction_id.unique", x, f"no duplicate transaction ids{scope}", ExpectNoBadRows,
        column_list=["transaction_id"], unexpected_rows_query=duplicates_query(["transaction_id"], since))  # fmt: skip
    key_columns = ["claim_id", "transaction_date", "paid_amount"]
    add(f"{x}.claim_date_amount.unique", x, f"no duplicate (claim, transaction date, paid amount) rows{scope}",
        ExpectNoBadRows, column_list=key_columns,
        unexpected_rows_query=duplicates_query(key_columns, since))  # fmt: skip
    add(
        f"{x}.transaction_date.not_after_valuation",
        x,
        f"transaction date on or before V={valuation_date}"
        + (" (recorded by V but dated after it)" if basis == "as_recorded" else ""),
        gxe.ExpectColumnValuesToBeBetween,
        column="transaction_date",
        max_value=valuation_date,
    )
    # Column pairs as one query each (GX's pair check scans twice: the bad rows, then the non-null rows).
    pair = ["transaction_id", "claim_id", "transaction_date", "report_date"]
    add(f"{x}.transaction_date.not_before_report", x, "transaction date on or after the claim's report date",
        ExpectNoBadRows, column_list=["transaction_date", "report_date"],
        unexpected_rows_query=bad_rows_query(pair, "transaction_date < report_date", "transaction_id"))  # fmt: skip

    s = "snapshot_claims"
    add(f"{s}.row_count.nonzero", s, f"the claim snapshot for V={valuation_date} ({basis}) is not empty",
        gxe.ExpectTableRowCountToBeBetween, min_value=1)  # fmt: skip
    for column in ("claim_id", "line_of_business", "claim_type", "accident_date", "report_date"):
        add(f"{s}.{column}.not_null", s, f"{column} is not null", gxe.ExpectColumnValuesToNotBeNull, column=column)
    allowed = sorted({*CLAIM_TYPES, *settings.extra_claim_types})
    add(f"{s}.claim_type.allowed", s, f"claim type is one of {allowed}", gxe.ExpectColumnValuesToBeInSet,
        column="claim_type", value_set=allowed)  # fmt: skip
    add(f"{s}.claimant_age.between", s, "claimant age between 0 and 120", gxe.ExpectColumnValuesToBeBetween,
        column="claimant_age", min_value=0, max_value=120)  # fmt: skip
    add(f"{s}.report_date.not_before_accident", s, "report date on or after the accident date", ExpectNoBadRows,
        column_list=["report_date", "accident_date"],
        unexpected_rows_query=bad_rows_query(["claim_id", "accident_date", "report_date"],
                                             "report_date < accident_date", "claim_id"))  # fmt: skip
    add(f"{s}.report_date.not_after_valuation", s, f"report date on or before V={valuation_date}",
        gxe.ExpectColumnValuesToBeBetween, column="report_date", max_value=valuation_date)  # fmt: skip
    return checks


# --- assets --------------------------------------------------------------------------------------------------------


def _present_columns(engine: Engine, table: str) -> set[str]:
    insp = inspect(engine)
    if not insp.has_table(table):
        return set()
    return {c["name"] for c in insp.get_columns(table)}


def _compile(engine: Engine, statement) -> str:
    return str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def transactions_extract_sql(engine: Engine, valuation_date: dt.date, basis: str) -> str:
    """The transactions as at V joined to their claims, as SQL text (the body of the run's view).

    As recorded: every row recorded by the end of V, whatever its date, so that a row dated after V shows up as a
    defect instead of vanishing. Restated: rows dated by V (later rows are simply later, not defects). Columns missing
    from the source are left out here and reported by the column checks, so the query itself never fails.
    """
    t, c = schema.claim_transactions, schema.claims
    t_cols, c_cols = _present_columns(engine, t.name), _present_columns(engine, c.name)
    wanted_t = [n for n in REQUIRED_COLUMNS["claim_transactions"] if n in t_cols]
    wanted_c = [n for n in ("accident_date", "report_date") if n in c_cols]
    columns = [t.c[n] for n in wanted_t] + [c.c[n] for n in wanted_c]
    source = t.outerjoin(c, c.c.claim_id == t.c.claim_id) if "claim_id" in t_cols and "claim_id" in c_cols else t
    if not columns:
        columns = [literal_column("NULL").label("no_required_columns")]
    query = select(*columns).select_from(source)
    if basis == "as_recorded" and "recorded_at" in t_cols:
        query = query.where(t.c.recorded_at < end_of_day(valuation_date))
    elif basis == "restated" and "transaction_date" in t_cols:
        query = query.where(t.c.transaction_date <= valuation_date)
    return _compile(engine, query)


def snapshot_claims_sql(engine: Engine, valuation_date: dt.date, basis: str) -> str:
    """The claim snapshot partition for (V, basis), as SQL text (the body of the run's view)."""
    s = schema.snapshot_claims
    columns = [col for col in s.columns if col.name not in ("valuation_date", "basis")]
    query = select(*columns).where(s.c.valuation_date == valuation_date, s.c.basis == basis)
    return _compile(engine, query)


# --- running -------------------------------------------------------------------------------------------------------


def _add_datasource(context, engine_url: str):
    backend = make_url(engine_url).get_backend_name()
    if backend == "sqlite":
        return context.data_sources.add_sqlite(name="warehouse", connection_string=engine_url)
    if backend == "postgresql":
        return context.data_sources.add_postgres(name="warehouse", connection_string=engine_url)
    return context.data_sources.add_sql(name="warehouse", connection_string=engine_url)


def _examples(values: Iterable[Any]) -> list[Any]:
    out = []
    for value in values:
        if isinstance(value, dict):  # compound and pair checks: one dict per row
            value = {k: _jsonable(v) for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            value = [_jsonable(v) for v in value]
        else:
            value = _jsonable(value)
        if value not in out:
            out.append(value)
        if len(out) == EXAMPLE_COUNT:
            break
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    try:
        number = float(value)  # float or Decimal (PostgreSQL numeric, NaN included)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else str(number)


def _exception_message(result) -> str | None:
    info = result.exception_info or {}
    candidates = [info] if "raised_exception" in info else list(info.values())
    for item in candidates:
        if isinstance(item, dict) and item.get("raised_exception"):
            return str(item.get("exception_message") or "an exception was raised").splitlines()[0]
    return None


def _check_result(check: Check, result, missing: dict[str, set[str]]) -> CheckResult:
    kwargs = result.expectation_config.kwargs
    column = (
        kwargs.get("column")
        or (f"{kwargs['column_A']}, {kwargs['column_B']}" if "column_A" in kwargs else None)
        or (", ".join(kwargs["column_list"]) if "column_list" in kwargs else None)
    )
    details = result.result or {}
    out = CheckResult(
        key=check.key,
        asset=check.asset,
        expectation=result.expectation_config.type,
        column=column,
        description=check.description,
        success=bool(result.success),
    )
    if out.expectation == "expect_table_row_count_to_be_between":
        # the observed count, kept in both: next month's volume baseline is read back from element_count
        out.unexpected_count = out.element_count = details.get("observed_value")
    elif out.expectation == "expect_table_columns_to_match_set":
        out.examples = sorted(set(kwargs["column_set"]) - set(details.get("observed_value") or []))
    elif out.expectation == "expect_column_to_have_sql_type_family":
        observed = details.get("observed_value")
        out.examples = [observed] if observed is not None else []
    else:
        out.unexpected_count = details.get("unexpected_count")
        out.element_count = details.get("element_count")
        out.examples = _examples(details.get("partial_unexpected_list") or [])
    if not out.success:
        referenced = [c for c in (kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")) if c]
        referenced += list(kwargs.get("column_list") or [])
        gone = [c for c in referenced if c in missing.get(check.asset, set())]
        if gone:
            out.error = f"column {', '.join(gone)} is missing from {check.asset}"
        else:
            message = _exception_message(result)
            if message:
                out.error = message
    return out


def run_quality_gate(
    engine_url: str,
    valuation_date: dt.date,
    basis: str,
    previous_row_count: int | None,
    settings: Settings,
    artifact_dir: str | Path,
    run_id: str | None = None,
) -> QualityReport:
    """Validate the extract as at V in the warehouse and keep the results; never raises on bad data.

    ``artifact_dir`` is a folder (local path or fsspec URL) that receives ``validation_results.json`` and Data Docs
    (``data_docs/index.html``). ``previous_row_count`` is the previous valuation's ``report.row_count`` (None for
    the first valuation: the volume check is then left out).
    """
    if basis not in tuple(Basis):
        raise ValueError(f"basis {basis!r} is invalid: use one of {[b.value for b in Basis]}")
    engine = make_engine(engine_url)
    try:
        present = {t: _present_columns(engine, t) for t in REQUIRED_COLUMNS}
        missing = {t: set(cols) - present[t] for t, cols in REQUIRED_COLUMNS.items()}
        missing["transactions_extract"] = missing["claim_transactions"] | (
            {"accident_date", "report_date"} & missing["claims"]
        )
        queries = {
            "transactions_extract": transactions_extract_sql(engine, valuation_date, basis),
            "snapshot_claims": snapshot_claims_sql(engine, valuation_date, basis),
        }
        checked_through = None
        if settings.incremental_uniqueness and not missing["transactions_extract"]:
            checked_through = uniqueness_checked_through(engine, valuation_date, basis)
        views = _create_views(engine, queries)
        try:
            return _run_suite(
                engine_url, valuation_date, basis, previous_row_count, settings, artifact_dir, run_id, present,
                missing, views, checked_through,
            )  # fmt: skip
        finally:
            _drop_views(engine, views)
    finally:
        engine.dispose()


def _create_views(engine: Engine, queries: dict[str, str]) -> dict[str, str]:
    """One view per derived asset, for this run only (dropped when the run ends).

    GX reads a query asset's column names by executing the whole query (psycopg2 then buffers every row: 53 s and
    2.5 GB for 10M transactions); a view is a table asset whose columns come from the catalogue, with no scan.
    """
    token = uuid.uuid4().hex[:12]
    views = {asset: f"quality_{asset}_{token}" for asset in queries}
    with engine.begin() as conn:
        for asset, sql in queries.items():
            conn.exec_driver_sql(f'CREATE VIEW "{views[asset]}" AS {sql}')
    return views


def _drop_views(engine: Engine, views: dict[str, str]) -> None:
    with engine.begin() as conn:
        for name in views.values():
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}"')


def _run_suite(
    engine_url: str,
    valuation_date: dt.date,
    basis: str,
    previous_row_count: int | None,
    settings: Settings,
    artifact_dir: str | Path,
    run_id: str | None,
    present: dict[str, set[str]],
    missing: dict[str, set[str]],
    views: dict[str, str],
    checked_through: dt.date | None,
) -> QualityReport:
    artifact_uri = str(artifact_dir)
    local_dir = artifacts.writable_dir(artifact_uri)

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
    datasource = _add_datasource(context, engine_url)
    checks = build_checks(valuation_date, basis, settings, previous_row_count, checked_through)
    tag = f"{valuation_date.isoformat()}_{basis}"
    batches = {}
    for asset_name in ("claims", "claim_transactions", "transactions_extract", "snapshot_claims"):
        if asset_name in views:
            asset = datasource.add_table_asset(name=asset_name, table_name=views[asset_name])
        else:
            if not present[asset_name]:
                raise QualityGateError(f"source table {asset_name} does not exist in the warehouse")
            asset = datasource.add_table_asset(name=asset_name, table_name=asset_name)
        batches[asset_name] = asset.add_batch_definition_whole_table(f"{asset_name}_{tag}")

    def validate(name: str, selected: list[Check], result_format: dict):
        definitions = []
        for asset_name, batch in batches.items():
            asset_checks = [c for c in selected if c.asset == asset_name]
            if not asset_checks:
                continue
            suite = context.suites.add(
                gx.ExpectationSuite(name=f"reserving_{asset_name}_{name}", meta={"suite_version": SUITE_VERSION})
            )
            for check in asset_checks:
                suite.add_expectation(check.expectation)
            definition = gx.ValidationDefinition(name=f"{asset_name}_{name}_{tag}", data=batch, suite=suite)
            definitions.append(context.validation_definitions.add(definition))
        checkpoint = gx.Checkpoint(
            name=f"reserving_quality_{name}_{tag}", validation_definitions=definitions, result_format=result_format
        )
        return list(context.checkpoints.add(checkpoint).run().run_results.values())

    # Pass 1 counts bad rows without fetching examples: for a passing check, an example query is a full scan.
    by_key = {c.key: c for c in checks}
    validations = validate(f"v{SUITE_VERSION}", checks, {"result_format": "BASIC", "partial_unexpected_count": 0})
    results = [
        _check_result(by_key[r.expectation_config.meta["check_key"]], r, missing)
        for validation in validations
        for r in validation.results
    ]
    # Pass 2 fetches a few examples for the failed row-level checks only (fresh expectation objects, same suite code);
    # the query checks brought theirs in pass 1.
    needs_examples = {
        r.key
        for r in results
        if not r.success and not r.error and r.element_count is not None and r.expectation != "expect_no_bad_rows"
    }
    details = []
    if needs_examples:
        fresh = build_checks(valuation_date, basis, settings, previous_row_count, checked_through)
        again = [c for c in fresh if c.key in needs_examples]
        details = validate(
            f"v{SUITE_VERSION}_failure_examples", again, {"result_format": "SUMMARY", "partial_unexpected_count": 20}
        )
        examples = {
            r.expectation_config.meta["check_key"]: _examples(r.result.get("partial_unexpected_list") or [])
            for validation in details
            for r in validation.results
        }
        for r in results:
            r.examples = examples.get(r.key, r.examples)
    context.build_data_docs(site_names=[DOCS_SITE])  # once for every validation, not once per validation action
    order = {c.key: i for i, c in enumerate(checks)}
    results.sort(key=lambda r: order[r.key])
    serialised = [v.to_json_dict() for v in validations]
    serialised_details = [v.to_json_dict() for v in details]
    (local_dir / "validation_results.json").write_text(
        json.dumps(
            {
                "valuation_date": valuation_date.isoformat(),
                "basis": basis,
                "suite_version": SUITE_VERSION,
                "run_id": run_id,
                "success": all(r.success for r in results),
                "validations": serialised,
                "failure_examples": serialised_details,
            },
            indent=2,
            default=str,
        )
    )
    if not artifacts.is_local(artifact_uri):  # uploaded: the temporary local copy goes
        artifacts.publish_dir(local_dir, artifact_uri)
        shutil.rmtree(local_dir, ignore_errors=True)

    by_check = {r.key: r for r in results}
    row_count = by_check.get(ROW_COUNT_CHECK)
    claim_count = by_check.get("snapshot_claims.row_count.nonzero")
    asset_rows = {"transactions_extract": row_count, "snapshot_claims": claim_count}
    for r in results:  # "N bad rows of M" for the query checks too
        if r.expectation == "expect_no_bad_rows" and asset_rows.get(r.asset) is not None and not r.error:
            r.element_count = asset_rows[r.asset].element_count
    report = QualityReport(
        valuation_date=valuation_date,
        basis=basis,
        suite_version=SUITE_VERSION,
        checks=results,
        row_count=row_count.unexpected_count if row_count else None,
        claim_count=claim_count.unexpected_count if claim_count else None,
        artifact_uri=artifact_uri,
        run_id=run_id,
    )
    log.info("%s", report.summary())
    return report


def raise_for_failures(report: QualityReport, alert: Callable[[QualityReport, str], None] | None = None) -> None:
    """Stop the run when a check failed: raise QualityGateError naming each failure (after calling ``alert``).

    ``alert`` is the hook for notifying the actuary (the reporting issue adds the channels); it gets the report and
    the message that the exception will carry.
    """
    if report.success:
        return
    message = report.summary()
    if alert is not None:
        alert(report, message)
    raise QualityGateError(message, report)


def _previous_gate(engine: Engine, valuation_date: dt.date, basis: str):
    """The row-count result the gate stored for the month end before V (None: never validated)."""
    q = schema.quality_results
    with engine.connect() as conn:
        return conn.execute(
            select(q.c.gate_success, q.c.suite_version, q.c.element_count).where(
                q.c.valuation_date == previous_month_end(valuation_date),
                q.c.basis == basis,
                q.c.check_key == ROW_COUNT_CHECK,
            )
        ).one_or_none()


def previous_row_count(engine: Engine, valuation_date: dt.date, basis: str) -> int | None:
    """The volume baseline: rows in the transactions extract of the month end before V, as the gate stored them.

    None when that month was never validated or its extract was empty (no baseline: the volume check is left out).
    """
    row = _previous_gate(engine, valuation_date, basis)
    return int(row.element_count) if row is not None and row.element_count else None


def uniqueness_checked_through(engine: Engine, valuation_date: dt.date, basis: str) -> dt.date | None:
    """The previous month end V' whose rows need no second uniqueness check, or None to check every row.

    As recorded, the extract of V is the extract of V' plus the rows recorded since. When V''s gate passed on this
    suite version and the rows recorded by V' are still the ones it counted, a duplicate can only involve a new
    row. A changed count (history rewritten at the source) falls back to the full check with a warning; an edit
    in place that keeps the count is not seen: set ``incremental_uniqueness`` false to check every row each month.
    """
    if basis != "as_recorded":  # latest knowledge: rows dated by V' may have arrived after V''s gate
        return None
    row = _previous_gate(engine, valuation_date, basis)
    if row is None or not row.gate_success or row.suite_version != SUITE_VERSION or row.element_count is None:
        return None
    previous, t = previous_month_end(valuation_date), schema.claim_transactions
    with engine.connect() as conn:
        now = conn.execute(
            select(sa.func.count()).select_from(t).where(t.c.recorded_at < end_of_day(previous))
        ).scalar_one()
    if now != row.element_count:
        log.warning(
            "rows recorded by %s changed since its gate (%d then, %d now): checking uniqueness over every row",
            previous,
            row.element_count,
            now,
        )
        return None
    return previous


def store_quality_results(engine: Engine, report: QualityReport) -> int:
    """Replace the quality_results rows of (V, basis) with this report's, in one transaction. Returns the row count."""
    t = schema.quality_results
    rows = [
        {
            "valuation_date": report.valuation_date,
            "basis": report.basis,
            "check_key": c.key,
            "asset": c.asset,
            "expectation": c.expectation,
            "column": c.column,
            "description": c.description,
            "success": c.success,
            "unexpected_count": c.unexpected_count,
            "element_count": c.element_count,
            "examples": json.dumps(c.examples, default=str),
            "error": c.error,
            "suite_version": report.suite_version,
            "gate_success": report.success,
            "artifact_uri": report.artifact_uri,
            "run_id": report.run_id,
        }
        for c in report.checks
    ]
    with engine.begin() as conn:
        conn.execute(delete(t).where(and_(t.c.valuation_date == report.valuation_date, t.c.basis == report.basis)))
        if rows:
            conn.execute(t.insert(), rows)
    return len(rows)

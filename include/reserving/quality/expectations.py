"""Great Expectations for the suite's checks: the two of this package's own, and ``expectation``, which turns a
check of the suite (plain data) into a GX expectation. Importing this module imports GX: only the runner does.
"""

from __future__ import annotations

from typing import ClassVar

import great_expectations.expectations as gxe
import sqlalchemy as sa
from great_expectations.render import LegacyDiagnosticRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer

from include.reserving.quality.queries import BAD_ROWS
from include.reserving.quality.suite import Check

# Type names a dialect prints but does not list among its reflection names.
_TYPE_ALIASES = {
    "varchar": sa.String,
    "char": sa.String,
    "datetime": sa.DateTime,
    "decimal": sa.Numeric,
    "int": sa.Integer,
}


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

    The query (``queries.py``) returns at most ``EXAMPLE_COUNT`` example rows, each carrying the total number of bad
    rows in the column ``bad_rows`` (``count(*) OVER ()``, or a sum over duplicate groups). GX's own
    UnexpectedRowsExpectation runs its query twice (a count, then the rows); this one reads the count off the
    examples. ``column_list`` names the columns the check is about, for the message and for telling a missing column
    from a bad row.
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

    @classmethod
    @renderer(renderer_type=LegacyDiagnosticRendererType.UNEXPECTED_STATEMENT)
    def _diagnostic_unexpected_statement_renderer(cls, configuration=None, result=None, runtime_configuration=None):
        """The bad-row count alone: GX's statement wants a share of all rows, which this check never counts (the
        missing ``unexpected_percent`` made Data Docs log a KeyError traceback for every failed check)."""
        count = (result.result or {}).get("unexpected_count") if result is not None else None
        if result is None or result.success or not count or (result.exception_info or {}).get("raised_exception"):
            return super()._diagnostic_unexpected_statement_renderer(configuration, result, runtime_configuration)
        return [
            RenderedStringTemplateContent(
                content_block_type="string_template",
                string_template={
                    "template": "$unexpected_count bad rows found.",
                    "params": {"unexpected_count": count},
                    "tag": "strong",
                    "styling": {"classes": ["text-danger"]},
                },
            )
        ]


# Every expectation type the suite names, by GX's type name.
CLASSES = {
    cls.expectation_type: cls
    for cls in (
        gxe.ExpectTableColumnsToMatchSet,
        gxe.ExpectTableRowCountToBeBetween,
        gxe.ExpectColumnValuesToNotBeNull,
        gxe.ExpectColumnValuesToBeBetween,
        gxe.ExpectColumnValuesToBeInSet,
        ExpectColumnToHaveSqlTypeFamily,
        ExpectNoBadRows,
    )
}


def expectation(check: Check) -> gxe.Expectation:
    """A new GX expectation for ``check``, carrying its key (results are matched back to checks by it)."""
    return CLASSES[check.expectation](**check.kwargs, description=check.description, meta={"check_key": check.key})

"""The source data contract as data, and what a breach of it says (pure: no database, no pandas).

The contract (``docs/DATA_CONTRACT.md``) covers the source tables of ``schema.SOURCE_TABLES``: each table's columns
with their SQL type family and nullability (derived from the schema, so there is one place), its unique keys, and
the rules the pipeline's SQL relies on (one accident date and one line per claim, amounts that fit numeric(18,2)).
``warehouse/source.py`` reads what the warehouse holds; the ``input.contract`` task raises :class:`ContractViolation`
naming every breach before anything reads the data, so no raw database or pandas error reaches the operator.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, DateTime, Float, Integer, Numeric, String
from sqlalchemy.types import TypeEngine

from include.reserving import schema

EXAMPLE_COUNT = 5
DOCUMENT = "docs/DATA_CONTRACT.md"
# numeric(18,2): 16 digits before the point; a larger amount overflows the warehouse's money columns.
AMOUNT_LIMIT = 10**16


class Family(StrEnum):
    """SQL type families: what the pipeline's SQL needs from a column, whatever the database calls its type."""

    TEXT = "text"
    INTEGER = "integer"
    NUMERIC = "numeric"
    FLOAT = "float"
    DATE = "date"
    TIMESTAMP = "timestamp"


# Declared types each family accepts (PostgreSQL: declared types are enforced, so they are what is checked).
ACCEPTS = {
    Family.TEXT: {Family.TEXT},
    Family.INTEGER: {Family.INTEGER},
    Family.NUMERIC: {Family.NUMERIC, Family.INTEGER},
    Family.FLOAT: {Family.FLOAT, Family.NUMERIC, Family.INTEGER},
    Family.DATE: {Family.DATE},
    Family.TIMESTAMP: {Family.TIMESTAMP},
}

# What each family's values must look like, in an operator's words (SQLite stores anything: values are checked).
VALUE_FORM = {
    Family.TEXT: "text",
    Family.INTEGER: "whole numbers",
    Family.NUMERIC: "numbers (not text)",
    Family.FLOAT: "numbers (not text)",
    Family.DATE: "dates written YYYY-MM-DD",
    Family.TIMESTAMP: "timestamps written YYYY-MM-DD HH:MM:SS",
}

# The schema leaves these nullable so that a defective extract still loads (the tests load such extracts); the
# pipeline's SQL cannot place a claim without them, so the contract requires them.
REQUIRED_BEYOND_SCHEMA = {"claims": ("accident_date", "report_date")}
# What a claims column named by the setting segment_by must hold (the schema lets it be NULL otherwise)
SEGMENT_EXPECTED = "a value on every claim (a segment attribute: setting segment_by)"
# Tables the pipeline runs without (their checks apply when they exist).
OPTIONAL_TABLES = ("finance_control_totals",)
# Columns whose values must be the first day of a month.
FIRST_OF_MONTH = {"finance_control_totals": ("month",)}
# Columns that identify a row in examples.
ROW_LABELS = {
    "claims": ("claim_id",),
    "claim_transactions": ("transaction_id", "claim_id"),
    "earned_exposure": ("line_of_business", "month"),
    "finance_control_totals": ("line_of_business", "month"),
}
# Per claim exactly one of each (the claims table may be a view without a primary key).
ONE_PER_CLAIM = ("accident_date", "line_of_business")


def family_of(sql_type: TypeEngine) -> Family | None:
    """The family of a SQLAlchemy type (declared or reflected); None for a type the contract has no family for."""
    for cls, family in (
        (Float, Family.FLOAT),  # before Numeric: Float is a Numeric
        (Numeric, Family.NUMERIC),
        (Integer, Family.INTEGER),
        (DateTime, Family.TIMESTAMP),
        (Date, Family.DATE),
        (String, Family.TEXT),
    ):
        if isinstance(sql_type, cls):
            return family
    return None


@dataclass(frozen=True)
class ColumnContract:
    name: str
    family: Family
    nullable: bool
    is_amount: bool  # money: must fit numeric(18,2)


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[ColumnContract, ...]
    unique_key: tuple[str, ...]
    optional: bool

    def column(self, name: str) -> ColumnContract:
        return next(c for c in self.columns if c.name == name)

    @property
    def labels(self) -> tuple[str, ...]:
        return ROW_LABELS.get(self.name, ())


def _table_contract(table) -> TableContract:
    required = REQUIRED_BEYOND_SCHEMA.get(table.name, ())
    columns = tuple(
        ColumnContract(
            name=col.name,
            family=family_of(col.type),
            nullable=col.nullable and col.name not in required,
            is_amount=isinstance(col.type, Numeric) and not isinstance(col.type, Float),
        )
        for col in table.columns
    )
    return TableContract(
        name=table.name,
        columns=columns,
        unique_key=tuple(col.name for col in table.primary_key.columns),
        optional=table.name in OPTIONAL_TABLES,
    )


TABLES: tuple[TableContract, ...] = tuple(_table_contract(t) for t in schema.SOURCE_TABLES)


# --- what a breach says ----------------------------------------------------------------------------------------

# rule -> what to do, in an operator's words
FIXES = {
    "table": "load the table, or name the source view as the contract does",
    "column": "rename the column in the extract (or in a view over it) to the contract's name",
    "type": "cast the column to the contract's type in the extract (e.g. numeric(18,2) for amounts, date for dates)",
    "values": "correct the values in the extract, or cast them to the contract's type",
    "not_null": "fill the values in the extract, or drop the rows it should not contain",
    "segment_attribute": "fill the values in the extract, or take the column out of the setting segment_by",
    "unique": "remove the duplicate rows from the extract",
    "one_per_claim": "keep one row per claim in claims: one accident date and one line of business each",
    "range": "amounts must fit numeric(18,2) (below 10^16 in absolute value): correct the units or the values",
    "first_of_month": "state each month as its first day (e.g. 2024-01-01)",
}


@dataclass(frozen=True)
class Breach:
    """One breach of the contract: where, what was expected, what was found, how many rows and a few examples."""

    rule: str  # a key of FIXES
    table: str
    column: str | None
    expected: str
    found: str
    count: int | None = None
    examples: tuple[Any, ...] = ()

    def explain(self) -> str:
        """One line for an operator: table.column, expected, found, examples, what to do."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        examples = f", e.g. {list(self.examples)}" if self.examples else ""
        return f"{where}: expected {self.expected}; found {self.found}{examples}. To fix: {FIXES[self.rule]}"


@dataclass
class ContractReport:
    """The contract check's outcome; ``failures`` is what the failure alert lists (see notify)."""

    breaches: list[Breach] = field(default_factory=list)
    tables_checked: list[str] = field(default_factory=list)
    failure_heading = "Contract violations"

    @property
    def success(self) -> bool:
        return not self.breaches

    @property
    def failures(self) -> list[Breach]:
        return self.breaches

    def summary(self) -> str:
        head = f"source data contract ({DOCUMENT}) checked on {', '.join(self.tables_checked) or 'no table'}"
        if self.success:
            return head + ": no violation"
        lines = [f"{head}: {len(self.breaches)} violation(s); nothing was read. Fix the extract and re-run the run."]
        return "\n".join([*lines, *[f"  VIOLATION {b.explain()}" for b in self.breaches]])


class ContractViolation(RuntimeError):
    """The source tables break the data contract; ``report`` lists every breach."""

    def __init__(self, report: ContractReport):
        super().__init__(report.summary())
        self.report = report


def raise_for_breaches(report: ContractReport) -> None:
    if not report.success:
        raise ContractViolation(report)


# --- structure: tables, columns, declared types (pure, from what the inspector found) ---------------------------


def structure_breaches(
    found: dict[str, dict[str, Family | None] | None], check_declared_types: bool
) -> tuple[list[Breach], dict[str, dict[str, Family | None]]]:
    """Breaches of tables, columns and declared types; and per table the contract columns whose values can be read,
    with their declared family.

    ``found``: per contract table, its columns with their declared family (None: a family the contract does not
    know), or None when the table is absent. ``check_declared_types``: PostgreSQL enforces declared types, so they
    are checked there; SQLite stores anything in any column, so its values are checked instead (``source``).
    """
    breaches, readable = [], {}
    for contract in TABLES:
        columns = found.get(contract.name)
        if columns is None:
            if not contract.optional:
                breaches.append(Breach("table", contract.name, None, "the table to exist", "no such table or view"))
            continue
        readable[contract.name] = {}
        for col in contract.columns:
            if col.name not in columns:
                extra = sorted(set(columns) - {c.name for c in contract.columns})
                hint = f" (columns the contract does not know: {', '.join(extra)})" if extra else ""
                breaches.append(
                    Breach("column", contract.name, col.name, f"a column {col.name} ({col.family})", "none" + hint)
                )
                continue
            declared = columns[col.name]
            if check_declared_types and declared not in ACCEPTS[col.family]:
                breaches.append(
                    Breach(
                        "type",
                        contract.name,
                        col.name,
                        f"type family {col.family}",
                        f"declared type {declared or 'of no known family'}",
                    )
                )
                continue
            readable[contract.name][col.name] = declared
    return breaches, readable


def examples(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Up to EXAMPLE_COUNT example rows as JSON-able dicts (a single value when the row has one column)."""
    out = []
    for row in rows[:EXAMPLE_COUNT]:
        clean = {k: _plain(v) for k, v in row.items()}
        out.append(next(iter(clean.values())) if len(clean) == 1 else clean)
    return tuple(out)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:
        number = float(value)  # Decimal (NaN included)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else str(number)

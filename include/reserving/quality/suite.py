"""The suite: every check of the gate as one row of a table, built for valuation date V with the settings.

A row names its stable key (stored results and next month's baseline are keyed by it), the asset it judges, what it
expects in an actuary's words, the Great Expectations expectation type and that expectation's arguments. Values
known only for a run (V, the basis, settings, the volume baseline, the uniqueness scope) stand in the table as
``{name}`` in descriptions and ``Term`` in arguments; ``build_checks`` fills them in. Plain data: the runner turns
each check into a GX expectation (``expectations.expectation``), so this module imports no GX.

Four assets:

- ``claims`` and ``claim_transactions`` (the source tables): required columns present with the expected types
  (metadata only, no scan);
- ``transactions_extract`` (a view made for the run): claim_transactions joined to claims, as at V: ids, dates and
  amounts not null, amounts finite and within bounds, no duplicate transaction ids or (claim, date, amount) rows,
  report date <= transaction date <= V, row count above zero and within the tolerance of the previous valuation's
  (uniqueness, after a clean gate at the previous month end V', only for the groups holding a row recorded after
  V': see ``decisions.uniqueness_checked_through``);
- ``snapshot_claims`` (a view of the partition for (V, basis)): claim id, dates, line and type not null, claim type
  allowed, claimant age 0-120, accident date <= report date <= V, at least one claim.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from include.reserving.config import Settings
from include.reserving.dates import end_of_day
from include.reserving.domain import CLAIM_TYPES, Basis
from include.reserving.quality.queries import bad_rows_query, duplicates_query

# Bump when a check is added, removed or changed: stored results name the suite version they were judged by.
SUITE_VERSION = "2"
EXTRACT, SNAPSHOT = "transactions_extract", "snapshot_claims"  # the run's two views
# The extract's rows recorded since the previous clean gate: where the row-level checks look after a clean month
RECENT = "transactions_extract_recent"
ROW_COUNT_CHECK = "transactions_extract.row_count.nonzero"  # its element_count is next month's volume baseline
CLAIM_COUNT_CHECK = "snapshot_claims.row_count.nonzero"
VOLUME_CHECK = "transactions_extract.row_count.volume"

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

# The expectation types the suite uses (GX's names; the last two are this package's own, in expectations.py).
COLUMNS_MATCH = "expect_table_columns_to_match_set"
ROW_COUNT = "expect_table_row_count_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"
IN_SET = "expect_column_values_to_be_in_set"
SQL_TYPE = "expect_column_to_have_sql_type_family"
NO_BAD_ROWS = "expect_no_bad_rows"


@dataclass(frozen=True)
class Term:
    """An argument known only when the suite is built for V: the run's value of that name (see ``run_values``)."""

    name: str


@dataclass(frozen=True)
class Duplicates:
    """The duplicates query over ``columns``: every row, or only the groups holding a row recorded since the
    previous clean gate (the run's ``recorded_after``)."""

    columns: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One check: stable key, asset, plain-language meaning, GX expectation type and its arguments."""

    key: str
    asset: str
    description: str  # in the table: a template over the run's values
    expectation: str
    kwargs: Mapping[str, Any]
    requires: str | None = None  # a term without which the check is left out
    # judges each row on its own (a row found good stays good): after a clean gate at the previous month end, only
    # the rows recorded since are judged (the run's ``RECENT`` view; see ``build_checks``)
    row_level: bool = False

    @property
    def columns(self) -> list[str]:
        """The columns the check reads (to tell a missing column from a bad row)."""
        single = [self.kwargs["column"]] if "column" in self.kwargs else []
        return single + list(self.kwargs.get("column_list", []))

    @property
    def column(self) -> str | None:
        """The column(s) as the report names them."""
        return ", ".join(self.columns) or None


KEY_COLUMNS = ["claim_id", "transaction_date", "paid_amount"]  # a double posting repeats these under a new id

# Uniqueness as GROUP BY ... HAVING count(*) > 1 (Duplicates): GX's own uniqueness checks join every row to its group
# count (a window or a self-join over 10M rows: 17 s and 80 s), then count again for the examples. Column pairs as
# one query each: GX's pair check scans twice (the bad rows, then the non-null rows).
CHECKS: tuple[Check, ...] = (
    *(
        check
        for table, columns in REQUIRED_COLUMNS.items()
        for check in (
            Check(
                f"{table}.columns",
                table,
                f"{table} has the required columns",
                COLUMNS_MATCH,
                {"column_set": sorted(columns), "exact_match": False},
            ),
            *(
                Check(
                    f"{table}.{column}.type",
                    table,
                    f"{table}.{column} is of type {family}",
                    SQL_TYPE,
                    {"column": column, "type_list": TYPE_FAMILIES[family]},
                )
                for column, family in columns.items()
            ),
        )
    ),
    Check(ROW_COUNT_CHECK, EXTRACT, "the transaction extract as at V is not empty", ROW_COUNT, {"min_value": 1}),
    Check(
        VOLUME_CHECK,
        EXTRACT,
        "transaction count within {volume_tolerance:.0%} of the previous valuation's {baseline} "
        "(between {volume_min} and {volume_max})",
        ROW_COUNT,
        {"min_value": Term("volume_min"), "max_value": Term("volume_max")},
        requires="baseline",
    ),
    *(
        Check(
            f"{EXTRACT}.{column}.not_null",
            EXTRACT,
            f"{column} is not null",
            NOT_NULL,
            {"column": column},
            row_level=True,
        )
        for column in ("transaction_id", "claim_id", "transaction_date", *AMOUNT_COLUMNS)
    ),
    Check(
        f"{EXTRACT}.report_date.not_null",
        EXTRACT,
        "the transaction's claim exists in claims with a report date",
        NOT_NULL,
        {"column": "report_date"},
        row_level=True,
    ),
    *(
        Check(
            f"{EXTRACT}.{column}.bounds",
            EXTRACT,
            column + " is finite and between {amount_min:,.2f} and {amount_max:,.2f}",
            BETWEEN,
            {"column": column, "min_value": Term("amount_min"), "max_value": Term("amount_max")},
            row_level=True,
        )
        for column in AMOUNT_COLUMNS
    ),
    Check(
        f"{EXTRACT}.transaction_id.unique",
        EXTRACT,
        "no duplicate transaction ids{scope}",
        NO_BAD_ROWS,
        {"column_list": ["transaction_id"], "unexpected_rows_query": Duplicates(("transaction_id",))},
    ),
    Check(
        f"{EXTRACT}.claim_date_amount.unique",
        EXTRACT,
        "no duplicate (claim, transaction date, paid amount) rows{scope}",
        NO_BAD_ROWS,
        {"column_list": KEY_COLUMNS, "unexpected_rows_query": Duplicates(tuple(KEY_COLUMNS))},
    ),
    Check(
        f"{EXTRACT}.transaction_date.not_after_valuation",
        EXTRACT,
        "transaction date on or before V={valuation_date}{dated_after_note}",
        BETWEEN,
        {"column": "transaction_date", "max_value": Term("valuation_date")},
        row_level=True,
    ),
    Check(
        f"{EXTRACT}.transaction_date.not_before_report",
        EXTRACT,
        "transaction date on or after the claim's report date",
        NO_BAD_ROWS,
        {
            "column_list": ["transaction_date", "report_date"],
            "unexpected_rows_query": bad_rows_query(
                ["transaction_id", "claim_id", "transaction_date", "report_date"],
                "transaction_date < report_date",
                "transaction_id",
            ),
        },
        row_level=True,
    ),
    Check(
        CLAIM_COUNT_CHECK,
        SNAPSHOT,
        "the claim snapshot for V={valuation_date} ({basis}) is not empty",
        ROW_COUNT,
        {"min_value": 1},
    ),
    *(
        Check(f"{SNAPSHOT}.{column}.not_null", SNAPSHOT, f"{column} is not null", NOT_NULL, {"column": column})
        for column in ("claim_id", "line_of_business", "claim_type", "accident_date", "report_date")
    ),
    Check(
        f"{SNAPSHOT}.claim_type.allowed",
        SNAPSHOT,
        "claim type is one of {claim_types}",
        IN_SET,
        {"column": "claim_type", "value_set": Term("claim_types")},
    ),
    Check(
        f"{SNAPSHOT}.claimant_age.between",
        SNAPSHOT,
        "claimant age between 0 and 120",
        BETWEEN,
        {"column": "claimant_age", "min_value": 0, "max_value": 120},
    ),
    Check(
        f"{SNAPSHOT}.report_date.not_before_accident",
        SNAPSHOT,
        "report date on or after the accident date",
        NO_BAD_ROWS,
        {
            "column_list": ["report_date", "accident_date"],
            "unexpected_rows_query": bad_rows_query(
                ["claim_id", "accident_date", "report_date"], "report_date < accident_date", "claim_id"
            ),
        },
    ),
    Check(
        f"{SNAPSHOT}.report_date.not_after_valuation",
        SNAPSHOT,
        "report date on or before V={valuation_date}",
        BETWEEN,
        {"column": "report_date", "max_value": Term("valuation_date")},
    ),
)

ASSETS = tuple(dict.fromkeys(check.asset for check in CHECKS))  # in the table's order


def _volume_bounds(baseline: int | None, tolerance: float) -> tuple[int | None, int | None]:
    if baseline is None:
        return None, None
    low = math.ceil(baseline * (1 - tolerance) - 1e-9)
    return max(low, 0), math.floor(baseline * (1 + tolerance) + 1e-9)


def run_values(
    valuation_date: dt.date,
    basis: str,
    settings: Settings,
    baseline: int | None = None,
    checked_through: dt.date | None = None,
) -> dict[str, Any]:
    """The run's values the table refers to, by name."""
    volume_min, volume_max = _volume_bounds(baseline, settings.volume_tolerance)
    return {
        "valuation_date": valuation_date,
        "basis": basis,
        "dated_after_note": " (recorded by V but dated after it)" if basis == Basis.AS_RECORDED else "",
        "amount_min": settings.amount_min,
        "amount_max": settings.amount_max,
        "claim_types": sorted({*CLAIM_TYPES, *settings.extra_claim_types}),
        "baseline": baseline,
        "volume_tolerance": settings.volume_tolerance,
        "volume_min": volume_min,
        "volume_max": volume_max,
        "recorded_after": None if checked_through is None else end_of_day(checked_through),
        "scope": ""
        if checked_through is None
        else f" (rows recorded after {checked_through}, whose gate passed, against every row as at V)",
        "row_scope": ""
        if checked_through is None
        else f" (rows recorded after {checked_through}; the rows before passed its gate)",
    }


def _resolve(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, Term):
        return values[value.name]
    if isinstance(value, Duplicates):
        return duplicates_query(list(value.columns), values["recorded_after"])
    return value


def build_checks(
    valuation_date: dt.date,
    basis: str,
    settings: Settings,
    baseline: int | None = None,
    checked_through: dt.date | None = None,
) -> list[Check]:
    """The suite as at V: the table's checks with the run's values filled in.

    ``baseline``: the previous valuation's extract row count (None: the volume check is left out).
    ``checked_through`` (see ``decisions.uniqueness_checked_through``): the uniqueness checks look only at the groups
    holding a row recorded after that date; the rows recorded up to it were found unique by its own gate, and every
    row-level check of them passed there, so those checks judge only the rows recorded since (the same premise: the
    source is append-only and still holds the rows that gate counted).
    """
    values = run_values(valuation_date, basis, settings, baseline, checked_through)
    return [
        replace(
            check,
            description=check.description.format(**values) + (values["row_scope"] if check.row_level else ""),
            kwargs={name: _resolve(value, values) for name, value in check.kwargs.items()},
        )
        for check in CHECKS
        if check.requires is None or values[check.requires] is not None
    ]

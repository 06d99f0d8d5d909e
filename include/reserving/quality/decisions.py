"""The gate's decisions as pure functions of what it stored and found (no warehouse, no Great Expectations): next
month's volume baseline, whether uniqueness may be checked on the new rows only, which columns are missing where,
which failed checks need a second pass for examples.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from include.reserving.domain import Basis
from include.reserving.quality.report import CheckResult
from include.reserving.quality.suite import NO_BAD_ROWS, REQUIRED_COLUMNS, SUITE_VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviousGate:
    """What the gate stored for the month end V' before V: its verdict, suite version and extract row count."""

    valuation_date: dt.date
    success: bool
    suite_version: str
    row_count: int | None


def previous_gate(row: Mapping[str, Any] | None) -> PreviousGate | None:
    """The stored row-count result of V' (``quality_results`` columns) as a PreviousGate; None: never validated."""
    if row is None:
        return None
    count = row["element_count"]
    return PreviousGate(row["valuation_date"], bool(row["gate_success"]), row["suite_version"], count)


def volume_baseline(previous: PreviousGate | None) -> int | None:
    """Rows in V''s transactions extract; None when V' was never validated or its extract was empty (no check)."""
    return int(previous.row_count) if previous is not None and previous.row_count else None


def uniqueness_checked_through(
    previous: PreviousGate | None, basis: str, recorded_by: Callable[[dt.date], int]
) -> dt.date | None:
    """The previous month end V' whose rows need no second uniqueness check, or None to check every row.

    As recorded, the extract of V is the extract of V' plus the rows recorded since. When V''s gate passed on this
    suite version and the rows recorded by V' (``recorded_by(V')``, asked only then) are still the ones it counted,
    a duplicate can only involve a new row. A changed count (history rewritten at the source) falls back to the full
    check with a warning; an edit in place that keeps the count is not seen: set ``incremental_uniqueness`` false to
    check every row each month.
    """
    if basis != Basis.AS_RECORDED:  # latest knowledge: rows dated by V' may have arrived after V''s gate
        return None
    if previous is None or not previous.success or previous.suite_version != SUITE_VERSION:
        return None
    if previous.row_count is None:
        return None
    now = recorded_by(previous.valuation_date)
    if now != previous.row_count:
        log.warning(
            "rows recorded by %s changed since its gate (%d then, %d now): checking uniqueness over every row",
            previous.valuation_date,
            previous.row_count,
            now,
        )
        return None
    return previous.valuation_date


def missing_columns(present: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Required columns missing per asset, given the columns present per source table.

    The transactions extract lacks what claim_transactions lacks and the claim dates it joins from claims.
    """
    missing = {table: set(columns) - present[table] for table, columns in REQUIRED_COLUMNS.items()}
    missing["transactions_extract"] = missing["claim_transactions"] | (
        {"accident_date", "report_date"} & missing["claims"]
    )
    return missing


def needs_examples(results: Iterable[CheckResult]) -> set[str]:
    """Keys of the failed row-level checks whose examples a second pass fetches (query checks brought theirs)."""
    return {
        r.key
        for r in results
        if not r.success and not r.error and r.element_count is not None and r.expectation != NO_BAD_ROWS
    }

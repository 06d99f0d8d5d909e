"""What a gate run found: one ``CheckResult`` per check, the ``QualityReport`` of the run, and the error that stops
the run. Plain Python (no Great Expectations): the failure callback and the report read these names.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from include.reserving.quality.queries import EXAMPLE_COUNT
from include.reserving.quality.suite import COLUMNS_MATCH, ROW_COUNT, SQL_TYPE


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
        if self.expectation == ROW_COUNT:
            empty = " (the extract is EMPTY)" if self.unexpected_count == 0 else ""
            return f"{head}: observed {self.unexpected_count} rows{empty}"
        if self.expectation == COLUMNS_MATCH:
            return f"{head}: MISSING columns {self.examples}"
        if self.expectation == SQL_TYPE:
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
    row_count: int | None  # rows in the transactions extract: next month's volume baseline
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


def examples(values: Iterable[Any]) -> list[Any]:
    """Up to ``EXAMPLE_COUNT`` distinct bad values as JSON-able values (a dict per row for pair and query checks)."""
    out = []
    for value in values:
        if isinstance(value, dict):
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

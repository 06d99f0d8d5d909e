"""Reconciliation of the month's extract to the finance control totals (pure: frames in, rows out).

For valuation date V the extract's side is, per line of business, the sum of ``paid_amount`` and of
``case_reserve_change`` over the transactions dated in V's calendar month and recorded by V (whatever the run's
basis: the ledger closed the month with what was recorded by then); the
control side is the general ledger's ``finance_control_totals`` row for (line, first day of V's month). A measure
passes when ``|extract - control| <= max(abs_tolerance, rel_tolerance * |control|)``. A line on one side only fails
by name. Without control totals for the month the run passes with a note saying so.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import pandas as pd

from include.reserving.domain import OVERALL

# the measures compared, as both sides' columns are named by warehouse/reconciliation.py
MEASURES = ("paid", "case_reserve_movement")
RESULT_COLUMNS = [
    "segment",
    "measure",
    "extract_value",
    "control_value",
    "difference",
    "tolerance",
    "passed",
    "note",
]


@dataclass(frozen=True)
class ReconciliationRow:
    segment: str
    measure: str
    extract_value: float | None
    control_value: float | None
    difference: float | None
    tolerance: float | None
    passed: bool
    note: str | None = None

    def explain(self) -> str:
        """One line for an actuary: line, measure, both values, the difference against the tolerance."""
        if self.note and (self.extract_value is None or self.control_value is None):
            return f"{self.segment} {self.measure}: {self.note}"
        return (
            f"{self.segment} {self.measure}: extract {self.extract_value:,.2f} vs control {self.control_value:,.2f}, "
            f"difference {self.difference:,.2f} (tolerance {self.tolerance:,.2f})"
        )


@dataclass
class Reconciliation:
    valuation_date: dt.date
    rows: list[ReconciliationRow] = field(default_factory=list)
    available: bool = True
    failure_heading = "Not reconciled"

    @property
    def success(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[ReconciliationRow]:
        return [r for r in self.rows if not r.passed]

    @property
    def lines(self) -> int:
        return len({r.segment for r in self.rows}) if self.available else 0

    def summary(self) -> str:
        month = f"{self.valuation_date:%Y-%m}"
        if not self.available:
            return f"reconciliation of {month}: {self.rows[0].note}"
        failed = self.failures
        head = (
            f"reconciliation of {month} to the finance control totals: {len(self.rows) - len(failed)} of "
            f"{len(self.rows)} line measures within tolerance"
        )
        if failed:
            head += (
                "; the extract does not match the general ledger: check the extract for missing or extra "
                "transactions (or the control totals) and re-run"
            )
        return "\n".join([head, *[f"  NOT RECONCILED {r.explain()}" for r in failed]])


class ReconciliationError(RuntimeError):
    """The month's extract does not reconcile to the finance control totals; ``report`` holds every row."""

    def __init__(self, report: Reconciliation):
        super().__init__(report.summary())
        self.report = report


def raise_for_failures(report: Reconciliation) -> None:
    if not report.success:
        raise ReconciliationError(report)


def not_available(valuation_date: dt.date, table_exists: bool) -> Reconciliation:
    """The outcome when there is nothing to reconcile to: a pass with a note, stored like any result."""
    why = "no rows for the month" if table_exists else "the table does not exist"
    note = (
        f"not available: finance_control_totals has {why} ({valuation_date:%Y-%m}); "
        "the extract was not reconciled to the general ledger"
    )
    row = ReconciliationRow(OVERALL, "control_totals", None, None, None, None, True, note)
    return Reconciliation(valuation_date, [row], available=False)


def _cents(value: float) -> float:
    return round(float(value) + 0.0, 2)


def reconcile(
    valuation_date: dt.date,
    extract: pd.DataFrame,
    control: pd.DataFrame,
    abs_tolerance: float,
    rel_tolerance: float,
) -> Reconciliation:
    """Compare per line and measure; ``extract`` and ``control`` have ``segment`` and the MEASURES columns."""
    ours = extract.set_index("segment")
    theirs = control.set_index("segment")
    rows = []
    for segment in sorted(set(ours.index) | set(theirs.index)):
        for measure in MEASURES:
            if segment not in theirs.index or segment not in ours.index:
                side = "control totals" if segment not in theirs.index else "extract"
                value = ours.at[segment, measure] if segment in ours.index else theirs.at[segment, measure]
                row = ReconciliationRow(
                    segment,
                    measure,
                    _cents(value) if segment in ours.index else None,
                    _cents(value) if segment in theirs.index else None,
                    None,
                    None,
                    False,
                    f"line {segment} is missing from the {side}",
                )
            else:
                mine, control_value = _cents(ours.at[segment, measure]), _cents(theirs.at[segment, measure])
                difference = _cents(mine - control_value)
                tolerance = _cents(max(abs_tolerance, rel_tolerance * abs(control_value)))
                passed = math.isfinite(difference) and abs(difference) <= tolerance + 1e-9
                row = ReconciliationRow(segment, measure, mine, control_value, difference, tolerance, passed)
            rows.append(row)
    return Reconciliation(valuation_date, rows)

"""Finance control totals and reconciliation results: the month's totals on both sides, and the stored outcome for
(V, basis), replaced as a whole by a re-run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.domain import Basis
from include.reserving.warehouse.cells import extract_filters
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd

    from include.reserving.reconciliation import ReconciliationRow


def control_totals(engine: Engine, month: dt.date) -> pd.DataFrame | None:
    """The control totals of ``month`` per line (``segment, paid, case_reserve_movement``); None: no such table."""
    f = schema.finance_control_totals
    if not inspect(engine).has_table(f.name):
        return None
    return read_frame(
        engine,
        select(
            f.c.line_of_business.label("segment"),
            f.c.paid_amount.label("paid"),
            f.c.case_reserve_movement.label("case_reserve_movement"),
        ).where(f.c.month == month),
    )


def extract_totals(engine: Engine, valuation_date: dt.date) -> pd.DataFrame:
    """The extract's totals per line over the transactions dated in V's calendar month and recorded by V.

    As recorded whatever the run's basis: the ledger closed the month with what was recorded by then, so a restated
    run's late rows would be differences that are not errors.
    """
    c, t = schema.claims, schema.claim_transactions
    claim_filter, txn_filter = extract_filters(valuation_date, Basis.AS_RECORDED)
    return read_frame(
        engine,
        select(
            c.c.line_of_business.label("segment"),
            func.coalesce(func.sum(t.c.paid_amount), 0).label("paid"),
            func.coalesce(func.sum(t.c.case_reserve_change), 0).label("case_reserve_movement"),
        )
        .select_from(t.join(c, c.c.claim_id == t.c.claim_id))
        .where(claim_filter, txn_filter, t.c.transaction_date >= valuation_date.replace(day=1))
        .group_by(c.c.line_of_business)
        .order_by(c.c.line_of_business),
    )


def store_results(
    engine: Engine, valuation_date: dt.date, basis: str, run_id: str | None, rows: Iterable[ReconciliationRow]
) -> int:
    """Replace the rows of (V, basis) by ``rows`` in one transaction."""
    key = {"valuation_date": valuation_date, "basis": basis}
    return replace_rows(engine, schema.reconciliation_results, key, [{**asdict(r), "run_id": run_id} for r in rows])


def results_frame(engine: Engine, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """The stored reconciliation of (V, basis) as the report shows it."""
    r = schema.reconciliation_results
    return read_frame(
        engine,
        select(
            r.c.segment,
            r.c.measure,
            r.c.extract_value,
            r.c.control_value,
            r.c.difference,
            r.c.tolerance,
            r.c.passed,
            r.c.note,
        )
        .where(r.c.valuation_date == valuation_date, r.c.basis == basis)
        .order_by(r.c.segment, r.c.measure),
    )

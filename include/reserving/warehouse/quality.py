"""Quality results: one row per check of a gate run for (V, basis), replaced as a whole by a re-run; and the count
of source rows recorded by a day, with which the gate tells whether a month's history was rewritten since its gate.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.dates import end_of_day
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd

    from include.reserving.quality.report import QualityReport

Bind = Engine | Connection


def store_results(bind: Bind, report: QualityReport) -> int:
    """Replace the rows of (V, basis) with the report's, in one transaction; returns the rows written."""
    rows = [
        {
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
    key = {"valuation_date": report.valuation_date, "basis": report.basis}
    return replace_rows(bind, schema.quality_results, key, rows)


def check_row(bind: Bind, valuation_date: dt.date, basis: str, check_key: str) -> Mapping[str, Any] | None:
    """One check's stored result for (V, basis) with the gate's verdict and suite version; None: never stored."""
    q = schema.quality_results
    statement = select(q.c.valuation_date, q.c.gate_success, q.c.suite_version, q.c.element_count).where(
        q.c.valuation_date == valuation_date, q.c.basis == basis, q.c.check_key == check_key
    )
    rows = read_frame(bind, statement).to_dict("records")  # plain Python values, not numpy's
    return rows[0] if rows else None


def results_frame(bind: Bind, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """The stored checks of (V, basis) as the reserve report shows them: expectation, column, success, bad rows."""
    q = schema.quality_results
    return read_frame(
        bind,
        select(q.c.expectation, q.c.column, q.c.success, q.c.unexpected_count)
        .where(q.c.valuation_date == valuation_date, q.c.basis == basis)
        .order_by(q.c.check_key),
    )


def claims_reported_by(bind: Bind, day: dt.date) -> int:
    """Rows of claims reported by ``day``."""
    c = schema.claims
    statement = select(func.count().label("rows")).select_from(c).where(c.c.report_date <= day)
    return int(read_frame(bind, statement)["rows"].iloc[0])


def transactions_recorded_by(bind: Bind, day: dt.date) -> int:
    """Rows of claim_transactions recorded by the end of ``day``."""
    t = schema.claim_transactions
    statement = select(func.count().label("rows")).select_from(t).where(t.c.recorded_at < end_of_day(day))
    return int(read_frame(bind, statement)["rows"].iloc[0])

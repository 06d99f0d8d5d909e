"""Plausibility results: one row per (line, check) of V's month, replaced as a whole for (V, basis) by a re-run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd

    from include.reserving.plausibility import PlausibilityCheck

Bind = Engine | Connection


def store_results(
    bind: Bind, valuation_date: dt.date, basis: str, checks: Iterable[PlausibilityCheck], run_id: str | None = None
) -> int:
    """Replace the rows of (V, basis) by ``checks`` in one transaction; returns the rows written."""
    key = {"valuation_date": valuation_date, "basis": basis}
    return replace_rows(bind, schema.plausibility_results, key, [{**c.as_row(), "run_id": run_id} for c in checks])


def results(bind: Bind, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """The stored checks of (V, basis), lines in name order."""
    p = schema.plausibility_results
    query = (
        select(p.c.segment, p.c.check, p.c.observed, p.c.lower, p.c.upper, p.c.passed, p.c.detail)
        .where(p.c.valuation_date == valuation_date, p.c.basis == basis)
        .order_by(p.c.segment, p.c.check)
    )
    return read_frame(bind, query)

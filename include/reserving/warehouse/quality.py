"""Quality results: one row per check of the gate for (V, basis)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.warehouse.core import read_frame

if TYPE_CHECKING:
    import pandas as pd


def quality_summary(engine: Engine, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """The gate's checks for (V, basis) as the report shows them: expectation, column, success, bad-row count."""
    qr = schema.quality_results
    return read_frame(
        engine,
        select(qr.c.expectation, qr.c.column, qr.c.success, qr.c.unexpected_count)
        .where(qr.c.valuation_date == valuation_date, qr.c.basis == basis)
        .order_by(qr.c.check_key),
    )

"""The fast COPY loader: its vectorised and per-value encodings load the same values on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, String, Table, select

from devtools.bulk import bulk_insert
from include.reserving.schema import Money

metadata = MetaData()
rows_table = Table(
    "bulk_check",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("day", Date),
    Column("at", DateTime),
    Column("amount", Money),
    Column("label", String(32)),
)

# No missing value in any column: every column takes the vectorised path.
CLEAN = [
    (1, dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 59), 0.29, "plain"),
    (2, dt.date(1999, 12, 31), dt.datetime(1999, 12, 31), -1234567890123.45, "x"),
    (3, dt.date(2025, 1, 1), dt.datetime(2025, 1, 1, 12, 30), 0.07, "N"),
]
# Missing values, microseconds, text needing quotes, the NULL marker as text, non-ASCII: the per-value path.
AWKWARD = [
    (4, None, dt.datetime(2024, 3, 1, 0, 0, 0, 123456), None, 'a "quoted", comma'),
    (5, dt.date(2024, 3, 2), None, 10.5, "\\N"),
    (6, dt.date(2024, 3, 3), dt.datetime(2024, 3, 3, 8), 1e-2, "Zürich"),
    (7, dt.date(2024, 3, 4), dt.datetime(2024, 3, 4, 8), 3.0, None),
    (8, dt.date(2024, 3, 5), dt.datetime(2024, 3, 5, 8), 4.0, "line\nbreak"),
]


def _frame(rows) -> pd.DataFrame:
    ids, days, ats, amounts, labels = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "id": np.array(ids, dtype=np.int64),
            "day": pd.to_datetime(list(days)),
            "at": pd.to_datetime(list(ats)),
            "amount": np.array([np.nan if a is None else a for a in amounts]),
            "label": pd.Series(labels, dtype=object),
        }
    )


@pytest.mark.parametrize("rows", [CLEAN, AWKWARD], ids=["vectorised", "per-value"])
def test_values_arrive_exactly(warehouse, rows):
    metadata.create_all(warehouse)
    assert bulk_insert(warehouse, rows_table, _frame(rows)) == len(rows)
    with warehouse.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(rows_table).order_by(rows_table.c.id))] == rows

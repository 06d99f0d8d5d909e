"""The fast COPY loader: its vectorised and per-value encodings load the same values on SQLite and PostgreSQL, through
psycopg2 and psycopg 3 alike (their COPY APIs differ)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, String, Table, select

from devtools.bulk import _copy_from, bulk_insert
from include.reserving.schema import Money
from include.reserving.warehouse.core import is_postgres, make_engine

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


def _drivers(warehouse):
    """The fixture's engine, plus psycopg 3 on PostgreSQL (the fixture's URL is psycopg2)."""
    yield warehouse
    if is_postgres(warehouse):
        engine = make_engine(warehouse.url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        yield engine
        engine.dispose()


@pytest.mark.parametrize("rows", [CLEAN, AWKWARD], ids=["vectorised", "per-value"])
def test_values_arrive_exactly(warehouse, rows):
    for engine in _drivers(warehouse):
        metadata.create_all(engine)
        try:
            assert bulk_insert(engine, rows_table, _frame(rows)) == len(rows)
            with engine.connect() as conn:
                got = [tuple(r) for r in conn.execute(select(rows_table).order_by(rows_table.c.id))]
            assert got == rows, engine.dialect.driver
        finally:
            metadata.drop_all(engine)


def test_another_postgres_driver_is_refused_by_name():
    with pytest.raises(ValueError, match="needs the psycopg or psycopg2 driver, not 'pg8000'"):
        _copy_from(None, "pg8000", "COPY bulk_check FROM STDIN", iter([b""]))

"""The simple insert path of the warehouse core: a data frame's values arrive exactly, on every driver."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, String, Table, select

from include.reserving.schema import Money
from include.reserving.warehouse.core import insert_rows, is_postgres, make_engine, read_frame, replace_rows

metadata = MetaData()
rows_table = Table(
    "insert_rows_check",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("day", Date),
    Column("at", DateTime),
    Column("amount", Money),
    Column("count", Integer),
    Column("label", String(32)),
)

EXPECTED = [
    (1, dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 23, 59, 59), 0.29, 7, "plain"),
    (2, None, dt.datetime(2024, 3, 1, 0, 0, 0, 123456), -1234567890123.45, None, 'a "quoted", comma'),
    (3, dt.date(1999, 12, 31), None, None, 0, None),
    (4, dt.date(2025, 1, 1), dt.datetime(2025, 1, 1, 12), 0.07, -3, "Zürich"),
]


def _frame() -> pd.DataFrame:
    """EXPECTED as pandas holds it: datetime64 with NaT, float money with NaN, numpy ints in an object column."""
    ids, days, ats, amounts, counts, labels = zip(*EXPECTED, strict=True)
    return pd.DataFrame(
        {
            "id": np.array(ids, dtype=np.int64),
            "day": pd.to_datetime(list(days)),
            "at": pd.to_datetime(list(ats)),
            "amount": np.array([np.nan if a is None else a for a in amounts]),
            "count": pd.Series([None if c is None else np.int64(c) for c in counts], dtype=object),
            "label": pd.Series(labels, dtype="str"),
        }
    )


def _drivers(warehouse):
    """The fixture's engine, plus psycopg 3 on PostgreSQL (the fixture's URL is psycopg2)."""
    yield warehouse
    if is_postgres(warehouse):
        engine = make_engine(warehouse.url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
        yield engine
        engine.dispose()


def test_a_frame_round_trips_exactly(warehouse):
    for engine in _drivers(warehouse):
        metadata.create_all(engine)
        try:
            assert insert_rows(engine, rows_table, _frame()) == len(EXPECTED)
            with engine.connect() as conn:
                got = [tuple(row) for row in conn.execute(select(rows_table).order_by(rows_table.c.id))]
            assert got == EXPECTED, engine.dialect.driver
        finally:
            metadata.drop_all(engine)


def test_row_mappings_and_nothing_to_insert(warehouse):
    metadata.create_all(warehouse)
    assert insert_rows(warehouse, rows_table, []) == 0
    assert insert_rows(warehouse, rows_table, [{"id": 1, "day": dt.date(2024, 1, 31), "amount": 12.34}]) == 1
    with warehouse.connect() as conn:
        assert conn.execute(select(rows_table.c.day, rows_table.c.amount)).all() == [(dt.date(2024, 1, 31), 12.34)]


def test_replace_rows_replaces_only_its_key_and_read_frame_names_columns(warehouse):
    """A re-run replaces its own key's rows (never appends) and leaves other keys alone; an empty read keeps columns."""
    metadata.create_all(warehouse)
    replace_rows(warehouse, rows_table, {"label": "a"}, [{"id": 1, "count": 1}, {"id": 2, "count": 2}])
    replace_rows(warehouse, rows_table, {"label": "b"}, [{"id": 3, "count": 3}])
    assert replace_rows(warehouse, rows_table, {"label": "a"}, [{"id": 4, "count": 4}]) == 1
    frame = read_frame(warehouse, select(rows_table.c.id, rows_table.c.label).order_by(rows_table.c.id))
    assert frame.values.tolist() == [[3, "b"], [4, "a"]]
    empty = read_frame(warehouse, select(rows_table.c.id, rows_table.c.count).where(rows_table.c.label == "z"))
    assert empty.empty and list(empty.columns) == ["id", "count"]


def test_replace_rows_inside_a_caller_transaction_rolls_back_with_it(warehouse):
    """Given a connection, the replace belongs to the caller's transaction: a failure after it undoes it too."""
    metadata.create_all(warehouse)
    replace_rows(warehouse, rows_table, {"label": "a"}, [{"id": 1}])
    with pytest.raises(RuntimeError), warehouse.begin() as conn:
        replace_rows(conn, rows_table, {"label": "a"}, [{"id": 2}])
        raise RuntimeError("killed after the replace, before commit")
    assert read_frame(warehouse, select(rows_table.c.id)).id.tolist() == [1]

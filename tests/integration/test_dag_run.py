"""End-to-end: a real Airflow run of the monthly DAG (dag.test()) on a small book in a SQLite warehouse."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from include.reserving import schema
from include.reserving.db import make_engine
from include.reserving.ingest import latest_diagonal, load_cells
from tests.include.test_ingest import CLAIM_COLS, CLAIMS, TXN_COLS, TXNS

pytestmark = pytest.mark.slow


def test_monthly_run_values_as_at_the_day_before_the_interval_end(pipeline_dag, sqlite_url, monkeypatch):
    from include.reserving.db import bulk_insert

    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    bulk_insert(engine, schema.claims, CLAIMS, CLAIM_COLS)
    bulk_insert(engine, schema.claim_transactions, TXNS, TXN_COLS)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", sqlite_url)

    run = pipeline_dag.test(logical_date=dt.datetime(2023, 8, 1, tzinfo=dt.UTC))

    assert run.state == "success"
    cells = load_cells(engine, "2023-07-31")  # the run for [Jul 1, Aug 1) values as at Jul 31
    with engine.connect() as conn:
        snap = conn.execute(select(schema.snapshots)).one()
        assert conn.execute(select(func.count()).select_from(schema.snapshot_claims)).scalar_one() == 3
    assert snap.valuation_date == dt.date(2023, 7, 31)
    assert snap.run_id == run.run_id
    assert latest_diagonal(cells)["paid"].sum() == 360.0

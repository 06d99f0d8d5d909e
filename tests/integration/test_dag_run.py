"""End-to-end: the real monthly DAG in dag.test() on a synthetic book, approved by an actuary from another thread."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import select

from include.reserving import registry, schema
from include.reserving.approval import approval_key, approval_value
from include.reserving.db import make_engine
from include.reserving.ingest import latest_diagonal, load_cells
from include.reserving.models import load_model
from include.reserving.publish import current_reserves, reserve_rows, versions

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)


def _approve_when_asked(url: str, stop: threading.Event, seen: dict) -> None:
    """The actuary: waits for the promotion decision of V, then approves through the metadata database."""
    from airflow.models.variable import Variable

    engine = make_engine(url)
    pd_ = schema.promotion_decisions
    while not stop.is_set():
        with engine.connect() as conn:
            row = conn.execute(select(pd_).where(pd_.c.valuation_date == V)).first()
        if row is not None and row.decision == "promote":
            seen["challenger"] = row.challenger_version
            Variable.set(approval_key(V), approval_value(row.challenger_version, "approve", "Test Actuary", "ok"))
            return
        time.sleep(1)


def test_first_month_trains_asks_for_approval_and_publishes(pipeline_dag, pipeline_env):
    from airflow.models.variable import Variable

    stop, seen = threading.Event(), {}
    actuary = threading.Thread(target=_approve_when_asked, args=(pipeline_env, stop, seen), daemon=True)
    actuary.start()
    try:
        run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    finally:
        stop.set()
        actuary.join(timeout=10)
        Variable.delete(approval_key(V))
    assert run.state == "success"

    engine = make_engine(pipeline_env)
    champion = registry.champion(engine)
    assert champion is not None and champion.model_version == seen["challenger"]
    assert registry.approvals(engine)[["decision", "decided_by"]].values.tolist() == [["approve", "Test Actuary"]]
    table = versions(engine, V)
    assert table[["version", "is_current", "status", "run_id"]].values.tolist() == [[1, True, "approved", run.run_id]]

    # published reserves tie to the champion model's own output, to the cent
    cells = load_cells(engine, V)
    model = load_model(champion.artifact_uri)
    expected = reserve_rows(model.ultimates(cells), latest_diagonal(cells))
    published = current_reserves(engine, V)
    assert published["ibnr"].tolist() == expected["ibnr"].tolist()
    assert round(published["ibnr"].sum(), 2) == table["ibnr_total"].iloc[0]
    assert published["latest_paid"].sum() == pytest.approx(latest_diagonal(cells)["paid"].sum(), abs=0.005)

"""Pipeline health on SQLite and PostgreSQL: every execution of a run keeps its row; an older warehouse whose table was
keyed by run alone is migrated with its rows kept."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Date, DateTime, Float, MetaData, String, Table, insert, select

from include.reserving import schema
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.runs import latest_runs, record_run, runs_up_to

V = dt.date(2024, 1, 31)
RUN = "scheduled__2024-02-01T00:00:00+00:00"
DAG = "monthly_reserving_pipeline"


def _at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 2, 1, hour, minute, tzinfo=dt.UTC)


def test_a_cleared_run_keeps_its_failed_execution_beside_the_success(warehouse):
    record_run(warehouse, RUN, DAG, V, "failed", _at(0), _at(0, 3), "input.validate")
    record_run(warehouse, RUN, DAG, V, "success", _at(1), _at(1, 20), clear_number=1)
    record_run(warehouse, RUN, DAG, V, "success", _at(1), _at(1, 21), clear_number=1)  # a callback run twice
    assert [
        (r["clear_number"], r["state"], r["failed_task"], r["duration_seconds"]) for r in latest_runs(warehouse)
    ] == [
        (1, "success", None, 21 * 60.0),
        (0, "failed", "input.validate", 3 * 60.0),
    ]
    report = runs_up_to(warehouse, V)  # the reserve report's health section: oldest first
    assert report["state"].tolist() == ["failed", "success"] and report["failed_task"].iloc[0] == "input.validate"


def test_an_older_health_table_is_rekeyed_with_its_rows_kept(warehouse_url):
    engine = make_engine(warehouse_url)
    old = Table(  # pipeline_runs as created before issue 16: one row per run id
        "pipeline_runs",
        MetaData(),
        Column("run_id", String(250), primary_key=True),
        Column("dag_id", String(250), nullable=False),
        Column("valuation_date", Date),
        Column("state", String(16), nullable=False),
        Column("started_at", DateTime),
        Column("ended_at", DateTime),
        Column("duration_seconds", Float),
        Column("failed_task", String(250)),
    )
    schema.metadata.create_all(engine, tables=[t for t in schema.metadata.sorted_tables if t.name != old.name])
    old.create(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(old),
            [
                {"run_id": "manual__a", "dag_id": DAG, "valuation_date": V, "state": "failed", "failed_task": "x"},
                {"run_id": RUN, "dag_id": DAG, "valuation_date": V, "state": "success", "failed_task": None},
            ],
        )

    assert schema.create_all(engine) == [
        "pipeline_runs: keyed by (run_id, clear_number); 2 runs kept as their first execution"
    ]
    assert schema.create_all(engine) == []  # done once
    pr = schema.pipeline_runs
    with engine.connect() as conn:
        rows = conn.execute(select(pr.c.run_id, pr.c.clear_number, pr.c.state, pr.c.failed_task).order_by(pr.c.run_id))
        assert rows.all() == [("manual__a", 0, "failed", "x"), (RUN, 0, "success", None)]
    record_run(engine, RUN, DAG, V, "failed", _at(2), _at(2, 1), "input.validate", clear_number=1)
    assert [(r["run_id"], r["clear_number"]) for r in latest_runs(engine)] == [
        (RUN, 1),
        (RUN, 0),  # migrated rows have no start: after those that have, by run id
        ("manual__a", 0),
    ]
    engine.dispose()


def test_the_run_callbacks_record_each_execution_by_airflows_clear_number(sqlite_url, monkeypatch):
    """RunHealth, as the dag-processor calls it (its context's dag_run is the execution API's DagRun): the failed
    first execution and the success after a clear are two rows."""
    from airflow.sdk.api.datamodels._generated import DagRun

    from include.reserving.notify import RunHealth

    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", sqlite_url)
    interval_end = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    for clear_number, state, start in ((0, "failed", _at(0)), (1, "success", _at(1))):
        end = start + dt.timedelta(minutes=5)
        run = DagRun.model_construct(
            dag_id=DAG, run_id=RUN, clear_number=clear_number, start_date=start, end_date=end,
            data_interval_end=interval_end,
        )  # fmt: skip
        RunHealth(state).notify({"dag_run": run, "params": {}, "ti": None})
    assert [(r["clear_number"], r["state"], r["valuation_date"]) for r in latest_runs(engine)] == [
        (1, "success", V),
        (0, "failed", V),
    ]
    engine.dispose()

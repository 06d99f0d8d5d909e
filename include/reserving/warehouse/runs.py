"""Pipeline health: one row per execution of a DAG run (its state, duration and failed task), written by the DAG's
callbacks. A run cleared and run again is a new execution (Airflow's ``clear_number``): its failure stays on record."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd


def record_run(
    engine: Engine,
    run_id: str,
    dag_id: str,
    valuation_date: dt.date | None,
    state: str,
    started_at: dt.datetime | None,
    ended_at: dt.datetime | None,
    failed_task: str | None = None,
    clear_number: int = 0,
) -> None:
    """Write (or replace) the outcome, duration and failed task of one execution of a run (``clear_number``: how
    often the run had been cleared, 0 the first time); the run's other executions keep their rows."""
    duration = (ended_at - started_at).total_seconds() if started_at and ended_at else None
    naive = [d.replace(tzinfo=None) if d is not None and d.tzinfo else d for d in (started_at, ended_at)]
    row = {
        "dag_id": dag_id,
        "valuation_date": valuation_date,
        "state": state,
        "started_at": naive[0],
        "ended_at": naive[1],
        "duration_seconds": duration,
        "failed_task": failed_task,
    }
    replace_rows(engine, schema.pipeline_runs, {"run_id": run_id, "clear_number": clear_number}, [row])


def runs_up_to(engine: Engine, valuation_date: dt.date, last: int = 12) -> pd.DataFrame:
    """The last ``last`` recorded runs up to V (by valuation date), oldest first: the report's health section."""
    pr = schema.pipeline_runs
    frame = read_frame(
        engine,
        select(pr.c.run_id, pr.c.valuation_date, pr.c.state, pr.c.duration_seconds, pr.c.failed_task)
        .where(pr.c.valuation_date <= valuation_date)
        .order_by(pr.c.valuation_date.desc(), pr.c.run_id.desc(), pr.c.clear_number.desc())
        .limit(last),
    )
    return frame.iloc[::-1].reset_index(drop=True)


def latest_runs(engine: Engine, limit: int = 24) -> list[dict]:
    """The latest executions of pipeline runs, newest first, failed ones included (the Reserving view's health)."""
    pr = schema.pipeline_runs
    query = (
        select(pr)
        .order_by(
            pr.c.valuation_date.desc(),
            pr.c.started_at.desc().nulls_last(),  # as on SQLite: PostgreSQL puts NULLs first when descending
            pr.c.run_id.desc(),
            pr.c.clear_number.desc(),
        )
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings().all()]

"""Harness DAG for tests/dags/test_fails_at_once.py: two tasks with two retries each (no delay), one refused by the
run-order rule, one losing its database connection on its first try; each appends its name to ``params.tries``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import Param, dag

from include.reserving.dag_groups import retried_task


def _try(params: dict, name: str) -> int:
    """Record a try of ``name``; returns how many it has had."""
    tries = Path(params["tries"])
    with tries.open("a") as f:
        f.write(name + "\n")
    return tries.read_text().split().count(name)


@dag(
    dag_id="fails_at_once_probe",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=0)},
    params={"tries": Param("", type="string")},
)
def fails_at_once_probe():
    @retried_task
    def refused(params=None) -> None:
        from include.reserving.run_order import RunOrderError

        _try(params, "refused")
        raise RunOrderError("refusing to value 2024-01-31: a later valuation, 2024-02-29, is already current")

    @retried_task
    def flaky(params=None) -> str:
        from sqlalchemy.exc import OperationalError

        if _try(params, "flaky") == 1:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly"))
        return "ok"

    refused()
    flaky()


fails_at_once_probe()

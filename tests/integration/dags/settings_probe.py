"""Harness DAG for tests/include/test_config.py: loads the settings inside a real task and writes what it saw."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="settings_probe",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"retries": 0},
    params={"out": Param("", type="string")},
)
def settings_probe():
    @task
    def probe() -> None:
        from include.reserving.config import as_dict, in_task, load_settings

        seen = {"in_task": in_task(), "settings": as_dict(load_settings())}
        Path(get_current_context()["params"]["out"]).write_text(json.dumps(seen))

    probe()


settings_probe()

"""Harness DAG for the sign-off tests: the monthly DAG's reserving, signoff and reporting groups (the same
builders), run after a start marker, so each scenario skips ingest, the quality gate and training."""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag

from include.reserving.dag_groups import reporting_group, reserving_group, signoff_group


@dag(
    dag_id="signoff_harness",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"retries": 0},
    params={
        "valuation_date": Param(None, type=["null", "string"]),
        "signoff_timeout_seconds": Param(None, type=["null", "integer"]),
    },
)
def signoff_harness():
    published = reserving_group([EmptyOperator(task_id="start")])
    reporting_group(published, after=signoff_group(published))


harness = signoff_harness()

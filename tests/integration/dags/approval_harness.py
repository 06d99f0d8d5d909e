"""Harness DAG for the approval tests: the monthly DAG's governance and reserving groups (the same builders), fed
from an evaluation given as a param, so each scenario skips ingest, the quality gate and training."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, task

from include.reserving.dag_groups import governance_group, reserving_group


@dag(
    dag_id="approval_harness",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"retries": 0},
    params={
        "valuation_date": Param(None, type=["null", "string"]),
        "approval_timeout_seconds": Param(None, type=["null", "integer"]),
        "evaluation": Param({}),
    },
)
def approval_harness():
    @task
    def evaluation(params=None) -> dict:
        return params["evaluation"]

    @task
    def drift_decision() -> dict:
        return {"retrain": True, "reasons": ["approval harness"]}

    reserving_group(governance_group(evaluation(), drift_decision()))


harness = approval_harness()

"""Harness DAG for the approval tests: the monthly DAG's governance and reserving tasks, from a given evaluation.

Same sensor class and stage functions as dags/monthly_reserving_pipeline.py; the evaluation (valuation date,
pending challenger) comes in as a param so each scenario skips ingest and the quality gate.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from include.reserving.sensors import ApprovalSensor


def _facts():
    from include.reserving.pipeline import RunFacts

    context = get_current_context()
    return RunFacts.create(context["params"]["evaluation"]["valuation_date"], context["run_id"])


@dag(
    dag_id="approval_harness",
    schedule=None,
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    default_args={"retries": 0},
    params={"approval_timeout_seconds": Param(None, type=["null", "integer"]), "evaluation": Param({})},
)
def approval_harness():
    @task
    def evaluation() -> dict:
        return get_current_context()["params"]["evaluation"]

    @task
    def apply_approval(evaluation: dict, outcome: dict) -> dict:
        from include.reserving.pipeline import stage_apply_approval

        return stage_apply_approval(_facts(), evaluation, outcome)

    @task
    def refit(applied: dict) -> dict:
        from include.reserving.pipeline import stage_refit

        return stage_refit(_facts())

    @task
    def lines(refitted: dict) -> list[str]:
        return refitted["segments"]

    @task
    def reserve_segment(refitted: dict, segment: str) -> dict:
        from include.reserving.pipeline import stage_reserve_segment

        return stage_reserve_segment(_facts(), refitted, segment)

    @task
    def publish(refitted: dict, reserved: list[dict]) -> dict:
        from include.reserving.pipeline import stage_publish

        return stage_publish(_facts(), refitted, list(reserved))

    ev = evaluation()
    awaiting = ApprovalSensor(task_id="await_approval", evaluation=ev)
    refitted = refit(apply_approval(ev, awaiting.output))
    publish(refitted, reserve_segment.partial(refitted=refitted).expand(segment=lines(refitted)))


harness = approval_harness()

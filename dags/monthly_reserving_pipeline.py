"""
# Monthly reserving pipeline

Values IBNR reserves as at the last day of the closed month (the **valuation date** V): the run for the data
interval [2024-01-01, 2024-02-01) fires on 2024-02-01 and values as at 2024-01-31.

| group | task | what it does |
| --- | --- | --- |
| input | `ingest` | the book as it stood at V, aggregated in the warehouse into triangle cells and a claim snapshot |
| input | `validate` | Great Expectations gate in the warehouse; bad data stops the run here (no retries) |
| input | `drift` | PSI / KS per feature and actual vs expected; decides whether to retrain |
| training | `retrain_or_not` | branch: `train` when something moved (or `force_retrain`), else `skip_training` |
| training | `train`, `evaluate` | spec search by time-series CV; challenger vs champion backtest; margin-delta rule |
| governance | `promote_or_not` | branch: `model_card` and `await_approval` only when the rule says promote |
| governance | `model_card` | the challenger's model card (Markdown + PDF), e-mailed with the approval instruction |
| governance | `await_approval`, `apply_approval` | waits for Variable `reserving_approval__<V>`; records it |
| reserving | `refit` | the champion's spec refitted on V's data (routine, recorded in the registry) |
| reserving | `lines`, `reserve_segment` | ultimates, IBNR and ranges per origin, one mapped task per line |
| reserving | `publish` | all lines published atomically as this run's version for V |
| reporting | `report`, `email_report` | the PDF reserve report from the published rows, e-mailed to the chief actuary |

Every task failure posts to Slack (connection `reserving_slack`); each run's outcome goes to `pipeline_runs`.

Runs execute oldest first, one at a time. Params: `valuation_date` (a month end) for a manual run, `restated`
(latest knowledge instead of what was recorded by V), `force_retrain`, `approval_timeout_seconds`.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import CronDataIntervalTimetable, Param, TaskGroup, dag, get_current_context, task

from include.reserving.sensors import ApprovalSensor


def _alert_task_failure(context):
    """Slack alert for any failed task (imported lazily: parsing the DAG stays cheap)."""
    from include.reserving.notify import on_task_failure

    on_task_failure(context)


def _record_success(context):
    from include.reserving.reporting import record_run_from_context

    record_run_from_context(context, "success")


def _record_failure(context):
    from include.reserving.reporting import record_run_from_context

    record_run_from_context(context, "failed")


def _post_event(text: str) -> None:
    from include.reserving.notify import post_event

    post_event(text)


DEFAULT_ARGS = {
    "owner": "reserving",
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
    "on_failure_callback": _alert_task_failure,
}
NO_RETRY = {"retries": 0}  # deterministic steps: a retry would fail the same way


def _facts():
    """RunFacts of the current run (valuation date from the param or the data interval, basis, run id)."""
    from include.reserving.dates import valuation_date_of_run
    from include.reserving.pipeline import RunFacts

    context = get_current_context()
    params = context["params"]
    valuation_date = valuation_date_of_run(context.get("data_interval_end"), params.get("valuation_date"))
    return RunFacts.create(valuation_date, context["run_id"], restated=bool(params.get("restated")))


@dag(
    dag_id="monthly_reserving_pipeline",
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["reserving", "ibnr"],
    on_success_callback=_record_success,
    on_failure_callback=_record_failure,
    params={
        "valuation_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Valuation date",
            description="Month end to value as at (YYYY-MM-DD). Empty: the day before the data interval end.",
        ),
        "restated": Param(
            False,
            type="boolean",
            title="Restated data",
            description="Use everything known now instead of only what was recorded by the valuation date.",
        ),
        "force_retrain": Param(
            False,
            type="boolean",
            title="Force retraining",
            description="Train and backtest a challenger even if no drift was detected.",
        ),
        "approval_timeout_seconds": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Approval timeout (seconds)",
            description="How long to wait for an actuary's decision. Empty: the approval_timeout_seconds setting.",
        ),
    },
)
def monthly_reserving_pipeline():
    with TaskGroup("input"):

        @task
        def ingest() -> dict:
            """Snapshot the book as at V into triangle cells and claim features (replaces V's partition)."""
            from include.reserving.pipeline import stage_ingest

            return stage_ingest(_facts())

        @task(**NO_RETRY)
        def validate(ingested: dict) -> dict:
            """Great Expectations gate: a failed check stops the run and names what is wrong."""
            from include.reserving.pipeline import stage_validate

            return stage_validate(_facts())

        @task
        def drift(validated: dict) -> dict:
            """PSI / KS against the champion's reference window; retrain or not."""
            from include.reserving.pipeline import stage_drift

            return stage_drift(_facts(), force_retrain=bool(get_current_context()["params"].get("force_retrain")))

        drift_decision = drift(validate(ingest()))

    with TaskGroup("training"):

        @task.branch
        def retrain_or_not(decision: dict) -> str:
            """Train only when something moved (cost control)."""
            return "training.train" if decision["retrain"] else "training.skip_training"

        @task
        def train() -> dict:
            """Spec search by time-series CV over past diagonals; fit and register the challenger."""
            from include.reserving.pipeline import stage_train

            return stage_train(_facts())

        @task
        def evaluate(trained: dict) -> dict:
            """Backtest challenger against champion on held-out diagonals; apply the margin-delta rule."""
            from include.reserving.pipeline import stage_evaluate

            return stage_evaluate(_facts(), trained)

        skip_training = EmptyOperator(task_id="skip_training")
        trained = train()
        evaluation = evaluate(trained)
        retrain_or_not(drift_decision) >> [trained, skip_training]

    with TaskGroup("governance"):

        @task.branch
        def promote_or_not(evaluation: dict) -> str:
            """Ask for approval only when the challenger beats the champion by more than delta."""
            return "governance.model_card" if evaluation["decision"] == "promote" else "governance.no_promotion"

        @task
        def model_card(evaluation: dict, decision: dict) -> dict:
            """The challenger's model card, written and e-mailed before anyone is asked to approve."""
            from include.reserving.reporting import stage_email_model_card, stage_model_card

            facts = _facts()
            card = stage_model_card(facts, evaluation, decision["reasons"])
            return {**card, "email": stage_email_model_card(facts, card)}

        @task(**NO_RETRY)
        def apply_approval(evaluation: dict, outcome: dict) -> dict:
            """Record approve / reject / timeout; promote on approval; post the outcome to Slack."""
            from include.reserving.pipeline import stage_apply_approval

            return stage_apply_approval(_facts(), evaluation, outcome, alert=_post_event)

        card = model_card(evaluation, drift_decision)
        awaiting = ApprovalSensor(task_id="await_approval", evaluation=evaluation)
        no_promotion = EmptyOperator(task_id="no_promotion")
        approved = apply_approval(evaluation, awaiting.output)
        promote_or_not(evaluation) >> [card, no_promotion]
        card >> awaiting

    with TaskGroup("reserving"):

        @task(trigger_rule="none_failed_min_one_success")
        def refit() -> dict:
            """Refit the champion's spec on V's data (routine, recorded); the model that reserves V."""
            from include.reserving.pipeline import stage_refit

            return stage_refit(_facts())

        @task
        def lines(refitted: dict) -> list[str]:
            """The lines of business to reserve, one mapped task each."""
            return refitted["segments"]

        @task
        def reserve_segment(refitted: dict, segment: str) -> dict:
            """Ultimates, IBNR and ranges per origin for one line of business."""
            from include.reserving.pipeline import stage_reserve_segment

            return stage_reserve_segment(_facts(), refitted, segment)

        @task
        def publish(refitted: dict, reserved: list[dict]) -> dict:
            """Atomic, versioned publication of all lines for V."""
            from include.reserving.pipeline import stage_publish

            return stage_publish(_facts(), refitted, list(reserved))

        refitted = refit()
        [skip_training, no_promotion, approved] >> refitted
        reserved = reserve_segment.partial(refitted=refitted).expand(segment=lines(refitted))
        published = publish(refitted, reserved)

    with TaskGroup("reporting"):

        @task
        def report(published: dict) -> dict:
            """The PDF reserve report, numbers read back from the published rows."""
            from include.reserving.reporting import stage_report

            return stage_report(_facts(), published)

        @task
        def email_report(reported: dict) -> dict:
            """E-mail the report to the chief actuary (skipped with a reason when SMTP is not configured)."""
            from include.reserving.reporting import stage_email_report

            return stage_email_report(_facts(), reported)

        email_report(report(published))


monthly_reserving_pipeline()

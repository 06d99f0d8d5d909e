"""
# Monthly reserving pipeline

Values reserves (unpaid = ultimate - paid = case reserves + IBNR) as at the last day of the closed month (the
**valuation date** V): the run for the data interval [2024-01-01, 2024-02-01) fires on 2024-02-01 and values as at
2024-01-31.

| group | task | what it does |
| --- | --- | --- |
| input | `contract` | the source tables against `docs/DATA_CONTRACT.md`; a breach stops the run before any read |
| input | `land` | a claims system of its own (`claims_source`, `source_mapping`): new rows copied to the warehouse |
| input | `run_order` | refuses a month the book shows no activity in (stale) or a later current month follows |
| input | `reconcile` | the month's extract against the finance control totals, when provided (no retries) |
| input | `ingest` | the book as it stood at V, aggregated in the warehouse into triangle cells and a claim snapshot |
| input | `validate` | Great Expectations gate in the warehouse; bad data stops the run here (no retries) |
| input | `drift` | PSI / KS per feature and actual vs expected; decides whether to retrain |
| training | `retrain_or_not` | branch: `train` when something moved (or `force_retrain`), else `skip_training` |
| training | `train`, `evaluate` | spec search per line; each line's challenger vs its champion; rule per line |
| governance | `promote_or_not` | branch: `model_card` and `await_approval` only when some line is promoted |
| governance | `model_card` | one model card (Markdown + PDF) listing each line's change, e-mailed |
| governance | `await_approval`, `apply_approval` | waits for Variable `reserving_approval__<V>`; decided per line |
| reserving | `refit` | each line's champion refitted on V's data (routine); none yet: the chain-ladder fallback |
| reserving | `lines`, `reserve_segment` | ultimate, case reserves, IBNR, unpaid (and range) per origin; task per line |
| reserving | `analyse` | analysis of change per line against V-1 (emergence, new origins, model change); hold reasons |
| reserving | `publish` | all lines published atomically as this run's version for V; HELD (not current) on a hold |
| signoff | `hold_or_not` | branch: `await_signoff` when held, else `within_tolerance` |
| signoff | `await_signoff`, `apply_signoff` | waits for Variable `reserving_signoff__<V>`; sign-off makes it current |
| signoff | `signed_off` | only signed-off numbers go on to the report |
| reporting | `report`, `email_report` | the PDF reserve report of V's current numbers, e-mailed to the chief actuary |

Every task failure posts to Slack (connection `reserving_slack`); each run's outcome goes to `pipeline_runs`.
The groups are built in `include/reserving/dag_groups.py`; each task calls one function of `include/reserving/stages/`.

Runs execute oldest first, one at a time. Params: `valuation_date` (a month end; required for a manual run without
a logical date, the way to trigger one), `restated` (latest knowledge instead of what was recorded by V),
`rerun_earlier_month` (publish V although a later month is current), `force_retrain`, `approval_timeout_seconds`,
`signoff_timeout_seconds`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag

from include.reserving.dag_groups import (
    governance_group,
    input_group,
    reporting_group,
    reserving_group,
    signoff_group,
    training_group,
)
from include.reserving.notify import RunHealth, TaskFailureAlert


@dag(
    dag_id="monthly_reserving_pipeline",
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "reserving",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=10),
        "on_failure_callback": TaskFailureAlert(),
    },
    doc_md=__doc__,
    tags=["reserving", "ibnr"],
    on_success_callback=RunHealth("success"),
    on_failure_callback=RunHealth("failed"),
    params={
        "valuation_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Valuation date",
            description=(
                "Month end to value as at (YYYY-MM-DD). Empty: the day before the data interval end. Required when "
                "the run has no logical date (the way to trigger a manual run)."
            ),
        ),
        "restated": Param(
            False,
            type="boolean",
            title="Restated data",
            description="Use everything known now instead of only what was recorded by the valuation date.",
        ),
        "rerun_earlier_month": Param(
            False,
            type="boolean",
            title="Re-run an earlier month",
            description=(
                "Publish this month even though a later month is already current (an intentional re-run). Without "
                "it such a run stops at input.run_order; backfills and restated runs need no flag."
            ),
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
        "signoff_timeout_seconds": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Sign-off timeout (seconds)",
            description="How long held numbers wait for a sign-off. Empty: the signoff_timeout_seconds setting.",
        ),
    },
)
def monthly_reserving_pipeline():
    drift_decision = input_group()
    evaluation, skip_training = training_group(drift_decision)
    gates = governance_group(evaluation, drift_decision)
    published = reserving_group([skip_training, *gates])
    reporting_group(published, after=signoff_group(published))


monthly_reserving_pipeline()

"""
# Monthly reserving pipeline

Values IBNR reserves as at the last day of the closed month (the **valuation date** V): the run for the data
interval [2024-01-01, 2024-02-01) fires on 2024-02-01 and values as at 2024-01-31.

Stages:

1. **ingest**: the claims book as it stood at V (transactions dated and recorded by V), aggregated in the
   warehouse into triangle cells and a claim-level snapshot keyed by V.

Runs execute oldest first, one at a time. Trigger a specific month with the `valuation_date` param; ask for
restated data (latest knowledge instead of what was recorded by V) with `restated`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronDataIntervalTimetable, Param, dag, get_current_context, task

DEFAULT_ARGS = {
    "owner": "reserving",
    "retries": 2,
    "retry_delay": dt.timedelta(minutes=1),
    "retry_exponential_backoff": True,
}


def _run_facts() -> dict:
    """Valuation date, basis and run id of the current run, from its data interval and params."""
    from include.reserving.runtime import resolve_valuation_date

    context = get_current_context()
    params = context["params"]
    valuation_date = resolve_valuation_date(context.get("data_interval_end"), params.get("valuation_date"))
    return {
        "valuation_date": valuation_date,
        "basis": "restated" if params.get("restated") else "as_recorded",
        "run_id": context["run_id"],
    }


@dag(
    dag_id="monthly_reserving_pipeline",
    schedule=CronDataIntervalTimetable("@monthly", timezone="UTC"),
    start_date=dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["reserving", "ibnr"],
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
    },
)
def monthly_reserving_pipeline():
    @task
    def ingest() -> dict:
        """Snapshot the book as at V into triangle cells and claim features (replaces V's partition)."""
        from include.reserving.config import load_settings, warehouse_url
        from include.reserving.db import make_engine
        from include.reserving.ingest import ingest as run_ingest

        facts = _run_facts()
        settings = load_settings()
        engine = make_engine(warehouse_url(settings))
        result = run_ingest(
            engine,
            facts["valuation_date"],
            basis=facts["basis"],
            origin_months=settings.origin_months,
            development_months=settings.development_months,
            run_id=facts["run_id"],
        )
        return result.as_xcom()

    ingest()


monthly_reserving_pipeline()

"""DAG integrity: imports cleanly, documented shape, no work at parse time."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import PROJECT

DAG_FILE = PROJECT / "dags" / "monthly_reserving_pipeline.py"
EXPECTED_TASKS = {
    "input.contract",
    "input.land",
    "input.run_order",
    "input.reconcile",
    "input.ingest",
    "input.validate",
    "input.plausibility",
    "input.drift",
    "training.retrain_or_not",
    "training.train",
    "training.evaluate",
    "training.skip_training",
    "governance.promote_or_not",
    "governance.await_approval",
    "governance.apply_approval",
    "governance.no_promotion",
    "governance.model_card",
    "reserving.refit",
    "reserving.lines",
    "reserving.reserve_segment",
    "reserving.analyse",
    "reserving.publish",
    "signoff.hold_or_not",
    "signoff.await_signoff",
    "signoff.apply_signoff",
    "signoff.signed_off",
    "signoff.within_tolerance",
    "reporting.report",
    "reporting.email_report",
}


def test_dag_shape(pipeline_dag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = pipeline_dag
    assert dag.dag_id == "monthly_reserving_pipeline"
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 0 1 * *" and str(dag.timetable.timezone) == "UTC"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {"reserving", "ibnr"} <= set(dag.tags)
    assert dag.doc_md and "valuation date" in dag.doc_md.lower()
    assert set(dag.task_ids) == EXPECTED_TASKS
    assert set(dag.params) >= {
        "valuation_date",
        "restated",
        "rerun_earlier_month",
        "force_retrain",
        "approval_timeout_seconds",
    }
    for task in dag.tasks:
        assert task.owner == "reserving"
    # deterministic failures are not retried; I/O steps retry with back-off
    assert dag.get_task("input.validate").retries == 0
    # nothing reads the data before the contract check and the reconciliation passed
    assert dag.get_task("input.contract").retries == 0 and dag.get_task("input.reconcile").retries == 0
    assert dag.get_task("input.contract").upstream_task_ids == set()
    assert dag.get_task("input.land").upstream_task_ids == {"input.contract"}
    # a month the run may not value (stale book, later valuation current) is refused before anything is ingested
    assert dag.get_task("input.run_order").upstream_task_ids == {"input.land"}
    assert dag.get_task("input.run_order").retries == 0
    assert dag.get_task("input.reconcile").upstream_task_ids == {"input.run_order"}
    assert dag.get_task("input.ingest").upstream_task_ids == {"input.reconcile"}
    plausibility = dag.get_task("input.plausibility")
    assert plausibility.retries == 0
    assert plausibility.upstream_task_ids == {"input.validate"}
    assert plausibility.downstream_task_ids == {"input.drift"}
    assert dag.get_task("input.ingest").retries == 2 and dag.get_task("input.ingest").retry_exponential_backoff
    for sensor_id in ("governance.await_approval", "signoff.await_signoff"):
        sensor = dag.get_task(sensor_id)
        assert sensor.mode == "reschedule" and 0 < sensor.timeout < float("inf")
    assert dag.get_task("signoff.apply_signoff").retries == 0
    assert dag.get_task("governance.apply_approval").retries == 0 and dag.get_task("reserving.refit").retries == 0
    # every other task is a retried_task: its deterministic errors fail it at once; the rest are retried
    retried = [t for t in dag.tasks if t.retries and hasattr(t, "python_callable")]
    assert len(retried) >= 12
    assert [t.task_id for t in retried if not getattr(t.python_callable, "fails_at_once", False)] == []
    assert dag.get_task("reporting.report").trigger_rule == "none_failed_min_one_success"
    assert dag.get_task("reserving.refit").trigger_rule == "none_failed_min_one_success"
    # one mapped task per line of business
    assert dag.get_task("reserving.reserve_segment").is_mapped
    assert dag.on_success_callback and dag.on_failure_callback
    assert all(t.on_failure_callback for t in dag.tasks if not t.is_mapped)


PARSE_PROBE = f"""
import importlib.util, time, json
import airflow.sdk, airflow.settings
from sqlalchemy import event
queries = []
if airflow.settings.engine is not None:
    event.listen(airflow.settings.engine, "before_cursor_execute", lambda *a, **k: queries.append(a[2]))
import airflow.sdk.bases.hook as hook
lookups = []
original = hook.BaseHook.get_connection
hook.BaseHook.get_connection = classmethod(lambda cls, conn_id: lookups.append(conn_id) or original(conn_id))
start = time.process_time()
spec = importlib.util.spec_from_file_location("dagfile", {str(DAG_FILE)!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps({{"cpu": time.process_time() - start, "queries": queries, "lookups": lookups}}))
"""


def test_parsing_does_no_work(airflow_db):
    """Zero metadata queries, zero connection look-ups and well under a second of CPU to parse."""
    import json

    out = subprocess.run([sys.executable, "-c", PARSE_PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["queries"] == []
    assert probe["lookups"] == []
    assert probe["cpu"] < 1.0

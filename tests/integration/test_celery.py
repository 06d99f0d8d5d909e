"""CeleryExecutor: one month end-to-end with Redis as broker and two workers; the per-line tasks run on both.

Services on 127.0.0.1: api-server, scheduler, dag-processor and two ``airflow celery worker`` processes
(``--celery-hostname w1@%h`` / ``w2@%h``, each with its own log-server port and concurrency 1, so that three mapped
tasks queued together cannot all land on one worker). Broker: Redis DB 5 (flushed before and after, nothing else);
result backend: the metadata PostgreSQL database. Two workers on one machine share its FQDN, so each worker process
gets its own ``hostname_callable`` answer (``w1`` / ``w2``): ``task_instance.hostname`` then names the worker that ran
the task, and each worker's own log (``Executing workload in Celery: ... id=<ti id>``) confirms it.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlalchemy import text

from include.reserving.warehouse.reserves import current_reserves, versions
from tests.integration.airflow_services import (
    DAG_ID,
    Actuary,
    AirflowServices,
    Warehouse,
    pg_admin_engine,
    task_instances,
)
from tests.integration.conftest import CHEAP_SEARCH, SMALL_BOOK

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1200)]

REDIS_URL = os.environ.get("RESERVING_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _require(service: str, check) -> None:
    try:
        check()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail(f"{service} unreachable under CI=true: {exc}", pytrace=False)
        pytest.skip(f"{service} unreachable: {exc}")


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()  # only this test's DB number
    finally:
        client.close()


def _pg_ping() -> None:
    with pg_admin_engine().connect() as conn:
        conn.execute(text("select 1"))


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, request):
    _require("PostgreSQL", _pg_ping)
    _require("Redis", _flush_redis)
    tmp = tmp_path_factory.mktemp("airflow-celery")
    warehouse = Warehouse(tmp / "artifacts")
    services = AirflowServices(
        tmp / "airflow-home",
        executor="CeleryExecutor",
        env={
            "AIRFLOW_CONN_RESERVING_DB": warehouse.conn_uri,
            "RESERVING_ARTIFACT_ROOT": str(warehouse.artifacts),
            "RESERVING_APPROVAL_POKE_SECONDS": "2",
            "RESERVING_APPROVAL_TIMEOUT_SECONDS": "900",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            **CHEAP_SEARCH,
        },
    )
    failed_before = request.session.testsfailed
    try:
        services.start()
        services.start_celery_workers(["w1", "w2"], concurrency=1)
        with services.api() as api:
            services.wait_for_dag(api)
            api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        yield services, warehouse
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n===== Airflow service logs ({services.logs}) =====\n{services.log_tails(8000)}")
        services.close()
        warehouse.drop()
        _flush_redis()


def test_one_month_on_two_celery_workers_spreads_the_mapped_lines(celery_stack):
    services, warehouse = celery_stack
    warehouse.reset(SMALL_BOOK)
    api = services.api()
    with Actuary(services, warehouse) as actuary:
        run = api.post(
            f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": "celery_2023-12-31", "logical_date": "2024-01-01T00:00:00Z"}
        )
        run = run.raise_for_status().json()
        valuation_date = dt.date.fromisoformat(run["data_interval_end"][:10]) - dt.timedelta(days=1)
        assert valuation_date == dt.date(2023, 12, 31)
        run = services.wait_for_run(api, run["dag_run_id"], 900)
    assert actuary.errors == []
    assert run["state"] == "success", run
    assert list(actuary.approved) == [valuation_date]

    tis = task_instances(api, run["dag_run_id"])
    # an EmptyOperator (signoff.within_tolerance) succeeds in the scheduler without running on any worker
    ran = [ti for ti in tis if ti["state"] == "success" and ti["operator"] != "EmptyOperator"]
    # every task ran on a Celery worker (none in the scheduler), and the mapped lines ran on both workers
    assert {ti["hostname"] for ti in ran} <= {"w1", "w2"}, {ti["task_id"]: ti["hostname"] for ti in ran}
    mapped = [ti for ti in tis if ti["task_id"] == "reserving.reserve_segment"]
    assert len(mapped) >= 2 and all(ti["state"] == "success" for ti in mapped)
    by_worker = {ti["map_index"]: ti["hostname"] for ti in mapped}
    assert set(by_worker.values()) == {"w1", "w2"}, by_worker

    # the workers' own logs agree: each received exactly the mapped task instances it reports
    for name in ("w1", "w2"):
        log = services.services[f"worker-{name}"].log_path.read_text(errors="replace")
        assert "Executing workload in Celery" in log
        for ti in mapped:
            assert (ti["id"] in log) == (ti["hostname"] == name), (name, ti["map_index"], ti["hostname"])

    engine = warehouse.engine()
    table = versions(engine, valuation_date)
    assert table[["version", "is_current", "status", "run_id"]].values.tolist() == [
        [1, True, "approved", run["dag_run_id"]]
    ]
    published = current_reserves(engine, valuation_date)
    assert published["segment"].nunique() == len(mapped)
    assert list(warehouse.artifacts.rglob(f"reserve_report_{valuation_date:%Y-%m-%d}.pdf"))
    engine.dispose()

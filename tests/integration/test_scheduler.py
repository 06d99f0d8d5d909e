"""Real Airflow services drive the monthly DAG: unpausing over a stale book; a REST-triggered run whose scheduler is
killed mid-run; a manual run without a logical date whose failed gate is recovered by clearing ``validate`` alone,
then a backfill over the same months.

One api-server, scheduler and dag-processor (LocalExecutor) per module, on 127.0.0.1 with free ports and a fresh
PostgreSQL metadata database; the warehouse is a PostgreSQL database of its own (tasks run in parallel processes),
reset to the small synthetic book before each test. Scheduled runs are on: unpausing the DAG (in the fixture) creates
the run of the latest closed month, which ``input.run_order`` refuses at once (the small book ends years before), so
it stands in front of no run a test starts. The actuary approves through the REST API, as a person with the ``op``
role would.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from devtools.synth import write_book
from include.reserving import schema
from include.reserving.warehouse import registry
from include.reserving.warehouse.core import make_engine
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

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1500)]

RUN_TIMEOUT = 600


def _require_postgres() -> None:
    try:
        with pg_admin_engine().connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001
        from tests.conftest import IN_CI

        if IN_CI:
            pytest.fail(f"PostgreSQL unreachable under CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unreachable: {exc}")


class Stack:
    """The module's services plus its warehouse (with the artifact root)."""

    def __init__(self, services: AirflowServices, warehouse: Warehouse):
        self.af, self.warehouse = services, warehouse
        self.unpaused_run: dict = {}  # the scheduled run unpausing the DAG created, ended
        self.unpaused_health: list[tuple] = []

    @property
    def artifacts(self) -> Path:
        return self.warehouse.artifacts

    def reset_warehouse(self) -> None:
        """Empty warehouse with every table, the small book loaded, no artifacts."""
        self.warehouse.reset(SMALL_BOOK)

    def engine(self):
        return self.warehouse.engine()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    _require_postgres()
    tmp = tmp_path_factory.mktemp("airflow-services")
    warehouse = Warehouse(tmp / "artifacts")
    services = AirflowServices(
        tmp / "airflow-home",
        env={
            "AIRFLOW_CONN_RESERVING_DB": warehouse.conn_uri,
            "RESERVING_ARTIFACT_ROOT": str(warehouse.artifacts),
            "RESERVING_APPROVAL_POKE_SECONDS": "2",
            "RESERVING_APPROVAL_TIMEOUT_SECONDS": "900",
            # the backfilled months lie beyond the small book's last month (a stalled extract, which the movement
            # hold rightly stops for sign-off): these tests are about scheduling, so the hold is out of reach
            "RESERVING_HOLD_MOVEMENT_TOLERANCE": "1000000",
            "RESERVING_HOLD_UNEXPLAINED_TOLERANCE": "1000000",
            "RESERVING_HOLD_AE_FACTOR": "1000000",
            # scheduling, not the model search, is under test here (test_backtest.py tests the search): training
            # still runs long enough for the scheduler kill to land inside it
            **CHEAP_SEARCH,
        },
    )
    failed_before = request.session.testsfailed
    try:
        services.start()
        api = services.api()
        services.wait_for_dag(api)
        stack = Stack(services, warehouse)
        stack.reset_warehouse()
        # "Unpause": the scheduler creates the run of the last closed month (catchup is off) at once
        api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        stack.unpaused_run = _scheduled_run(services, api)
        stack.unpaused_health = _pipeline_runs(warehouse.engine(), expected=1)
        yield stack
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n===== Airflow service logs ({services.logs}) =====\n{services.log_tails(8000)}")
        services.close()
        warehouse.drop()


@pytest.fixture
def dump_logs_on_failure(stack, request):
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        print(f"\n===== Airflow service logs ({stack.af.logs}) =====\n{stack.af.log_tails(8000)}")


def _scheduled_run(services: AirflowServices, api, timeout: float = 120) -> dict:
    """The scheduled run unpausing the DAG created, once it has ended."""
    deadline = time.monotonic() + timeout
    while not (runs := _runs_of_type(api, "scheduled")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"unpausing the DAG created no scheduled run\n{services.log_tails()}")
        time.sleep(1)
    return services.wait_for_run(api, runs[-1]["dag_run_id"], RUN_TIMEOUT)


def test_unpausing_over_a_stale_book_refuses_the_last_closed_month_and_publishes_nothing(stack):
    """Unpausing (catchup off) starts the run of the last closed month, years after the small book's last policy
    month: ``input.run_order`` refuses it by name before anything is ingested, nothing is published."""
    run, api = stack.unpaused_run, stack.af.api()
    interval_end = dt.date.fromisoformat(run["data_interval_end"][:10])
    today = dt.datetime.now(dt.UTC).date()
    assert interval_end == today.replace(day=1), run  # the last closed month: what "Unpause" values
    assert run["state"] == "failed", run
    states = {ti["task_id"]: ti["state"] for ti in task_instances(api, run["dag_run_id"])}
    assert states["input.contract"] == "success" and states["input.run_order"] == "failed", states
    assert states["input.ingest"] == "upstream_failed" and states["reserving.publish"] == "upstream_failed", states
    log = api.get(
        f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/input.run_order/logs/1",
        headers={"Accept": "application/json"},
    ).text
    assert f"refusing to value {_valuation_date(run)} (as_recorded): the book shows no activity" in log
    assert "earned exposure ends with 2024-03" in log
    assert stack.unpaused_health == [(run["dag_run_id"], "failed")]
    # the fixture's warehouse was not reset since: nothing was ingested or published for the month
    engine = stack.engine()
    assert versions(engine).empty
    assert pd_segments(engine, _valuation_date(run)) == []
    engine.dispose()


def _valuation_date(run: dict) -> dt.date:
    return dt.date.fromisoformat(run["data_interval_end"][:10]) - dt.timedelta(days=1)


def _trigger(api, run_id: str, logical_date: str) -> dict:
    resp = api.post(f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": logical_date})
    resp.raise_for_status()
    return resp.json()


def _assert_published(stack: Stack, run: dict, valuation_date: dt.date) -> None:
    engine = stack.engine()
    table = versions(engine, valuation_date)
    assert table[["version", "is_current", "status", "run_id"]].values.tolist() == [
        [1, True, "approved", run["dag_run_id"]]
    ]
    published = current_reserves(engine, valuation_date)
    assert len(published) > 0 and set(published["segment"]) == set(pd_segments(engine, valuation_date)), (
        "every line is published"
    )
    assert round(published["unpaid"].sum(), 2) == pytest.approx(table["unpaid_total"].iloc[0], abs=0.01)
    assert round(published["ibnr"].sum(), 2) == pytest.approx(table["ibnr_total"].iloc[0], abs=0.01)
    reports = list(stack.artifacts.rglob(f"reserve_report_{valuation_date:%Y-%m-%d}.pdf"))
    assert len(reports) == 1 and reports[0].stat().st_size > 1000
    engine.dispose()


def _pipeline_runs(engine, expected: int, timeout: float = 90) -> list[tuple]:
    """pipeline_runs rows: written by the DAG's success callback, which the dag-processor runs after the run ends."""
    pr = schema.pipeline_runs
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(pr.c.run_id, pr.c.state).order_by(pr.c.run_id)).all()
        if len(rows) >= expected or time.monotonic() > deadline:
            return [tuple(r) for r in rows]
        time.sleep(2)


def pd_segments(engine, valuation_date: dt.date) -> list[str]:
    tc = schema.triangle_cells
    with engine.connect() as conn:
        return (
            conn.execute(select(tc.c.segment).where(tc.c.valuation_date == valuation_date).distinct()).scalars().all()
        )


def _runs_of_type(api, run_type: str) -> list[dict]:
    resp = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": run_type, "order_by": "logical_date", "limit": 50})
    return resp.raise_for_status().json()["dag_runs"]


JANUARY = dt.date(2024, 1, 31)


def test_manual_run_without_logical_date_recovers_by_clearing_validate_then_a_backfill_runs_every_month(
    stack, dump_logs_on_failure
):
    """A REST-triggered manual run with no logical date (V from the param) fails the gate on a bad claimant age;
    the age is fixed in the source and `input.validate` is cleared (with downstream, not `ingest`): it takes the
    snapshot again and the run publishes January. Then `airflow backfill create` over Jan-Feb 2024 runs both
    months, one at a time, oldest first: the manual run took no logical date a backfill needs (the old convention,
    logical date 2024-02-01 for January, made the backfill skip February). Two months show the order and the
    one-at-a-time rule; the monthly sequence test covers twelve in-process."""
    stack.reset_warehouse()
    api, engine, c = stack.af.api(), stack.engine(), schema.claims
    with engine.begin() as conn:
        claim_id, age = conn.execute(
            select(c.c.claim_id, c.c.claimant_age).where(c.c.report_date <= JANUARY).order_by(c.c.claim_id).limit(1)
        ).one()
        conn.execute(c.update().where(c.c.claim_id == claim_id).values(claimant_age=500))
    with Actuary(stack.af, stack.warehouse) as actuary:
        body = {"logical_date": None, "conf": {"valuation_date": JANUARY.isoformat()}}
        manual = api.post(f"/dags/{DAG_ID}/dagRuns", json=body).raise_for_status().json()
        assert manual["logical_date"] is None and manual["data_interval_end"] is None, manual
        manual_id = manual["dag_run_id"]
        assert stack.af.wait_for_run(api, manual_id, RUN_TIMEOUT)["state"] == "failed"
        states = {ti["task_id"]: ti["state"] for ti in task_instances(api, manual_id)}
        assert states["input.validate"] == "failed" and states["input.plausibility"] == "upstream_failed", states

        with engine.begin() as conn:  # the source fixed; only validate (and what follows) runs again
            conn.execute(c.update().where(c.c.claim_id == claim_id).values(claimant_age=age))
        clear = {"dry_run": False, "dag_run_id": manual_id, "task_ids": ["input.validate"], "only_failed": False}
        api.post(f"/dags/{DAG_ID}/clearTaskInstances", json={**clear, "include_downstream": True}).raise_for_status()
        manual = stack.af.wait_for_run(api, manual_id, RUN_TIMEOUT)
        assert manual["state"] == "success", manual
        tis = {ti["task_id"]: ti for ti in task_instances(api, manual_id) if ti["map_index"] == -1}
        assert (tis["input.ingest"]["try_number"], tis["input.validate"]["try_number"]) == (1, 2)

        # --max-active-runs 1: a backfill does not honour the DAG's max_active_runs (Airflow 3.3 gives each backfill
        # its own limit, default 10), and the months must run one at a time, oldest first
        stack.af.cli(
            "backfill", "create", "--dag-id", DAG_ID, "--from-date", "2024-01-01", "--to-date", "2024-02-29",
            "--max-active-runs", "1",
        )  # fmt: skip
        runs = _runs_of_type(api, "backfill")
        assert [r["logical_date"][:10] for r in runs] == ["2024-01-01", "2024-02-01"]
        for r in runs:
            stack.af.wait_for_run(api, r["dag_run_id"], RUN_TIMEOUT)
        runs = _runs_of_type(api, "backfill")
    assert actuary.errors == []
    assert [r["state"] for r in runs] == ["success"] * 2, runs
    valuation_dates = [_valuation_date(r) for r in runs]
    assert valuation_dates == [JANUARY, dt.date(2024, 2, 29)]

    # oldest first, one at a time: each run started after the previous one ended
    starts = [dt.datetime.fromisoformat(r["start_date"]) for r in runs]
    ends = [dt.datetime.fromisoformat(r["end_date"]) for r in runs]
    assert starts == sorted(starts)
    assert all(starts[i + 1] >= ends[i] for i in range(1)), list(zip(starts, ends, strict=True))
    backfill = api.get("/backfills", params={"dag_id": DAG_ID}).raise_for_status().json()["backfills"]
    assert len(backfill) == 1

    # the recovered gate judged the fixed source: the snapshot holds the claim's real age
    s = schema.snapshot_claims
    with engine.connect() as conn:
        snapshot_age = conn.execute(
            select(s.c.claimant_age).where(s.c.valuation_date == JANUARY, s.c.claim_id == claim_id)
        ).scalar_one()
    assert snapshot_age == age
    # January: the manual run's version, then the backfill's (current); February once
    table = versions(engine)
    assert table[["valuation_date", "version", "is_current", "run_id"]].values.tolist() == [
        [JANUARY, 1, False, manual_id],
        [JANUARY, 2, True, runs[0]["dag_run_id"]],
        [dt.date(2024, 2, 29), 1, True, runs[1]["dag_run_id"]],
    ]
    _assert_published(stack, runs[1], dt.date(2024, 2, 29))
    assert sorted(p.name for p in stack.artifacts.rglob("reserve_report_*.pdf")) == [
        "reserve_report_2024-01-31.pdf",
        "reserve_report_2024-01-31.pdf",
        "reserve_report_2024-02-29.pdf",
    ]
    # four rows: the manual run's failed execution stays beside its cleared success, then the two backfill months
    health = _pipeline_runs(engine, expected=4)
    assert {(r["dag_run_id"], "success") for r in runs} | {(manual_id, "success")} <= set(health), health
    # the first month had no champion: trained and approved; every approval named its month's challenger
    assert JANUARY in actuary.approved
    engine.dispose()


def _clean_cell_count(tmp_path: Path, valuation_date: dt.date) -> int:
    """triangle_cells rows of one clean ingest of the same book (scratch SQLite warehouse, in-process)."""
    from include.reserving.config import Settings
    from include.reserving.ingest import ingest

    url = f"sqlite:///{tmp_path / 'clean.db'}"
    engine = make_engine(url)
    schema.create_all(engine)
    write_book(url, SMALL_BOOK, progress=False)
    settings = Settings()
    ingest(engine, valuation_date, origin_months=settings.origin_months, development_months=settings.development_months)
    with engine.connect() as conn:
        count = _cell_count(conn, valuation_date)
    engine.dispose()
    return count


def _cell_count(conn, valuation_date: dt.date) -> int:
    tc = schema.triangle_cells
    return conn.execute(select(func.count()).select_from(tc).where(tc.c.valuation_date == valuation_date)).scalar_one()


def _duplicates(engine, table, *columns: str) -> list:
    cols = [table.c[c] for c in columns]
    with engine.connect() as conn:
        return conn.execute(select(*cols, func.count()).group_by(*cols).having(func.count() > 1)).all()


def _wait_for_task_state(
    stack: Stack, api, run_id: str, task_id: str, state: str, timeout: float = RUN_TIMEOUT
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.af.check_alive()
        ti = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}").raise_for_status().json()
        if ti["state"] == state:
            return ti
        if ti["state"] in ("failed", "upstream_failed"):
            raise AssertionError(f"{task_id} is {ti['state']}")
        time.sleep(1)
    raise TimeoutError(f"{task_id} never reached {state}")


def _wait_for_log(stack: Stack, api, run_id: str, task_id: str, needle: str, timeout: float = RUN_TIMEOUT) -> None:
    """Until the first try's log (read through the API while the task runs) contains ``needle``."""
    url = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.af.check_alive()
        if needle in api.get(url, headers={"Accept": "application/json"}).text:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{task_id}'s log never said {needle!r}")


def test_rest_run_survives_a_scheduler_kill_is_approved_through_a_variable_and_publishes_once(
    stack, dump_logs_on_failure, tmp_path
):
    """POST /api/v2/dags/.../dagRuns with a logical date; SIGKILL the scheduler's process group while training runs
    and start it again; the actuary sets the Variable via POST /api/v2/variables. The run completes, the killed try
    runs again, and nothing is written twice."""
    stack.reset_warehouse()
    api = stack.af.api()
    scheduler = stack.af.services["scheduler"]
    with Actuary(stack.af, stack.warehouse) as actuary:
        run = _trigger(api, "api_2023-10-31", "2023-11-01T00:00:00Z")
        # a manual run's data interval ends at its logical date: V is the day before
        assert (run["data_interval_start"][:10], run["data_interval_end"][:10]) == ("2023-10-01", "2023-11-01")
        valuation_date = _valuation_date(run)
        assert valuation_date == dt.date(2023, 10, 31)
        _wait_for_task_state(stack, api, run["dag_run_id"], "training.train", "running")
        # inside the search: its first candidate is scored and the others are still to come
        _wait_for_log(stack, api, run["dag_run_id"], "training.train", "candidate 1 of ")
        pgid = scheduler.proc.pid
        scheduler.stop(signal.SIGKILL)
        assert not _group_alive(pgid), "every process of the scheduler's group (executor workers, tasks) is gone"
        time.sleep(2)
        scheduler.start()
        run = stack.af.wait_for_run(api, run["dag_run_id"], RUN_TIMEOUT + 300)
    assert actuary.errors == []
    assert run["state"] == "success", run
    assert list(actuary.approved) == [valuation_date]

    tis = {(ti["task_id"], ti["map_index"]): ti for ti in task_instances(api, run["dag_run_id"])}
    states = {key: ti["state"] for key, ti in tis.items()}
    for task_id in ("training.train", "governance.await_approval", "governance.apply_approval", "reserving.publish"):
        assert states[(task_id, -1)] == "success", states
    assert states[("governance.no_promotion", -1)] == "skipped"
    assert tis[("training.train", -1)]["try_number"] >= 2, tis[("training.train", -1)]  # the killed try ran again
    mapped = [ti for (task_id, _), ti in tis.items() if task_id == "reserving.reserve_segment"]
    assert mapped and all(ti["state"] == "success" for ti in mapped)

    engine = stack.engine()
    _assert_published(stack, run, valuation_date)
    assert len(mapped) == len(pd_segments(engine, valuation_date))
    approvals = schema.approvals
    with engine.connect() as conn:
        decided = conn.execute(select(approvals.c.decision, approvals.c.decided_by, approvals.c.model_version)).all()
        cells = _cell_count(conn, valuation_date)
        registry_rows = conn.execute(select(func.count()).select_from(schema.model_registry)).scalar_one()
        staged = conn.execute(select(func.count()).select_from(schema.triangle_cells_staging)).scalar_one()
    # one decision per line on the card, each the actuary's approval of the card's challenger
    assert {(r.decision, r.decided_by) for r in decided} == {("approve", "actuary")}
    # the card's proposal (one challenger, or "<V>-lines-<hash>" naming several) was approved: each line's row names
    # that line's challenger as the promotion decisions sent it to approval
    sent = {r.challenger_version for r in registry.decisions_at(engine, valuation_date) if r.decision == "promote"}
    assert {r.model_version for r in decided} == sent
    assert actuary.approved[valuation_date] in sent or "-lines-" in actuary.approved[valuation_date]
    assert cells == _clean_cell_count(tmp_path, valuation_date)
    assert staged == 0
    assert registry_rows >= 1
    assert _duplicates(engine, schema.model_registry, "spec_hash", "trained_valuation_date", "data_hash") == []
    assert _duplicates(engine, schema.champion_history, "valuation_date", "segment", "model_version", "action") == []
    assert _duplicates(engine, schema.reserve_versions, "valuation_date", "run_id") == []
    assert _duplicates(engine, schema.approvals, "valuation_date", "segment", "model_version") == []
    assert _duplicates(engine, schema.snapshot_claims, "valuation_date", "basis", "claim_id") == []
    assert _pipeline_runs(engine, expected=1) == [(run["dag_run_id"], "success")]

    # no SMTP connection: the report e-mail is skipped with a reason, not a failure
    xcom = (
        api.get(
            f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/reporting.email_report/xcomEntries/return_value"
        )
        .raise_for_status()
        .json()
    )
    assert "'sent': False" in str(xcom["value"]) or '"sent": false' in str(xcom["value"])
    engine.dispose()


def _group_alive(pgid: int, wait: float = 15) -> bool:
    """Whether any live (non-zombie) process is still in the group after up to ``wait`` seconds (SIGKILL is async)."""
    import subprocess

    deadline = time.monotonic() + wait
    while True:
        out = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout.splitlines()
        alive = [line for line in out if line.split()[0] == str(pgid) and not line.split()[1].startswith("Z")]
        if not alive or time.monotonic() > deadline:
            return bool(alive)
        time.sleep(0.5)

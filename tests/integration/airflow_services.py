"""Real Airflow services for tests and benchmarks: api-server, scheduler, dag-processor (and Celery workers).

Everything binds 127.0.0.1 on free ports; the metadata database is a fresh PostgreSQL database (created here, dropped
on ``close()``); each service runs in a process group of its own with its output in a log file under the home folder,
and ``close()`` (also registered with ``atexit``) stops every group: SIGTERM, then SIGKILL.

Usage::

    with AirflowServices(tmp, env={"AIRFLOW_CONN_RESERVING_DB": url}) as af:
        af.start()                      # migrate, api-server, dag-processor, scheduler
        api = af.api()                  # httpx client with a bearer token from /auth/token
        af.wait_for_dag("monthly_reserving_pipeline")

No pytest dependency: ``benchmarks/bench_runs.py`` uses the same class.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

PROJECT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("RESERVING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
DAG_ID = "monthly_reserving_pipeline"
TERMINAL = ("success", "failed")

_LIVE: set[AirflowServices] = set()


def worker_hostname() -> str:
    """``[core] hostname_callable`` for tests: a per-process name (``RESERVING_TEST_HOSTNAME``), else the FQDN.

    Two Celery workers on one machine report the same FQDN; in a real deployment each worker is its own host.
    Giving each worker process its own name makes ``task_instance.hostname`` say which worker ran a task.
    """
    return os.environ.get("RESERVING_TEST_HOSTNAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin_engine():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_pg_database(prefix: str) -> str:
    """A fresh PostgreSQL database on the test server; returns its SQLAlchemy URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    engine = pg_admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def airflow_conn_uri(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg2://...`` as an Airflow connection URI (``postgresql://...``)."""
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://", 1)


class Service:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop)
        log.write(f"\n===== start {' '.join(self.argv)} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self._log = log
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=str(PROJECT),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() reaches every child
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Signal the whole process group; SIGKILL whatever is left after ``grace`` seconds."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if sig != signal.SIGKILL:
            _killpg(pgid, sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _killpg(pgid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self._log.close()

    def tail(self, chars: int = 6000) -> str:
        try:
            data = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return data[-chars:]


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class AirflowServices:
    """Airflow 3 services on loopback with a PostgreSQL metadata database of their own."""

    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        executor: str = "LocalExecutor",
        parallelism: int = 4,
    ):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs = self.home / "service-logs"
        self.logs.mkdir(exist_ok=True)
        self.executor = executor
        self.api_port = free_port()
        self.meta_url: str | None = None
        self.services: dict[str, Service] = {}
        self.extra_env = dict(env or {})
        self.parallelism = parallelism
        self._token: str | None = None
        self.env: dict[str, str] = {}

    # --- environment -------------------------------------------------------------------------------------------

    def _build_env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RESERVING_", "PYTEST"))}
        venv_bin = str(Path(sys.executable).parent)
        base["PATH"] = venv_bin + os.pathsep + base.get("PATH", "")
        api = f"http://127.0.0.1:{self.api_port}"
        env = {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            # actuary approves (the approvers setting); auditor is the tasks' read-only user for the audit log
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,actuary:op,auditor:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.meta_url or "",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "PYTHONUNBUFFERED": "1",
            "RESERVING_APPROVERS": "actuary",
            "AIRFLOW_CONN_RESERVING_AIRFLOW_API": f"http://auditor:{self._auditor_password()}@127.0.0.1:{self.api_port}",
        }
        if self.executor == "CeleryExecutor":
            env.setdefault("AIRFLOW__CELERY__RESULT_BACKEND", "db+" + airflow_conn_uri(self.meta_url or ""))
        env.update(self.extra_env)
        return env

    def _auditor_password(self) -> str:
        """The auditor's password, written into the passwords file before the api-server starts (the simple auth
        manager keeps passwords it finds there and generates the others)."""
        file = self.home / "passwords.json"
        passwords = json.loads(file.read_text()) if file.exists() else {}
        if "auditor" not in passwords:
            self.home.mkdir(parents=True, exist_ok=True)
            passwords["auditor"] = uuid.uuid4().hex
            file.write_text(json.dumps(passwords) + "\n")
        return passwords["auditor"]

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, with_scheduler: bool = True) -> None:
        """Metadata DB (fresh), migration, api-server, dag-processor, scheduler."""
        _LIVE.add(self)
        self.meta_url = create_pg_database("airflow_meta")
        self.env = self._build_env()
        self.cli("db", "migrate", timeout=900)
        for name, argv in (("api-server", ["api-server"]), ("dag-processor", ["dag-processor"])):
            self.add_service(name, argv)
        if with_scheduler:
            self.add_service("scheduler", ["scheduler"])
        self.wait_for_api()

    def add_service(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Service:
        airflow = str(Path(sys.executable).parent / "airflow")
        service = Service(name, [airflow, *argv], {**self.env, **(env or {})}, self.logs / f"{name}.log")
        service.start()
        self.services[name] = service
        return service

    def start_celery_workers(self, names: list[str], concurrency: int = 1) -> None:
        """``airflow celery worker`` per name: celery hostname ``<name>@%h``, own log-server port, own hostname."""
        for name in names:
            self.add_service(
                f"worker-{name}",
                ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency)],
                env={
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.integration.airflow_services.worker_hostname",
                    "RESERVING_TEST_HOSTNAME": name,
                    "PYTHONPATH": str(PROJECT),
                },
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # both workers answer a ping before any task is queued
            self.check_alive()
            done = subprocess.run(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "--app",
                    "airflow.providers.celery.executors.celery_executor.app",
                    "inspect",
                    "ping",
                    "--json",
                ],
                env=self.env,
                cwd=str(PROJECT),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if all(f'"{name}@' in done.stdout for name in names):
                return
            time.sleep(2)
        raise TimeoutError(f"celery workers {names} did not answer a ping\n{self.log_tails()}")

    def restart(self, name: str) -> None:
        service = self.services[name]
        service.stop()
        service.start()

    def close(self) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        if self.meta_url:
            try:
                drop_pg_database(self.meta_url)
            finally:
                self.meta_url = None
        _LIVE.discard(self)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            cwd=str(PROJECT),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def log_tails(self, chars: int = 6000) -> str:
        out = []
        for service in self.services.values():
            out.append(f"----- {service.name} ({service.log_path}) -----\n{service.tail(chars)}")
        return "\n".join(out)

    def check_alive(self) -> None:
        dead = [s.name for s in self.services.values() if s.proc is not None and not s.running]
        if dead:
            raise RuntimeError(f"services exited: {dead}\n{self.log_tails()}")

    # --- REST API ----------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_for_api(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"api-server not up within {timeout} s\n{self.log_tails()}")

    def token(self, username: str = "admin") -> str:
        passwords = json.loads((self.home / "passwords.json").read_text())
        resp = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": username, "password": passwords[username]},
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()["access_token"]

    def api(self, username: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {self.token(username)}"},
            timeout=60,
        )

    def wait_for_dag(self, api: httpx.Client, dag_id: str = DAG_ID, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            resp = api.get(f"/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            time.sleep(2)
        errors = api.get("/importErrors").text
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout} s; import errors: {errors}\n{self.log_tails()}")

    def wait_for_run(
        self, api: httpx.Client, run_id: str, timeout: float, dag_id: str = DAG_ID, poll: float = 3
    ) -> dict:
        deadline = time.monotonic() + timeout
        run = {}
        while time.monotonic() < deadline:
            self.check_alive()
            run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").raise_for_status().json()
            if run["state"] in TERMINAL:
                return run
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} still {run.get('state')} after {timeout} s\n{self.log_tails()}")


def task_instances(api: httpx.Client, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
    """Every task instance of a run (mapped ones included), following the API's pagination."""
    out: list[dict] = []
    while True:
        page = (
            api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100, "offset": len(out)})
            .raise_for_status()
            .json()
        )
        out.extend(page["task_instances"])
        if len(out) >= page["total_entries"] or not page["task_instances"]:
            return out


def dag_runs(api: httpx.Client, dag_id: str = DAG_ID) -> list[dict]:
    return (
        api.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "logical_date"})
        .raise_for_status()
        .json()["dag_runs"]
    )


@atexit.register
def _stop_everything() -> None:  # a crashed test process still leaves no service behind
    for services in list(_LIVE):
        try:
            services.close()
        except Exception:  # noqa: BLE001 (best effort at exit)
            pass


# --- the warehouse and the actuary ------------------------------------------------------------------------------


class Warehouse:
    """A PostgreSQL warehouse database of its own plus an artifact root; ``reset`` loads a book afresh."""

    def __init__(self, artifacts: Path):
        self.url = create_pg_database("reserving_wh")
        self.artifacts = Path(artifacts)

    @property
    def conn_uri(self) -> str:
        return airflow_conn_uri(self.url)

    def engine(self):
        from include.reserving.warehouse.core import make_engine

        return make_engine(self.url)

    def reset(self, book) -> None:
        """Empty warehouse with every table, ``book`` (a synth.BookSpec) loaded, no artifacts."""
        import shutil

        from devtools.synth import write_book
        from include.reserving import schema

        engine = self.engine()
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        schema.create_all(engine)
        engine.dispose()
        write_book(self.url, book, progress=False)
        shutil.rmtree(self.artifacts, ignore_errors=True)
        self.artifacts.mkdir(parents=True)

    def drop(self) -> None:
        drop_pg_database(self.url)


class Actuary(threading.Thread):
    """Watches ``promotion_decisions``; approves each pending challenger, quoting its model card's code, with
    ``POST /api/v2/variables``.

    It logs in as the ``actuary`` user (role ``op``, which may edit Variables), as a person using the UI would.
    """

    def __init__(self, services: AirflowServices, warehouse: Warehouse, decision: str = "approve"):
        super().__init__(daemon=True)
        self.services, self.warehouse, self.decision = services, warehouse, decision
        self.stop_event = threading.Event()
        self.approved: dict = {}
        self.errors: list[str] = []

    def run(self) -> None:
        from sqlalchemy import select

        from include.reserving import schema
        from include.reserving.approval import approval_key, approval_value
        from include.reserving.governance import proposal_id
        from include.reserving.warehouse import decisions

        engine = self.warehouse.engine()
        pd_ = schema.promotion_decisions
        try:
            api = self.services.api("actuary")
            while not self.stop_event.is_set():
                with engine.connect() as conn:
                    rows = conn.execute(select(pd_).where(pd_.c.decision == "promote")).all()
                cards: dict = {}  # one card per V: its lines' challengers
                for row in rows:
                    cards.setdefault(row.valuation_date, {})[row.segment] = row.challenger_version
                for valuation_date, promote in cards.items():
                    if valuation_date in self.approved:
                        continue
                    proposal = proposal_id(valuation_date, promote)
                    issued = decisions.issued(engine, decisions.MODEL, valuation_date, proposal)
                    if issued is None:  # the model card is not out yet
                        continue
                    value = approval_value(proposal, self.decision, "Test Actuary", "backtest is fine", issued.code)
                    resp = api.post("/variables", json={"key": approval_key(valuation_date), "value": value})
                    resp.raise_for_status()
                    self.approved[valuation_date] = proposal
                time.sleep(1)
        except Exception as exc:  # noqa: BLE001 (the test asserts errors == [])
            self.errors.append(repr(exc))
        finally:
            engine.dispose()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        from include.reserving.approval import approval_key

        self.stop_event.set()
        self.join(timeout=15)
        with self.services.api() as api:
            for valuation_date in self.approved:
                api.delete(f"/variables/{approval_key(valuation_date)}")

"""Real peers on 127.0.0.1 for tests: an SMTP server (aiosmtpd) and a Slack webhook receiver (http.server).

Each fixture also defines the Airflow connection pointing at its server through an ``AIRFLOW_CONN_*`` variable.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

WEBHOOK_PATH = "/services/T0000SECRET/B0000SECRET/tokenXYZsecret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- email -----------------------------------------------------------------------------------------------------


class _Inbox:
    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


def start_smtp(monkeypatch, conn_id: str = "reserving_smtp_test"):
    """A real SMTP server on 127.0.0.1 and the Airflow connection ``conn_id`` pointing at it."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        # A plain local server: no implicit SSL, no STARTTLS.
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "reserving@example.com", "timeout": 10},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return inbox, controller


@pytest.fixture
def smtp_server(monkeypatch):
    """A real SMTP server on 127.0.0.1 and the Airflow connection ``reserving_smtp_test`` pointing at it."""
    inbox, controller = start_smtp(monkeypatch)
    try:
        yield inbox
    finally:
        controller.stop()


class _Receiver(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's hook name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, json.loads(body)))
        answer = b"ok" if self.server.status == 200 else b"internal_error"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def slack_receiver(monkeypatch):
    """A webhook receiver on 127.0.0.1 and the ``slackwebhook`` connection ``reserving_slack`` with its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}"
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# --- an Airflow api-server on the tests' metadata database ------------------------------------------------------


class AirflowApi:
    """A real ``airflow api-server`` on 127.0.0.1 sharing the tests' metadata database, with simple-auth users."""

    def __init__(self, base: str, passwords: dict[str, str]):
        self.base, self.passwords = base, passwords

    def client(self, user: str):
        """An httpx client for ``/api/v2`` logged in as ``user`` (POST /auth/token, as the UI does)."""
        import httpx

        token = httpx.post(
            f"{self.base}/auth/token", json={"username": user, "password": self.passwords[user]}, timeout=30
        )
        token.raise_for_status()
        return httpx.Client(
            base_url=f"{self.base}/api/v2",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )

    def set_variable(self, user: str, key: str, value: str) -> int:
        """Set a Variable as ``user`` the way the UI does (create, or edit when it exists); the final status."""
        with self.client(user) as api:
            done = api.patch(f"/variables/{key}", json={"key": key, "value": value})
            if done.status_code == 404:
                done = api.post("/variables", json={"key": key, "value": value})
            return done.status_code

    @staticmethod
    def once_issued(engine, kind: str, valuation_date, version, act) -> tuple[threading.Thread, list]:
        """Call ``act(code)`` in a second thread as soon as a run issues a new one-time code of ``kind``
        (decisions.MODEL or decisions.NUMBERS) for ``version``, as an actuary reading the card would; the thread and
        the list its result lands in are returned."""
        import time

        from include.reserving.warehouse import decisions

        results: list = []
        earlier = decisions.issued(engine, kind, valuation_date, version)  # an earlier run's code is not this card's

        def wait_and_act():
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                issued = decisions.issued(engine, kind, valuation_date, version)
                if issued is not None and issued != earlier:
                    results.append(act(issued.code))
                    return
                time.sleep(0.2)
            results.append("the code was never issued")

        thread = threading.Thread(target=wait_and_act, daemon=True)
        thread.start()
        return thread, results

    def conn_uri(self, user: str) -> str:
        """The Airflow connection URI through which a task reads the api-server as ``user``."""
        from urllib.parse import quote

        host_port = self.base.split("://", 1)[1]
        return f"http://{quote(user, safe='')}:{quote(self.passwords[user], safe='')}@{host_port}"


@contextlib.contextmanager
def running_api_server(home: Path, users: str, settings: dict[str, str], timeout: float = 240):
    """``airflow api-server`` on a free 127.0.0.1 port with its own Airflow ``home`` and simple-auth ``users``
    ("name:role,..."); ``settings`` adds to an explicit environment (none of the test process's Airflow settings
    leak in). Yields (base URL, {user: password}); stops the server and its workers on exit."""
    port = free_port()
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "USER", "LOGNAME")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
            "SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            **settings,
        }
    )
    if env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home / 'airflow.db'}":  # a database of its own
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    log = home / "api-server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown stops the server and its workers
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"api-server not up ({process.returncode}):\n{log.read_text()[-4000:]}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        yield base, json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture(scope="session")
def airflow_api(tmp_path_factory, airflow_db):
    """One api-server per test session (per xdist worker, as the metadata database is: its start takes seconds that
    every module using it paid again) on the tests' metadata database (SQLite, shared with dag.test()). Users: ada
    (op) and cy (op) may be approvers, boss is an admin, viewer a viewer, auditor (viewer) reads the audit log."""
    from airflow.configuration import conf

    settings = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{Path(airflow_db) / 'airflow.db'}",
        "AIRFLOW__CORE__FERNET_KEY": conf.get("core", "fernet_key"),  # the tests' key: both read the Variables
    }
    users = "ada:op,cy:op,boss:admin,viewer:viewer,auditor:viewer"
    with running_api_server(tmp_path_factory.mktemp("api-home"), users, settings) as (base, passwords):
        yield AirflowApi(base, passwords)

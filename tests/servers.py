"""Real peers on 127.0.0.1 for tests: an SMTP server (aiosmtpd) and a Slack webhook receiver (http.server).

Each fixture also defines the Airflow connection pointing at its server through an ``AIRFLOW_CONN_*`` variable.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

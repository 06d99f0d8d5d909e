"""Who wrote a decision Variable: Airflow's audit log, read through the api-server's REST API.

Airflow 3 tasks cannot open the metadata database (the task runner refuses ORM sessions), so the sensors read the
audit log the way any client does: ``GET /api/v2/eventLogs`` with a token from ``POST /auth/token``, as the user of
the connection ``airflow_api_conn_id`` (setting; default ``reserving_airflow_api``, e.g.
``AIRFLOW_CONN_RESERVING_AIRFLOW_API=http://auditor:<password>@api-server:8080``). That user needs read access to
the audit log only. Each write through the REST API (the UI uses it) is logged before the endpoint runs with the
authenticated user as ``owner``; ``airflow variables set`` logs ``cli_variables_set`` with the OS user.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from include.reserving.approval import CLI_VARIABLE_EVENTS, REST_VARIABLE_EVENTS, VariableWrite

log = logging.getLogger(__name__)

PAGE = 100
TIMEOUT_SECONDS = 30


class AuditLogUnavailable(RuntimeError):
    """The audit log could not be read (no connection, the api-server down, credentials refused)."""


def api_base(conn_id: str) -> tuple[str, str, str]:
    """(base URL, login, password) of the Airflow connection pointing at the api-server."""
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise AuditLogUnavailable(
            f"Airflow connection {conn_id!r} (the api-server, to read who wrote the Variable) is not defined"
        ) from exc
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        scheme = conn.schema if conn.schema in ("http", "https") else "http"
        host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    return host, conn.login or "", conn.password or ""


def _touches(event: dict[str, Any], key: str) -> bool:
    """Whether an audit event wrote ``key``: the REST events log the request body (the value masked), the CLI
    its command line; an import of a file names no keys, so it may have written any."""
    name = event.get("event") or ""
    if name == "cli_variables_import":
        return True
    try:
        extra = json.loads(event.get("extra") or "{}")
    except json.JSONDecodeError:
        return False
    if not isinstance(extra, dict):
        return False
    if name.startswith("cli_"):
        return key in (extra.get("full_command") or [])
    if extra.get("key") == key or extra.get("variable_key") == key:
        return True
    for action in extra.get("actions") or []:  # bulk_variables: actions[].entities[] (dicts, or keys to delete)
        for entity in (action.get("entities") or []) if isinstance(action, dict) else []:
            if entity == key or (isinstance(entity, dict) and entity.get("key") == key):
                return True
    return False


def _utc_naive(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def variable_writes(conn_id: str, key: str, since: dt.datetime) -> list[VariableWrite]:
    """Every audit event after ``since`` (UTC, naive) that wrote or deleted the Variable ``key``, oldest first."""
    import httpx

    base, login, password = api_base(conn_id)
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT_SECONDS) as client:
            auth = client.post("/auth/token", json={"username": login, "password": password})
            auth.raise_for_status()
            headers = {"Authorization": f"Bearer {auth.json()['access_token']}"}
            found, offset = [], 0
            while True:
                params = [
                    *(("included_events", e) for e in (*REST_VARIABLE_EVENTS, *CLI_VARIABLE_EVENTS)),
                    ("after", since.replace(tzinfo=dt.UTC).isoformat()),
                    ("order_by", "id"),
                    ("limit", str(PAGE)),
                    ("offset", str(offset)),
                ]
                page = client.get("/api/v2/eventLogs", params=params, headers=headers)
                page.raise_for_status()
                events = page.json()["event_logs"]
                found += [e for e in events if _touches(e, key)]
                offset += len(events)
                if len(events) < PAGE:
                    break
    except httpx.HTTPStatusError as exc:
        raise AuditLogUnavailable(
            f"the api-server at {base} answered {exc.response.status_code} to {exc.request.url.path}"
        ) from exc
    except httpx.HTTPError as exc:
        raise AuditLogUnavailable(f"the api-server at {base} is not reachable ({type(exc).__name__})") from exc
    return [
        VariableWrite(int(e["event_log_id"]), e["event"], e.get("owner") or "", _utc_naive(e["when"])) for e in found
    ]

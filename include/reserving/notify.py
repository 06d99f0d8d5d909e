"""Telling people: the report email to the chief actuary, and Slack messages for failures and events.

Email goes through the Airflow SMTP provider's ``SmtpHook`` and an Airflow connection (``smtp_default`` by default).
SMTP connections default to implicit SSL and STARTTLS: a plain local relay or mail catcher needs the extras
``{"disable_ssl": true, "disable_tls": true}``; ``from_email`` in the extras names the sender.

Slack goes through the Slack provider's ``SlackWebhookHook`` (slack-sdk's ``WebhookClient`` underneath) and an
Airflow connection of type ``slackwebhook`` (``reserving_slack`` by default, the ``slack_conn_id`` setting) whose
**password** holds the whole incoming-webhook URL (``https://hooks.slack.com/services/T.../B.../...``), or the
token part with the host ``hooks.slack.com/services``. The URL is a secret: it is never logged. Slack being down or
answering an error is logged as a warning and swallowed: an alert must never hide the failure it reports, and
:class:`TaskFailureAlert`, the one ``on_failure_callback`` of every task, never raises.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier

from include.reserving.dates import valuation_date_of_run

log = logging.getLogger(__name__)

DEFAULT_SLACK_CONN_ID = "reserving_slack"
SLACK_TIMEOUT_SECONDS = 10
# slack-sdk logs the request URL (the secret) at DEBUG and errors on its own: it gets a logger that stays silent,
# and this module logs the one warning that matters.
_SDK_LOG = logging.getLogger(f"{__name__}.slack_sdk")
_SDK_LOG.setLevel(logging.CRITICAL + 1)
_SDK_LOG.propagate = False


# --- email -----------------------------------------------------------------------------------------------------


def connection_defined(conn_id: str) -> bool:
    """Whether Airflow knows the connection (an undefined SMTP connection means: e-mail is not set up here)."""
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def send_report_email(
    conn_id: str,
    recipients: Iterable[str],
    subject: str,
    body: str,
    attachments: Iterable[str | Path],
    from_email: str | None = None,
) -> None:
    """Send ``body`` (HTML) with the files attached through the SMTP connection ``conn_id``.

    The sender is ``from_email`` or the connection's ``from_email`` extra. Raises when the mail cannot be sent: a
    report that did not reach the actuary is a failed task.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    to = list(recipients)
    if not to:
        raise ValueError("no recipients for the report email")
    files = [str(Path(p)) for p in attachments]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"attachments not found: {missing}")
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(to=to, subject=subject, html_content=body, files=files, from_email=from_email)
    log.info("report email %r sent to %s with %d attachment(s)", subject, ", ".join(to), len(files))


# --- Slack -----------------------------------------------------------------------------------------------------


def slack_conn_id() -> str:
    """The configured Slack connection id (setting ``slack_conn_id``), ``reserving_slack`` when settings fail."""
    try:
        from include.reserving.config import load_settings

        return load_settings().slack_conn_id
    except Exception:  # an alert must go out even when the settings are broken
        return DEFAULT_SLACK_CONN_ID


def post_to_slack(conn_id: str, text: str) -> bool:
    """Post ``text`` to the incoming webhook of connection ``conn_id``. True if Slack accepted it.

    Never raises: a missing connection, Slack down or an error answer is logged as a warning (without the webhook
    URL) and returns False.
    """
    try:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=SLACK_TIMEOUT_SECONDS, logger=_SDK_LOG)
        hook.send_text(text)
    except Exception as exc:
        log.warning(
            "Slack message not delivered through connection %r (%s); the message was:\n%s",
            conn_id,
            _describe(exc),
            text,
        )
        return False
    log.info("Slack message posted through connection %r", conn_id)
    return True


def _describe(exc: BaseException) -> str:
    """Class and first line of an error, cut short: enough to diagnose, too little to carry a URL's secret part."""
    first = (str(exc).splitlines() or [""])[0]
    if "://" in first:  # a URL in the message may be the webhook itself
        first = "(message withheld: it contains a URL)"
    return f"{type(exc).__name__}: {first[:300]}"


def post_event(text: str, conn_id: str | None = None) -> bool:
    """Post a pipeline event (approval timeout, promotion, ...) to Slack; never raises."""
    try:
        return post_to_slack(conn_id or slack_conn_id(), text)
    except Exception as exc:  # post_to_slack does not raise; this guards the conn id lookup too
        log.warning("Slack event not posted (%s)", _describe(exc))
        return False


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _valuation(context: Mapping[str, Any]) -> str:
    params = context.get("params") or {}
    param = params.get("valuation_date") if isinstance(params, Mapping) else None
    end = context.get("data_interval_end") or _get(context.get("dag_run"), "data_interval_end")
    try:
        return valuation_date_of_run(end, str(param) if param else None).isoformat()
    except Exception:  # a malformed param or a run without data interval: say what is known
        return str(param) if param else "unknown"


def _error_line(exc: BaseException | str | None) -> str:
    if exc is None:
        return "unknown (no exception in the context)"
    if isinstance(exc, str):
        return (exc.splitlines() or ["unknown"])[0]
    # As Python prints the exception's last traceback line, e.g. "KeyError: 'segment'", but only its first line.
    first = (str(exc).splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _failed_expectations(exc: Any) -> list[str]:
    """The failed checks of a quality-gate error (``QualityGateError.report``), else the message's FAILED lines."""
    report = getattr(exc, "report", None)
    failures = getattr(report, "failures", None)
    if failures:
        return [c.explain() if hasattr(c, "explain") else str(c) for c in failures]
    if isinstance(exc, BaseException):
        return [line.strip().removeprefix("FAILED").strip() for line in str(exc).splitlines()[1:] if "FAILED" in line]
    return []


def failure_message(context: Mapping[str, Any]) -> str:
    """The Slack text for a failed task.

    ``Task '<task>' failed in <dag> for valuation <V> (try n of m). Error: <first line of the exception>. Log: <url>``
    followed, for a failed quality gate (or contract check, or reconciliation), by one line per failure, and for a
    failed gate by the link to its Data Docs in the Reserving view (under ``[api] base_url``).
    """
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task") or _get(ti, "task")
    task_id = _get(ti, "task_id") or _get(task, "task_id", "unknown")
    dag_id = _get(ti, "dag_id") or _get(context.get("dag"), "dag_id", "unknown")
    try_number = _get(ti, "try_number", 1) or 1
    max_tries = _get(ti, "max_tries")
    if max_tries is None or max_tries < (_get(task, "retries", 0) or 0):
        max_tries = _get(task, "retries", 0) or 0
    exc = context.get("exception")
    at_once = type(exc).__name__ == "AirflowFailException"
    if at_once and exc.__cause__ is not None:  # dag_groups.fails_at_once: the error itself, as it was raised
        exc = exc.__cause__
    error = _error_line(exc)
    if not error.endswith("."):
        error += "."
    try:
        url = _get(ti, "log_url") or "n/a"
    except Exception:  # log_url is Airflow's link under [api] base_url; a broken config must not stop the alert
        url = "n/a"
    text = (
        f"Task '{task_id}' failed in {dag_id} for valuation {_valuation(context)} "
        f"(try {try_number} of {int(max_tries) + 1}{', not retried: it would fail the same way' if at_once else ''})"
        f". Error: {error} Log: {url}"
    )
    failed = _failed_expectations(exc)
    if failed:
        # the contract check and the reconciliation carry reports of their own kind, each naming its heading
        heading = getattr(getattr(exc, "report", None), "failure_heading", "Failed expectations")
        text += f"\n{heading}:\n" + "\n".join(f"- {line}" for line in failed)
    docs = _data_docs_link(exc)
    if docs:
        text += f"\nData Docs: {docs}"
    return text


def _base_url() -> str:
    """Airflow's ``[api] base_url`` (the address operators open the UI at), as the task's own log link uses it."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080/")


def _data_docs_link(exc: Any) -> str | None:
    """The Reserving view's address of a failed gate's Data Docs (served to logged-in Airflow users); None for other
    errors and for a remote artifact root (the summary names that folder)."""
    report = getattr(exc, "report", None)
    if report is None or not all(getattr(report, a, None) for a in ("artifact_uri", "run_id", "valuation_date")):
        return None
    from include.reserving.artifacts import is_local
    from include.reserving.quality.data_docs import docs_url

    if not is_local(report.artifact_uri):
        return None
    try:
        return docs_url(_base_url(), report.valuation_date, report.run_id)
    except Exception:  # a broken config must not stop the alert
        return None


class _Notifier(BaseNotifier):
    """A notifier without template fields."""

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Nothing to render, and a DAG-level callback's SerializedDAG has no template env in Airflow 3.3 (the
        # base class would raise AttributeError before notify() runs).
        return None


class TaskFailureAlert(_Notifier):
    """The ``on_failure_callback`` of every task: post :func:`failure_message` to Slack. Never raises."""

    def notify(self, context: Mapping[str, Any]) -> None:
        try:
            text = failure_message(context)
        except Exception as exc:
            text = f"A task failed, and formatting its alert failed too ({_describe(exc)})."
        try:
            post_to_slack(slack_conn_id(), text)
        except Exception as exc:
            log.warning("failure alert not posted (%s)", _describe(exc))


class RunHealth(_Notifier):
    """A DAG-level callback: record the outcome of this execution of the run in ``pipeline_runs`` (a run cleared and run
    again adds a row; the earlier execution's stays). Never raises (health must not break a run).

    Parameters
    ----------
    state : str
        The outcome this callback records: ``success`` or ``failed``.
    """

    def __init__(self, state: str):
        super().__init__()
        self.state = state

    def notify(self, context: Mapping[str, Any]) -> None:
        try:
            from include.reserving.config import load_settings, warehouse_url
            from include.reserving.warehouse.core import make_engine
            from include.reserving.warehouse.runs import record_run

            dag_run = context["dag_run"]
            try:
                valuation_date = valuation_date_of_run(
                    dag_run.data_interval_end, (context.get("params") or {}).get("valuation_date")
                )
            except ValueError:
                valuation_date = None
            record_run(
                make_engine(warehouse_url(load_settings())),
                dag_run.run_id,
                dag_run.dag_id,
                valuation_date,
                self.state,
                dag_run.start_date,
                dag_run.end_date or dt.datetime.now(dt.UTC),
                _failed_tasks(context) if self.state == "failed" else None,
                clear_number=getattr(dag_run, "clear_number", None) or 0,  # each clearing: a new execution's row
            )
        except Exception as exc:
            log.warning("pipeline health not recorded: %s: %s", type(exc).__name__, exc)


def _failed_tasks(context: Mapping[str, Any]) -> str | None:
    """The failed task ids of the run, or the callback's own task where the DagRun view cannot list them."""
    try:
        failed = context["dag_run"].get_task_instances(state="failed")
        return ", ".join(sorted(ti.task_id for ti in failed)) or None
    except Exception:  # the callback's DagRun may be a lightweight view without task access
        return getattr(context.get("ti"), "task_id", None)

"""Email and Slack against real servers on 127.0.0.1: an aiosmtpd SMTP server and an http.server webhook receiver."""

from __future__ import annotations

import datetime as dt
import email
import json
import logging
from email import policy
from pathlib import Path
from types import SimpleNamespace

import pytest

from include.reserving import notify
from include.reserving.notify import (
    TaskFailureAlert,
    failure_message,
    post_event,
    post_to_slack,
    send_report_email,
)
from include.reserving.presentation.emails import report_email
from tests.servers import WEBHOOK_PATH, free_port


def test_report_email_reaches_the_smtp_server_with_identical_attachments(smtp_server, report_pdf, tmp_path):
    card = tmp_path / "model_card_x.md"
    card.write_text("# Model card\n")
    recipients = ["chief.actuary@example.com", "reserving.team@example.com"]
    mail = report_email(dt.date(2023, 12, 31), "approved", approval_pending=True)
    send_report_email("reserving_smtp_test", recipients, mail.subject, mail.body, [report_pdf, card])

    assert len(smtp_server.messages) == 1
    mail_from, rcpt_tos, raw = smtp_server.messages[0]
    assert mail_from == "reserving@example.com"
    assert rcpt_tos == recipients
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == mail.subject
    assert message["To"] == ", ".join(recipients)
    attachments = {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}
    assert attachments[Path(report_pdf).name] == Path(report_pdf).read_bytes()
    assert attachments["model_card_x.md"] == card.read_bytes()


def test_missing_attachment_or_recipients_fail_before_sending(smtp_server, tmp_path):
    with pytest.raises(FileNotFoundError):
        send_report_email("reserving_smtp_test", ["a@example.com"], "s", "b", [tmp_path / "nope.pdf"])
    with pytest.raises(ValueError, match="recipients"):
        send_report_email("reserving_smtp_test", [], "s", "b", [])
    assert smtp_server.messages == []


# --- Slack -----------------------------------------------------------------------------------------------------


def _context(exception, *, params=None, try_number=1, max_tries=2):
    ti = SimpleNamespace(
        task_id="fit_champion",
        dag_id="monthly_reserving_pipeline",
        try_number=try_number,
        max_tries=max_tries,
        log_url="http://localhost:8080/dags/monthly_reserving_pipeline/runs/r1/tasks/fit_champion?try_number=1",
    )
    return {
        "ti": ti,
        "task_instance": ti,
        "task": SimpleNamespace(task_id="fit_champion", retries=2),
        "params": params or {},
        "data_interval_end": dt.datetime(2024, 2, 1, tzinfo=dt.UTC),
        "exception": exception,
    }


def test_failure_message_format():
    text = failure_message(_context(KeyError("segment"), try_number=2))
    assert text == (
        "Task 'fit_champion' failed in monthly_reserving_pipeline for valuation 2024-01-31 (try 2 of 3). "
        "Error: KeyError: 'segment'. Log: "
        "http://localhost:8080/dags/monthly_reserving_pipeline/runs/r1/tasks/fit_champion?try_number=1"
    )


def test_failure_message_links_the_log_under_the_configured_api_base_url(monkeypatch):
    # The task runner's own task instance builds the link from [api] base_url, read from the environment per call.
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/reserving/")
    ti = RuntimeTaskInstance.model_construct(
        dag_id="monthly_reserving_pipeline",
        run_id="r1",
        task_id="fit_champion",
        map_index=-1,
        try_number=2,
        max_tries=2,
    )
    context = {**_context(KeyError("segment")), "ti": ti, "task_instance": ti}
    assert failure_message(context).endswith(
        "Log: https://airflow.example.com/reserving/dags/monthly_reserving_pipeline/runs/r1/tasks/fit_champion"
        "?try_number=2"
    )


def test_failure_message_prefers_the_valuation_param_and_keeps_only_the_first_error_line():
    exc = RuntimeError("warehouse unreachable.\nTraceback detail that does not belong in Slack")
    text = failure_message(_context(exc, params={"valuation_date": "2023-11-30"}))
    assert "for valuation 2023-11-30 (try 1 of 3)" in text
    assert "Error: RuntimeError: warehouse unreachable. Log: http" in text
    assert "Traceback detail" not in text


class QualityGateError(RuntimeError):
    """Shaped like include.reserving.quality.QualityGateError (importing Great Expectations costs seconds)."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


def test_failure_message_of_a_quality_gate_lists_the_failed_expectations():
    message = (
        "quality gate for V=2024-01-31 basis=as_recorded (suite v1): 10 of 12 checks passed\n"
        "  FAILED snapshot_claims.claimant_age.between (snapshot_claims) - expected: age 0-120 [column claimant_age]: "
        "3 bad rows of 5000, e.g. [-4, 131, 150]\n"
        "  FAILED transactions_extract.paid_amount.not_null (transactions_extract) - expected: not null "
        "[column paid_amount]: 2 bad rows of 90000"
    )
    text = failure_message(_context(QualityGateError(message)))
    first, *rest = text.splitlines()
    assert first.startswith("Task 'fit_champion' failed in monthly_reserving_pipeline for valuation 2024-01-31")
    assert "Error: QualityGateError: quality gate for V=2024-01-31 basis=as_recorded (suite v1): 10 of 12" in first
    assert rest[0] == "Failed expectations:"
    assert rest[1].startswith("- snapshot_claims.claimant_age.between (snapshot_claims)")
    assert rest[1].endswith("3 bad rows of 5000, e.g. [-4, 131, 150]")
    assert rest[2].startswith("- transactions_extract.paid_amount.not_null")


def test_post_to_slack_delivers_the_webhook_json(slack_receiver):
    assert post_to_slack("reserving_slack", "hello from the pipeline") is True
    assert slack_receiver.received == [(WEBHOOK_PATH, {"text": "hello from the pipeline"})]


def test_task_failure_alert_posts_exactly_one_message(slack_receiver):
    context = _context(ValueError("no cells for segment Motor"))
    assert TaskFailureAlert()(context) is None
    assert len(slack_receiver.received) == 1
    path, body = slack_receiver.received[0]
    assert path == WEBHOOK_PATH
    assert body["text"] == failure_message(context)
    assert "Task 'fit_champion'" in body["text"] and "2024-01-31" in body["text"]
    assert "ValueError: no cells for segment Motor" in body["text"]


def test_post_event_uses_the_configured_connection(slack_receiver):
    assert post_event("Approval timed out for 2024-01-31: the champion stays.") is True
    assert slack_receiver.received[0][1] == {"text": "Approval timed out for 2024-01-31: the champion stays."}


def test_slack_answering_500_is_a_warning_not_an_error(slack_receiver, caplog):
    slack_receiver.status = 500
    with caplog.at_level(logging.DEBUG):
        assert TaskFailureAlert()(_context(ValueError("boom"))) is None
        assert post_event("promotion") is False
    assert len(slack_receiver.received) == 2  # it was tried, once each
    warnings = [r for r in caplog.records if r.name == notify.__name__ and r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "not delivered" in warnings[0].getMessage()
    assert "SECRET" not in caplog.text and "tokenXYZ" not in caplog.text


def test_slack_down_is_a_warning_and_the_callback_returns(monkeypatch, caplog):
    url = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_SLACK", json.dumps({"conn_type": "slackwebhook", "password": url}))
    with caplog.at_level(logging.DEBUG):
        assert TaskFailureAlert()(_context(ValueError("boom"))) is None
    warnings = [r for r in caplog.records if r.name == notify.__name__ and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not delivered" in warnings[0].getMessage()
    assert "SECRET" not in caplog.text and "tokenXYZ" not in caplog.text


def test_missing_slack_connection_is_a_warning(monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_RESERVING_SLACK_MISSING", raising=False)
    with caplog.at_level(logging.WARNING):
        assert post_to_slack("reserving_slack_missing", "x") is False
    assert "reserving_slack_missing" in caplog.text

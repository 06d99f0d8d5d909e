"""The e-mails: subjects name valuation date and status; bodies come from autoescaped templates."""

from __future__ import annotations

import datetime as dt

from markupsafe import escape

from include.reserving.presentation.emails import model_card_email, report_email
from include.reserving.presentation.instruction import ApprovalInstruction

V = dt.date(2023, 12, 31)


def test_subject_names_valuation_date_and_status():
    assert report_email(dt.date(2024, 1, 31), "preliminary").subject == (
        "Reserve report as at 2024-01-31 (PRELIMINARY)"
    )
    assert "2023-12-31" in report_email(V, "approved").subject
    assert "APPROVED" in report_email(V, "approved").subject


def test_report_body_mentions_a_pending_approval_only_when_there_is_one():
    plain = report_email(V, "approved").body
    assert "<p>The reserve report as at 2023-12-31 (approved) is attached.</p>" in plain
    assert "Sent by the monthly reserving pipeline." in plain
    assert "awaits your approval" not in plain
    assert "awaits your approval" in report_email(V, "approved", approval_pending=True).body


def test_report_body_states_unpaid_as_case_reserves_plus_ibnr():
    totals = {"unpaid_total": 1721.11, "case_reserve_total": 1165.53, "ibnr_total": 555.58}
    body = report_email(V, "approved", totals=totals).body
    assert "Total unpaid 1,721.11 = case reserves 1,165.53 + IBNR 555.58" in body
    assert "IBNR = ultimate - incurred" in body
    # unknown case reserves and IBNR print as n/a; no totals given: no totals line
    unknown = report_email(V, "approved", totals={**totals, "case_reserve_total": None, "ibnr_total": None}).body
    assert "Total unpaid 1,721.11 = case reserves n/a + IBNR n/a" in unknown
    assert "Total unpaid" not in report_email(V, "approved").body


def test_model_card_email_carries_the_instruction_escaped():
    version = 'xgb-<script>alert("x")</script>'
    mail = model_card_email(V, version)
    assert mail.subject == f"Approval needed: model {version} for valuation 2023-12-31"
    assert "<script>" not in mail.body
    instruction = ApprovalInstruction(V, version)
    assert str(escape(instruction.sentence)) in mail.body
    for _, text in instruction.steps:
        assert f"<pre>{escape(text)}</pre>" in mail.body


def test_the_first_model_card_email_says_what_reserves_the_month_without_an_approval():
    assert "beat the champion" in model_card_email(V, "v1").body
    first = " ".join(model_card_email(V, "v1", first_model=True).body.split())
    assert "beat the champion" not in first
    assert "First model: no champion yet. This challenger would be the first approved model" in first
    assert "against a paid chain-ladder baseline" in first
    assert "the month's reserves are preliminary, from the chain-ladder fallback" in first

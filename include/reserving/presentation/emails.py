"""The e-mails: subject lines, and HTML bodies from ``templates/email_*.html``; :mod:`include.reserving.notify`
delivers them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from include.reserving.presentation.formatting import day
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.templating import render


@dataclass(frozen=True)
class Email:
    subject: str
    body: str  # HTML


def report_email(
    valuation_date: dt.date, status: str, approval_pending: bool = False, totals: dict | None = None
) -> Email:
    """The reserve report's e-mail, e.g. subject ``Reserve report as at 2024-01-31 (PRELIMINARY)``; ``totals``
    (``unpaid_total``, ``case_reserve_total``, ``ibnr_total``) print in the body when given."""
    return Email(
        f"Reserve report as at {day(valuation_date)} ({status.upper()})",
        render(
            "email_report.html",
            valuation_date=valuation_date,
            status=status,
            approval_pending=approval_pending,
            totals=totals,
        ),
    )


def model_card_email(
    valuation_date: dt.date,
    model_version: str,
    code: str | None = None,
    first_model: bool = False,
    lines: list[dict] | None = None,
) -> Email:
    """The model card's e-mail: challengers wait for approval, line by line, and how to decide; ``first_model``:
    there is no champion yet (the message says what reserves the month without an approval). ``lines``: the lines on
    the card (``segment, challenger_version, champion_version, has_champion``)."""
    lines = sorted(lines or [], key=lambda line: line["segment"])
    asked = tuple(line["segment"] for line in lines)
    return Email(
        f"Approval needed: model {model_version} for valuation {day(valuation_date)}"
        + (f" ({len(asked)} lines: {', '.join(asked)})" if len(asked) > 1 else f" ({asked[0]})" if asked else ""),
        render(
            "email_model_card.html",
            instruction=ApprovalInstruction(valuation_date, model_version, code, asked),
            first_model=first_model,
            lines=lines,
        ),
    )

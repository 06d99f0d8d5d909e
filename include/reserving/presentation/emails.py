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
    valuation_date: dt.date, model_version: str, code: str | None = None, first_model: bool = False
) -> Email:
    """The model card's e-mail: a challenger waits for approval, and how to give it; ``first_model``: there is no
    champion yet (the message says what reserves the month without an approval)."""
    return Email(
        f"Approval needed: model {model_version} for valuation {day(valuation_date)}",
        render(
            "email_model_card.html",
            instruction=ApprovalInstruction(valuation_date, model_version, code),
            first_model=first_model,
        ),
    )

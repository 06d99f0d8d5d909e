"""The approval instruction, spelled once: how an actuary approves or rejects the model pending for a valuation date;
and the sign-off instruction for a month whose reserves are held.

The Reserving page, the model card (Markdown and PDF), the e-mail, the sensor's log and the timeout alert all render
this one object; its key, values and command lines come from the approval contract (:mod:`include.reserving.approval`).
Standard library only: the sensor's module imports it when the DAG file is parsed.
"""

from __future__ import annotations

import datetime as dt
import shlex
from dataclasses import dataclass

from include.reserving.approval import NUMBERS_SIGNOFF, approval_command, approval_key, approval_value


@dataclass(frozen=True)
class ApprovalInstruction:
    """What to set to approve or reject ``model_version`` for ``valuation_date``: a sentence, then the steps."""

    valuation_date: dt.date
    model_version: str
    code: str | None = None  # the model card's one-time code; None: a placeholder (the card is not issued yet)
    lines: tuple[str, ...] = ()  # the lines of business the card asks about (each gets its own decision)

    @property
    def key(self) -> str:
        return approval_key(self.valuation_date)

    @property
    def approve_value(self) -> str:
        return approval_value(self.model_version, "approve", code=self.code)

    @property
    def reject_value(self) -> str:
        return approval_value(self.model_version, "reject", code=self.code)

    def command(self, decision: str) -> str:
        """The command line, quoted for a POSIX shell."""
        return shlex.join(approval_command(self.valuation_date, self.model_version, decision, code=self.code))

    @property
    def mixed_value(self) -> str | None:
        """An example that approves the first line and rejects the others (None with fewer than two lines)."""
        if len(self.lines) < 2:
            return None
        return approval_value(
            self.model_version, "approve", code=self.code, lines={line: "reject" for line in self.lines[1:]}
        )

    @property
    def sentence(self) -> str:
        lines = ""
        if self.lines:
            lines = (
                f"The decision is per line of business: this card asks about {', '.join(self.lines)}; decision "
                "decides every one of them"
                + (
                    ", and a lines object decides the lines it names otherwise (e.g. approve one line, reject "
                    "another); a line rejected keeps its champion. "
                    if len(self.lines) > 1
                    else ". "
                )
            )
        return lines + (
            f"To approve model {self.model_version} for valuation {self.valuation_date:%Y-%m-%d}, set the Airflow "
            f"Variable {self.key} to the value to approve, in the Airflow UI (Admin / Variables) or with its command "
            "line; to reject it and keep the champion, set the value to reject. Put your name in by and your reason in "
            f"comment, and keep model_version and code ({self.code or 'on the model card'}) as they are: a value "
            "naming another version or quoting another card's code is ignored. Only a user named in the approvers "
            "setting can decide, as themselves: Airflow's audit log says who wrote the value."
        )

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """(label, text to copy) in reading order: the key, then the value and command line to approve, to reject."""
        steps = (
            ("Variable key", self.key),
            ("Value to approve", self.approve_value),
            ("Command line to approve", self.command("approve")),
            ("Value to reject", self.reject_value),
            ("Command line to reject", self.command("reject")),
        )
        if self.mixed_value is None:
            return steps
        return (*steps, (f"Value to approve {self.lines[0]} and reject the other lines (example)", self.mixed_value))

    @property
    def text(self) -> str:
        """The plain-text rendering, one step a line: for logs, Slack, plain e-mail and the JSON API."""
        return "\n".join([self.sentence, *(f"{label}: {text}" for label, text in self.steps)])


@dataclass(frozen=True)
class SignoffInstruction:
    """What to set to sign off or reject the held ``publication_version`` of the reserves for ``valuation_date``."""

    valuation_date: dt.date
    publication_version: int
    code: str | None = None  # the one-time code issued with the held publication

    @property
    def key(self) -> str:
        return NUMBERS_SIGNOFF.key(self.valuation_date)

    def value(self, decision: str) -> str:
        return NUMBERS_SIGNOFF.value(self.publication_version, decision, code=self.code)

    def command(self, decision: str) -> str:
        """The command line, quoted for a POSIX shell."""
        return shlex.join(
            NUMBERS_SIGNOFF.command(self.valuation_date, self.publication_version, decision, code=self.code)
        )

    @property
    def sentence(self) -> str:
        return (
            f"The reserves for valuation {self.valuation_date:%Y-%m-%d} are held as version "
            f"{self.publication_version} and are not current. To sign the numbers off and make them current, set the "
            f"Airflow Variable {self.key} to the value to approve (Admin / Variables, or its command line); to reject "
            "them and keep the previous current version, set the value to reject. Put your name in by and your "
            f"reason in comment, and keep publication_version and code ({self.code or 'in the hold alert'}) as they "
            "are: a value naming another version or quoting another code is ignored. Only a user named in the "
            "approvers setting can sign off, as themselves: Airflow's audit log says who wrote the value."
        )

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Variable key", self.key),
            ("Value to sign off", self.value("approve")),
            ("Command line to sign off", self.command("approve")),
            ("Value to reject", self.value("reject")),
            ("Command line to reject", self.command("reject")),
        )

    @property
    def text(self) -> str:
        return "\n".join([self.sentence, *(f"{label}: {text}" for label, text in self.steps)])

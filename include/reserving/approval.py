"""The decision contracts: which Airflow Variable an actuary sets, and how its value is read.

Two instances of one contract, each bound to what it decides on:

- :data:`MODEL_APPROVAL`: key ``reserving_approval__<YYYY-MM-DD>`` (the valuation date); value a JSON object naming
  the decision and the challenger's version, e.g.
  ``{"decision": "approve", "model_version": "...", "by": "...", "comment": "..."}``.
- :data:`NUMBERS_SIGNOFF`: key ``reserving_signoff__<YYYY-MM-DD>``; the same value with ``publication_version`` (the
  held version of the month's reserves), e.g. ``{"decision": "approve", "publication_version": 2, ...}``.

A value that does not parse, or names another version, is ignored with a warning: a stale or mistyped decision
cannot promote or publish anything.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass
from typing import Any

from include.reserving.domain import Decision

DECISIONS = (Decision.APPROVE.value, Decision.REJECT.value)  # what an actuary may set; a timeout is no value


@dataclass(frozen=True)
class Approval:
    """A valid decision read from the Variable; ``model_version`` holds the version it names (of either contract)."""

    decision: str
    model_version: str
    by: str
    comment: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecisionContract:
    """One Airflow Variable contract: ``<key_prefix><V>`` holding a decision bound to ``<version_field>``."""

    key_prefix: str
    version_field: str
    what: str  # what is decided on, for messages: "the pending challenger", "the held publication"

    def key(self, valuation_date: dt.date) -> str:
        return f"{self.key_prefix}{valuation_date:%Y-%m-%d}"

    def value(self, version: Any, decision: str = "approve", by: str = "<your name>", comment: str = "<why>") -> str:
        """The exact JSON value to set; the defaults of ``by`` and ``comment`` are placeholders for the actuary."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r} is invalid: use one of {DECISIONS}")
        return json.dumps({"decision": decision, self.version_field: version, "by": by, "comment": comment})

    def command(
        self, valuation_date: dt.date, version: Any, decision: str = "approve", by: str = "<your name>", comment="<why>"
    ) -> list[str]:
        """The ``airflow variables set`` command (arguments) that records the decision."""
        return ["airflow", "variables", "set", self.key(valuation_date), self.value(version, decision, by, comment)]

    def parse(self, raw: str | dict | None, expected_version: Any) -> tuple[Approval | None, str | None]:
        """Read a Variable value: (the decision, None) when it decides on ``expected_version``; else (None, why)."""
        if raw is None or raw == "":
            return None, None
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            return None, f"value is not JSON ({exc.msg} at position {exc.pos}): ignored"
        if not isinstance(value, dict):
            return None, f"value must be a JSON object, got {type(value).__name__}: ignored"
        decision = str(value.get("decision", "")).strip().lower()
        if decision not in DECISIONS:
            return None, f"decision {value.get('decision')!r} is not one of {DECISIONS}: ignored"
        version = value.get(self.version_field)
        if version != expected_version:
            return (
                None,
                f"value names {self.version_field} {version!r}, but {self.what} is {expected_version!r}: ignored",
            )
        by = str(value.get("by") or "").strip()
        if not by:
            return None, "value does not say who decided (the 'by' field is empty): ignored"
        return Approval(decision, version, by, str(value.get("comment") or "")), None


MODEL_APPROVAL = DecisionContract("reserving_approval__", "model_version", "the pending challenger")
NUMBERS_SIGNOFF = DecisionContract("reserving_signoff__", "publication_version", "the held publication")
KEY_PREFIX = MODEL_APPROVAL.key_prefix


def approval_key(valuation_date: dt.date) -> str:
    return MODEL_APPROVAL.key(valuation_date)


def approval_value(
    model_version: str, decision: str = "approve", by: str = "<your name>", comment: str = "<why>"
) -> str:
    return MODEL_APPROVAL.value(model_version, decision, by, comment)


def approval_command(
    valuation_date: dt.date,
    model_version: str,
    decision: str = "approve",
    by: str = "<your name>",
    comment: str = "<why>",
) -> list[str]:
    return MODEL_APPROVAL.command(valuation_date, model_version, decision, by, comment)


def parse_approval(raw: str | dict | None, expected_version: str) -> tuple[Approval | None, str | None]:
    return MODEL_APPROVAL.parse(raw, expected_version)

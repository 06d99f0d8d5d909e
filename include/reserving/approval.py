"""The approval contract: which Airflow Variable an actuary sets, and how its value is read.

Key ``reserving_approval__<YYYY-MM-DD>`` (the valuation date); value a JSON object naming the decision and the
challenger's version, e.g. ``{"decision": "approve", "model_version": "...", "by": "...", "comment": "..."}``.
A value that does not parse, or names another version, is ignored with a warning: a stale or mistyped approval
cannot promote anything.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from include.reserving.domain import Decision

KEY_PREFIX = "reserving_approval__"
DECISIONS = (Decision.APPROVE.value, Decision.REJECT.value)  # what an actuary may set; a timeout is no value


def approval_key(valuation_date: dt.date) -> str:
    return f"{KEY_PREFIX}{valuation_date:%Y-%m-%d}"


def approval_value(
    model_version: str, decision: str = "approve", by: str = "<your name>", comment: str = "<why>"
) -> str:
    """The exact JSON value to set; the defaults of ``by`` and ``comment`` are placeholders for the actuary."""
    if decision not in DECISIONS:
        raise ValueError(f"decision {decision!r} is invalid: use one of {DECISIONS}")
    return json.dumps({"decision": decision, "model_version": model_version, "by": by, "comment": comment})


def approval_command(
    valuation_date: dt.date,
    model_version: str,
    decision: str = "approve",
    by: str = "<your name>",
    comment: str = "<why>",
) -> list[str]:
    """The ``airflow variables set`` command (arguments) that records the decision."""
    return [
        "airflow",
        "variables",
        "set",
        approval_key(valuation_date),
        approval_value(model_version, decision, by, comment),
    ]


@dataclass(frozen=True)
class Approval:
    decision: str
    model_version: str
    by: str
    comment: str

    def as_dict(self) -> dict:
        return asdict(self)


def parse_approval(raw: str | dict | None, expected_version: str) -> tuple[Approval | None, str | None]:
    """Read a Variable value: (the approval, None) when it decides for ``expected_version``; else (None, why)."""
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
    version = value.get("model_version")
    if version != expected_version:
        return (
            None,
            f"value names model_version {version!r}, but the pending challenger is {expected_version!r}: ignored",
        )
    by = str(value.get("by") or "").strip()
    if not by:
        return None, "value does not say who decided (the 'by' field is empty): ignored"
    return Approval(decision, version, by, str(value.get("comment") or "")), None

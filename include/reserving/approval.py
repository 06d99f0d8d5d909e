"""The decision contracts: which Airflow Variable an actuary sets, how its value is read, and who may have set it.

Two instances of one contract, each bound to what it decides on:

- :data:`MODEL_APPROVAL`: key ``reserving_approval__<YYYY-MM-DD>`` (the valuation date); value a JSON object naming
  the decision, the challenger's version and the model card's one-time code, e.g.
  ``{"decision": "approve", "model_version": "...", "code": "...", "by": "...", "comment": "..."}``. One card lists
  every line whose challenger the rule sent to approval (``model_version`` names the card's proposal: the challenger,
  or an id of the set when lines have different challengers); ``decision`` decides every line on the card, and an
  optional ``"lines": {"<line>": "approve" | "reject"}`` decides the lines it names otherwise.
- :data:`NUMBERS_SIGNOFF`: key ``reserving_signoff__<YYYY-MM-DD>``; the same value with ``publication_version`` (the
  held version of the month's reserves) and the code issued with the held publication.

A value that does not parse, names another version or quotes another code is ignored with a warning: a stale or
mistyped decision cannot promote or publish anything. Who decided is not the value's ``by`` (self-declared text, a
display name at most) but the Airflow user that Airflow's audit log says wrote the value (:func:`judge_writes`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from include.reserving.domain import Decision

DECISIONS = (Decision.APPROVE.value, Decision.REJECT.value)  # what an actuary may set; a timeout is no value
MAX_BY = 200  # the display name; approvals.decided_by and signoffs.decided_by are String(200)
MAX_COMMENT = 2000
PLACEHOLDER = re.compile(r"^\s*<[^<>]*>\s*$")  # "<your name>", "<why>": the instruction's text pasted as is
BY_PLACEHOLDER, COMMENT_PLACEHOLDER, CODE_PLACEHOLDER = "<your name>", "<why>", "<code on the model card>"
KNOWN_FIELDS = {"decision", "code", "by", "comment"}

# Airflow's audit log events that write (or delete) a Variable. REST API (api_fastapi/logging/decorators.py
# action_logging: the endpoint's function name, owner = the authenticated user) and CLI (utils/cli.py action_cli:
# "cli_" + the sub-command's function, owner = the OS user).
REST_VARIABLE_EVENTS = ("post_variable", "patch_variable", "bulk_variables", "delete_variable")
CLI_VARIABLE_EVENTS = ("cli_variables_set", "cli_variables_import", "cli_variables_delete")
DELETE_EVENTS = ("delete_variable", "cli_variables_delete")


def new_code() -> str:
    """A one-time decision code: 10 hex characters, unguessable, short enough to copy from a card."""
    return secrets.token_hex(5)


@dataclass(frozen=True)
class Approval:
    """A valid decision read from the Variable; ``model_version`` holds the version it names (of either contract).
    ``by`` is the display name the value gave; who decided is settled by the audit log."""

    decision: str
    model_version: str
    by: str
    comment: str
    code: str = ""
    lines: dict[str, str] = field(default_factory=dict)  # per-line decisions overriding ``decision`` (model approval)

    def as_dict(self) -> dict:
        """The fields; ``lines`` only when the value decided lines apart."""
        out = asdict(self)
        if not self.lines:
            del out["lines"]
        return out

    def decision_of(self, line: str) -> str:
        """The decision on one line of the card."""
        return self.lines.get(line, self.decision)


@dataclass(frozen=True)
class DecisionContract:
    """One Airflow Variable contract: ``<key_prefix><V>`` holding a decision bound to ``<version_field>``."""

    key_prefix: str
    version_field: str
    what: str  # what is decided on, for messages: "the pending challenger", "the held publication"
    code_source: str  # where the actuary finds the code: "the model card", "the hold alert"
    per_line: bool = False  # the value may decide lines apart ("lines")

    def key(self, valuation_date: dt.date) -> str:
        return f"{self.key_prefix}{valuation_date:%Y-%m-%d}"

    def value(
        self,
        version: Any,
        decision: str = "approve",
        by: str = BY_PLACEHOLDER,
        comment: str = COMMENT_PLACEHOLDER,
        code: str | None = None,
        lines: dict[str, str] | None = None,
    ) -> str:
        """The exact JSON value to set; ``by`` and ``comment`` default to placeholders for the actuary; ``lines``
        (per-line contracts only) decides the lines it names otherwise than ``decision``."""
        for given in (decision, *(lines or {}).values()):
            if given not in DECISIONS:
                raise ValueError(f"decision {given!r} is invalid: use one of {DECISIONS}")
        if lines and not self.per_line:
            raise ValueError(f"{self.what} is decided as a whole, not per line")
        value = {
            "decision": decision,
            self.version_field: version,
            "code": code or CODE_PLACEHOLDER,
            "by": by,
            "comment": comment,
        }
        return json.dumps({**value, "lines": dict(sorted(lines.items()))} if lines else value)

    def command(
        self,
        valuation_date: dt.date,
        version: Any,
        decision: str = "approve",
        by: str = BY_PLACEHOLDER,
        comment: str = COMMENT_PLACEHOLDER,
        code: str | None = None,
        lines: dict[str, str] | None = None,
    ) -> list[str]:
        """The ``airflow variables set`` command (arguments) that records the decision."""
        return [
            "airflow",
            "variables",
            "set",
            self.key(valuation_date),
            self.value(version, decision, by, comment, code, lines),
        ]

    def parse(
        self,
        raw: str | dict | None,
        expected_version: Any,
        expected_code: str | None = None,
        expected_lines: tuple[str, ...] | list[str] | None = None,
    ) -> tuple[Approval | None, list[str]]:
        """Read a Variable value: (the decision, warnings) when it decides on ``expected_version`` (and quotes
        ``expected_code`` when given); else (None, why it is ignored). Unknown keys are ignored with a warning. On a
        per-line contract, ``lines`` may only name lines of ``expected_lines`` (the card's), each approve or reject."""
        if raw is None or raw == "":
            return None, []
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            return None, [f"value is not JSON ({exc.msg} at position {exc.pos}): ignored"]
        if not isinstance(value, dict):
            return None, [f"value must be a JSON object, got {type(value).__name__}: ignored"]
        known = KNOWN_FIELDS | {self.version_field} | ({"lines"} if self.per_line else set())
        notes = [f"unknown key {k!r} ignored" for k in sorted(set(value) - known)]
        decision = value.get("decision")
        decision = decision.strip().lower() if isinstance(decision, str) else decision
        if decision not in DECISIONS:
            return None, [*notes, f"decision {value.get('decision')!r} is not one of {DECISIONS}: ignored"]
        version = value.get(self.version_field)
        if version != expected_version:
            return None, [
                *notes,
                f"value names {self.version_field} {version!r}, but {self.what} is {expected_version!r}: ignored",
            ]
        code = value.get("code")
        if expected_code is not None and code != expected_code:
            return None, [
                *notes,
                f"value quotes code {code!r}, not the code on {self.code_source} of {expected_version!r}: ignored",
            ]
        by, why = _text(value.get("by"), "by", MAX_BY, required=True)
        if why is None:
            comment, why = _text(value.get("comment"), "comment", MAX_COMMENT, required=False)
        lines: dict[str, str] = {}
        if why is None and self.per_line:
            lines, why = _lines(value.get("lines"), expected_lines)
        if why is not None:
            return None, [*notes, f"{why}: ignored"]
        return Approval(decision, version, by, comment, code if isinstance(code, str) else "", lines), notes


def _lines(value: Any, expected: tuple[str, ...] | list[str] | None) -> tuple[dict[str, str], str | None]:
    """The per-line decisions of a value: ({line: decision}, None) or ({}, why they are invalid)."""
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, f"'lines' must be an object of line: decision, got {type(value).__name__}"
    unknown = sorted(str(k) for k in value if expected is not None and k not in expected)
    if unknown:
        return {}, f"'lines' names {unknown}, which are not on the card (its lines: {sorted(expected)})"
    decided = {}
    for line, decision in value.items():
        decision = decision.strip().lower() if isinstance(decision, str) else decision
        if decision not in DECISIONS:
            return {}, f"'lines' gives {line!r} the decision {value[line]!r}; use one of {DECISIONS}"
        decided[line] = decision
    return decided, None


def _text(value: Any, field: str, limit: int, required: bool) -> tuple[str, str | None]:
    """A bounded free-text field: (the stripped text, None) or ("", why it is invalid)."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        return "", f"{field!r} must be text, got {type(value).__name__}"
    text = value.strip()
    if required and not text:
        return "", f"{field!r} is empty: say who decides"
    if PLACEHOLDER.match(text):
        return "", f"{field!r} is the placeholder {text!r}: replace it"
    if len(text) > limit:
        return "", f"{field!r} has {len(text)} characters, at most {limit} are allowed"
    return text, None


def check_text(by: str, comment: str) -> str | None:
    """Why ``by`` / ``comment`` would be rejected by the sensor, or None: the approve CLI refuses them up front."""
    _, why = _text(by, "by", MAX_BY, required=True)
    if why is None:
        _, why = _text(comment, "comment", MAX_COMMENT, required=False)
    return why


MODEL_APPROVAL = DecisionContract(
    "reserving_approval__", "model_version", "the pending challenger", "the model card", per_line=True
)
NUMBERS_SIGNOFF = DecisionContract(
    "reserving_signoff__", "publication_version", "the held publication", "the hold alert"
)
KEY_PREFIX = MODEL_APPROVAL.key_prefix


def decided_at(outcome: dict) -> dt.datetime | None:
    """When Airflow logged the write of the decision (a sensor's outcome), UTC naive; None for a timeout."""
    return dt.datetime.fromisoformat(outcome["decided_at"]) if outcome.get("decided_at") else None


def approval_key(valuation_date: dt.date) -> str:
    return MODEL_APPROVAL.key(valuation_date)


def approval_value(
    model_version: str,
    decision: str = "approve",
    by: str = BY_PLACEHOLDER,
    comment: str = COMMENT_PLACEHOLDER,
    code: str | None = None,
    lines: dict[str, str] | None = None,
) -> str:
    return MODEL_APPROVAL.value(model_version, decision, by, comment, code, lines)


def approval_command(
    valuation_date: dt.date,
    model_version: str,
    decision: str = "approve",
    by: str = BY_PLACEHOLDER,
    comment: str = COMMENT_PLACEHOLDER,
    code: str | None = None,
    lines: dict[str, str] | None = None,
) -> list[str]:
    return MODEL_APPROVAL.command(valuation_date, model_version, decision, by, comment, code, lines)


def parse_approval(
    raw: str | dict | None,
    expected_version: str,
    expected_code: str | None = None,
    expected_lines: tuple[str, ...] | list[str] | None = None,
) -> tuple[Approval | None, list[str]]:
    return MODEL_APPROVAL.parse(raw, expected_version, expected_code, expected_lines)


# --- who wrote the value: Airflow's audit log ---------------------------------------------------------------------


@dataclass(frozen=True)
class VariableWrite:
    """One audit-log event that wrote (or deleted) a decision Variable."""

    event_id: int
    event: str
    owner: str
    when: dt.datetime  # UTC, naive

    @property
    def via_cli(self) -> bool:
        return self.event.startswith("cli_")


@dataclass(frozen=True)
class Writer:
    """The verdict on who wrote the Variable's current value: ``decided_by`` set when it counts, else ``why``."""

    decided_by: str | None
    decided_at: dt.datetime | None
    why: str | None
    foreign: VariableWrite | None = None  # a write by someone who may not decide: warn and alert


def judge_writes(
    writes: list[VariableWrite], issued_at: dt.datetime, approvers: tuple[str, ...], cli_counts: bool
) -> Writer:
    """Who wrote the current value, from the key's audit events: the latest event is the current value's write.

    It counts only when that write came after the code was issued (a value set before the card existed never
    decides), by a user in ``approvers``, and through the REST API (the UI) unless ``cli_counts``.
    """
    if not writes:
        return Writer(None, None, "Airflow's audit log shows no write of the Variable since the code was issued")
    latest = max(writes, key=lambda w: (w.when, w.event_id))
    if latest.when < issued_at:
        return Writer(
            None, None, f"the value was written at {latest.when:%Y-%m-%d %H:%M:%S}, before the code was issued"
        )
    if latest.event in DELETE_EVENTS:
        return Writer(None, None, f"the Variable was deleted by {latest.owner!r}")
    if latest.via_cli and not cli_counts:
        return Writer(
            None,
            None,
            f"the value was written by OS user {latest.owner!r} through the Airflow CLI, which does not count "
            "(setting approval_cli_counts); set it in the Airflow UI or REST API as yourself",
            foreign=latest,
        )
    if latest.owner not in approvers:
        return Writer(
            None, None, f"the value was written by Airflow user {latest.owner!r}, who may not decide", foreign=latest
        )
    return Writer(latest.owner, latest.when, None)


def four_eyes(decided_by: str, triggered_by: str | None, forced_retrain: bool) -> str | None:
    """Why a decision breaks the four-eyes rule (the user who forced a retrain may not approve its model), or None."""
    if forced_retrain and triggered_by and triggered_by == decided_by:
        return f"Airflow user {decided_by!r} triggered this forced retrain and may not approve its model (four eyes)"
    return None

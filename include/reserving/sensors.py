"""The decision sensors: wait (reschedule mode, finite timeout) for an actuary's decision in an Airflow Variable.

:class:`ApprovalSensor` waits for the model approval, :class:`SignoffSensor` for the sign-off of held numbers; both
read their Variable through a contract of :mod:`include.reserving.approval`. A value decides only when it quotes the
one-time code issued with this run's card (or held publication) and Airflow's audit log says that a user named in
the ``approvers`` setting wrote it after the code was issued (:mod:`include.reserving.airflow_audit`, read through
the api-server's REST API: a task cannot open the metadata database). The decision's ``by`` is that Airflow user and
its time is when Airflow logged the write; the value's own ``by`` is kept as ``display_name``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import BaseSensorOperator, PokeReturnValue, Variable
from airflow.sdk.exceptions import AirflowSensorTimeout

from include.reserving.approval import (
    MODEL_APPROVAL,
    NUMBERS_SIGNOFF,
    DecisionContract,
    Writer,
    four_eyes,
    judge_writes,
)
from include.reserving.presentation.instruction import ApprovalInstruction, SignoffInstruction


class DecisionSensor(BaseSensorOperator):
    """Wait for ``contract``'s Variable of V to decide on a version; a timeout is an outcome, not a crash: the sensor
    returns ``{"decision": "timeout"}``. Subclasses say which V and version (:meth:`pending`), which setting holds the
    timeout, and how to tell the actuary what to set (:meth:`instruction`)."""

    contract: DecisionContract
    code_kind: str  # the kind of decision code (warehouse.decisions): model or numbers
    timeout_setting: str
    waiting_for: str
    on_timeout: str

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", 3 * 24 * 3600)
        super().__init__(**kwargs)

    def pending(self) -> tuple[dt.date, object]:
        raise NotImplementedError

    def instruction(self, valuation_date: dt.date, version, code: str | None) -> str:
        raise NotImplementedError

    def lines(self) -> tuple[str, ...] | None:
        """The lines the value may decide apart (None: decided as a whole)."""
        return None

    def _configure(self, context) -> None:
        from include.reserving.config import load_settings

        settings = load_settings()
        param = context["params"].get(self.timeout_setting)
        self.timeout = float(param if param else getattr(settings, self.timeout_setting))
        self.poke_interval = float(settings.approval_poke_seconds)

    def execute(self, context):
        self._configure(context)
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            self.log.warning("no valid decision within %.0f s: %s", self.timeout, self.on_timeout)
            return {"decision": "timeout"}

    def poke(self, context) -> bool | PokeReturnValue:
        from include.reserving import airflow_audit, notify
        from include.reserving.config import load_settings, warehouse_url
        from include.reserving.warehouse import decisions
        from include.reserving.warehouse.core import make_engine

        settings = load_settings()
        valuation_date, version = self.pending()
        key = self.contract.key(valuation_date)
        engine = make_engine(warehouse_url(settings))
        issued = decisions.issued(engine, self.code_kind, valuation_date, version, context["run_id"])
        if issued is None:
            raise LookupError(f"no decision code was issued for {version!r} at {valuation_date} in this run")
        raw = Variable.get(key, default=None)
        decision, notes = self.contract.parse(raw, version, issued.code, self.lines())
        for note in notes:
            self.log.warning("Variable %s: %s", key, note)
        if decision is None:
            self.log.info(
                "waiting for %s. %s", self.waiting_for, self.instruction(valuation_date, version, issued.code)
            )
            return False
        try:
            writes = airflow_audit.variable_writes(settings.airflow_api_conn_id, key, issued.issued_at)
        except airflow_audit.AuditLogUnavailable as exc:
            self.log.warning("Variable %s: who wrote it is unknown, so it does not decide yet: %s", key, exc)
            return False
        writer = judge_writes(writes, issued.issued_at, settings.approvers, settings.approval_cli_counts)
        if writer.why is None and settings.four_eyes and self.contract is MODEL_APPROVAL:
            triggered_by = getattr(context.get("dag_run"), "triggering_user_name", None)
            why = four_eyes(writer.decided_by, triggered_by, bool(context["params"].get("force_retrain")))
            if why is not None:
                writer = Writer(None, None, why)
        if writer.why is not None:
            self.log.warning("Variable %s: %s: ignored", key, writer.why)
            if writer.foreign is not None and decisions.note_alert(engine, issued.id, writer.foreign.event_id):
                notify.post_event(
                    f"Ignored a decision on {self.contract.what} {version} for {valuation_date}: Variable {key}: "
                    f"{writer.why} (audit log event {writer.foreign.event_id})."
                )
            return False
        self.log.info(
            "Variable %s: %s by Airflow user %s (display name %r), written at %s",
            key,
            decision.decision,
            writer.decided_by,
            decision.by,
            writer.decided_at,
        )
        outcome = {
            **decision.as_dict(),
            "by": writer.decided_by,
            "display_name": decision.by,
            "decided_at": writer.decided_at.isoformat(),
        }
        return PokeReturnValue(is_done=True, xcom_value=outcome)


class ApprovalSensor(DecisionSensor):
    """Wait for ``reserving_approval__<V>`` to approve or reject the pending challenger on each line of the card.

    ``evaluation`` is the evaluate stage's output (valuation date, the proposal the value names, the lines sent to
    approval). Poke interval and
    timeout come from the settings (``approval_poke_seconds``, ``approval_timeout_seconds``) or the run's
    ``approval_timeout_seconds`` param, read when the task runs, never at parse time. On timeout the next task keeps
    the champion and alerts.
    """

    template_fields = ("evaluation",)
    contract = MODEL_APPROVAL
    code_kind = "model"
    timeout_setting = "approval_timeout_seconds"
    waiting_for = "approval"
    on_timeout = "the champion stays"

    def __init__(self, *, evaluation, **kwargs) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation

    def pending(self) -> tuple[dt.date, object]:
        return dt.date.fromisoformat(self.evaluation["valuation_date"]), self.evaluation["challenger_version"]

    def instruction(self, valuation_date: dt.date, version, code: str | None) -> str:
        return ApprovalInstruction(valuation_date, version, code, self.lines() or ()).text

    def lines(self) -> tuple[str, ...]:
        return tuple(sorted(self.evaluation.get("promote") or {}))


class SignoffSensor(DecisionSensor):
    """Wait for ``reserving_signoff__<V>`` to sign off or reject the held publication.

    ``published`` is the publish stage's output (valuation date and the held version). Timeout from the setting
    ``signoff_timeout_seconds`` or the run's param of that name; on timeout the version stays held and the previous
    current version stays current.
    """

    template_fields = ("published",)
    contract = NUMBERS_SIGNOFF
    code_kind = "numbers"
    timeout_setting = "signoff_timeout_seconds"
    waiting_for = "the sign-off of held numbers"
    on_timeout = "the numbers stay held, the previous current version stays"

    def __init__(self, *, published, **kwargs) -> None:
        super().__init__(**kwargs)
        self.published = published

    def pending(self) -> tuple[dt.date, object]:
        return dt.date.fromisoformat(self.published["valuation_date"]), int(self.published["version"])

    def instruction(self, valuation_date: dt.date, version, code: str | None) -> str:
        return SignoffInstruction(valuation_date, version, code).text

"""The decision sensors: wait (reschedule mode, finite timeout) for an actuary's decision in an Airflow Variable.

:class:`ApprovalSensor` waits for the model approval, :class:`SignoffSensor` for the sign-off of held numbers; both
read their Variable through a contract of :mod:`include.reserving.approval`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import BaseSensorOperator, PokeReturnValue, Variable
from airflow.sdk.exceptions import AirflowSensorTimeout

from include.reserving.approval import MODEL_APPROVAL, NUMBERS_SIGNOFF, DecisionContract
from include.reserving.presentation.instruction import ApprovalInstruction, SignoffInstruction


class DecisionSensor(BaseSensorOperator):
    """Wait for ``contract``'s Variable of V to decide on a version; a timeout is an outcome, not a crash: the sensor
    returns ``{"decision": "timeout"}``. Subclasses say which V and version (:meth:`pending`), which setting holds the
    timeout, and how to tell the actuary what to set (:meth:`instruction`)."""

    contract: DecisionContract
    timeout_setting: str
    waiting_for: str
    on_timeout: str

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", 3 * 24 * 3600)
        super().__init__(**kwargs)

    def pending(self) -> tuple[dt.date, object]:
        raise NotImplementedError

    def instruction(self, valuation_date: dt.date, version) -> str:
        raise NotImplementedError

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
        valuation_date, version = self.pending()
        key = self.contract.key(valuation_date)
        raw = Variable.get(key, default=None)
        decision, warning = self.contract.parse(raw, version)
        if warning:
            self.log.warning("Variable %s = %r: %s", key, raw, warning)
        if decision is not None:
            self.log.info("Variable %s: %s by %s", key, decision.decision, decision.by)
            return PokeReturnValue(is_done=True, xcom_value=decision.as_dict())
        self.log.info("waiting for %s. %s", self.waiting_for, self.instruction(valuation_date, version))
        return False


class ApprovalSensor(DecisionSensor):
    """Wait for ``reserving_approval__<V>`` to approve or reject the pending challenger.

    ``evaluation`` is the evaluate stage's output (valuation date and challenger version). Poke interval and
    timeout come from the settings (``approval_poke_seconds``, ``approval_timeout_seconds``) or the run's
    ``approval_timeout_seconds`` param, read when the task runs, never at parse time. On timeout the next task keeps
    the champion and alerts.
    """

    template_fields = ("evaluation",)
    contract = MODEL_APPROVAL
    timeout_setting = "approval_timeout_seconds"
    waiting_for = "approval"
    on_timeout = "the champion stays"

    def __init__(self, *, evaluation, **kwargs) -> None:
        super().__init__(**kwargs)
        self.evaluation = evaluation

    def pending(self) -> tuple[dt.date, object]:
        return dt.date.fromisoformat(self.evaluation["valuation_date"]), self.evaluation["challenger_version"]

    def instruction(self, valuation_date: dt.date, version) -> str:
        return ApprovalInstruction(valuation_date, version).text


class SignoffSensor(DecisionSensor):
    """Wait for ``reserving_signoff__<V>`` to sign off or reject the held publication.

    ``published`` is the publish stage's output (valuation date and the held version). Timeout from the setting
    ``signoff_timeout_seconds`` or the run's param of that name; on timeout the version stays held and the previous
    current version stays current.
    """

    template_fields = ("published",)
    contract = NUMBERS_SIGNOFF
    timeout_setting = "signoff_timeout_seconds"
    waiting_for = "the sign-off of held numbers"
    on_timeout = "the numbers stay held, the previous current version stays"

    def __init__(self, *, published, **kwargs) -> None:
        super().__init__(**kwargs)
        self.published = published

    def pending(self) -> tuple[dt.date, object]:
        return dt.date.fromisoformat(self.published["valuation_date"]), int(self.published["version"])

    def instruction(self, valuation_date: dt.date, version) -> str:
        return SignoffInstruction(valuation_date, version).text

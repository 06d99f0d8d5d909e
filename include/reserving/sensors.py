"""The approval sensor: waits (reschedule mode, finite timeout) for an actuary's decision in an Airflow Variable."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import BaseSensorOperator, PokeReturnValue, Variable
from airflow.sdk.exceptions import AirflowSensorTimeout

from include.reserving.approval import approval_key, parse_approval
from include.reserving.presentation.instruction import ApprovalInstruction


class ApprovalSensor(BaseSensorOperator):
    """Wait for ``reserving_approval__<V>`` to approve or reject the pending challenger.

    ``evaluation`` is the evaluate stage's output (valuation date and challenger version). Poke interval and
    timeout come from the settings (``approval_poke_seconds``, ``approval_timeout_seconds``) or the run's
    ``approval_timeout_seconds`` param, read when the task runs, never at parse time. A timeout is an outcome,
    not a crash: the sensor returns ``{"decision": "timeout"}`` and the next task keeps the champion and alerts.
    """

    template_fields = ("evaluation",)

    def __init__(self, *, evaluation, **kwargs) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("timeout", 3 * 24 * 3600)
        super().__init__(**kwargs)
        self.evaluation = evaluation

    def _configure(self, context) -> None:
        from include.reserving.config import load_settings

        settings = load_settings()
        param = context["params"].get("approval_timeout_seconds")
        self.timeout = float(param if param else settings.approval_timeout_seconds)
        self.poke_interval = float(settings.approval_poke_seconds)

    def execute(self, context):
        self._configure(context)
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            self.log.warning("no valid decision within %.0f s: the champion stays", self.timeout)
            return {"decision": "timeout"}

    def poke(self, context) -> bool | PokeReturnValue:
        valuation_date = dt.date.fromisoformat(self.evaluation["valuation_date"])
        version = self.evaluation["challenger_version"]
        key = approval_key(valuation_date)
        raw = Variable.get(key, default=None)
        decision, warning = parse_approval(raw, version)
        if warning:
            self.log.warning("Variable %s = %r: %s", key, raw, warning)
        if decision is not None:
            self.log.info("Variable %s: %s by %s", key, decision.decision, decision.by)
            return PokeReturnValue(is_done=True, xcom_value=decision.as_dict())
        self.log.info("waiting for approval. %s", ApprovalInstruction(valuation_date, version).text)
        return False

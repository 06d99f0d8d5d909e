"""Deterministic errors fail a task at once; transient ones are retried (dag_groups.retried_task).

The DAG's default arguments retry a task twice with back-off: right for a dropped database connection or an SMTP
or Slack hiccup, minutes of waiting before the alert for a quality gate or a run-order refusal that would fail the
same way. Classified by :func:`deterministic`, and shown end to end in a real DAG run (dag.test()).
"""

from __future__ import annotations

import inspect
import json
import smtplib

import pytest
import requests
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from include.reserving.config import Settings, SettingsVariableError
from include.reserving.contract import ContractViolation
from include.reserving.dag_groups import deterministic, fails_at_once, retried_task
from include.reserving.plausibility import PlausibilityError
from include.reserving.quality.report import QualityGateError
from include.reserving.reconciliation import ReconciliationError
from include.reserving.run_order import RunOrderError


def _bad_settings() -> ValidationError:
    try:
        Settings(psi_threshold="high")
    except ValidationError as exc:
        return exc
    raise AssertionError("psi_threshold='high' was accepted")


def _from(cause: Exception, exc: Exception) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "at_once"),
    [
        (RunOrderError("a later valuation, 2024-02-29, is already current"), True),
        (QualityGateError.__new__(QualityGateError), True),
        (ContractViolation.__new__(ContractViolation), True),
        (ReconciliationError.__new__(ReconciliationError), True),
        (PlausibilityError.__new__(PlausibilityError), True),
        (_bad_settings(), True),
        (_from(json.JSONDecodeError("Expecting value", "{", 1), SettingsVariableError("it is not JSON")), True),
        (LookupError("no triangle cells for valuation 2024-01-31 (as_recorded): run ingest first"), True),
        (ValueError("cells span 2 diagonals: cannot hold out 4 and keep any to fit on"), True),
        # transient: the database, the network, SMTP, Slack's API, Airflow's API behind the settings Variable
        (OperationalError("SELECT 1", {}, ConnectionError("server closed the connection unexpectedly")), False),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False),
        (requests.exceptions.ConnectionError("slack.com: Name or service not known"), False),
        (requests.exceptions.JSONDecodeError("Expecting value", "<html>502", 0), False),  # a ValueError
        (TimeoutError("timed out"), False),
        (_from(RuntimeError("API server unavailable"), SettingsVariableError("it cannot be read")), False),
        (RuntimeError("something unexpected"), False),
    ],
)
def test_deterministic_errors_are_told_from_transient_ones(exc, at_once):
    assert deterministic(exc) is at_once


def test_the_wrapper_raises_airflow_fail_exception_with_the_error_as_its_cause():
    from airflow.sdk.exceptions import AirflowFailException

    @fails_at_once
    def refused(valuation_date: str, params=None) -> dict:
        """Refuse."""
        raise RunOrderError(f"refusing to value {valuation_date}")

    @fails_at_once
    def flaky() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))

    with pytest.raises(AirflowFailException, match="refusing to value 2024-01-31") as failed:
        refused("2024-01-31")
    assert isinstance(failed.value.__cause__, RunOrderError)
    with pytest.raises(OperationalError):
        flaky()
    # Airflow passes context values by the callable's own parameters: the wrapper keeps them
    assert list(inspect.signature(refused).parameters) == ["valuation_date", "params"]
    assert refused.__doc__ == "Refuse." and refused.fails_at_once


def test_retried_task_declares_each_kind_of_task_once_with_the_wrapper():
    """``@retried_task`` is ``@task`` (bare, with arguments, ``.branch``, ``.short_circuit``) over the wrapper: the
    operator kind and its arguments are the ones given, the retries the DAG's, the callable fails at once."""
    from airflow.sdk import DAG, TriggerRule

    with DAG("retried_task_kinds", schedule=None, default_args={"retries": 3}) as dag:

        @retried_task
        def plain(valuation_date: str, params=None) -> str:
            """Plain."""
            raise RunOrderError(f"refusing to value {valuation_date}")

        @retried_task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def joined() -> None:
            """Joined."""

        @retried_task.branch
        def choose() -> str:
            return "plain"

        @retried_task.short_circuit
        def go_on() -> bool:
            return True

        plain("2024-01-31"), joined(), choose(), go_on()

    kinds = {t.task_id: (type(t).__name__, t.retries, t.trigger_rule.value) for t in dag.tasks}
    assert kinds == {
        "plain": ("_PythonDecoratedOperator", 3, "all_success"),
        "joined": ("_PythonDecoratedOperator", 3, "none_failed_min_one_success"),
        "choose": ("_BranchPythonDecoratedOperator", 3, "all_success"),
        "go_on": ("_ShortCircuitDecoratedOperator", 3, "all_success"),
    }
    assert all(t.python_callable.fails_at_once for t in dag.tasks)
    plain_task = dag.get_task("plain")
    assert plain_task.python_callable.__doc__ == "Plain."
    assert list(inspect.signature(plain_task.python_callable).parameters) == ["valuation_date", "params"]
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="refusing to value 2024-01-31"):
        plain_task.python_callable("2024-01-31")


def test_in_a_dag_run_a_refusal_fails_at_once_and_a_dropped_connection_is_retried(airflow_db, tmp_path):
    """Both tasks have two retries (no delay, tests/integration/dags/fails_at_once_probe.py): the refusal ends
    after its first try, failed; the task whose first try loses its database connection succeeds on its second."""
    from tests.integration.dags.fails_at_once_probe import fails_at_once_probe

    tries = tmp_path / "tries.txt"
    run = fails_at_once_probe().test(run_conf={"tries": str(tries)})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"refused": "failed", "flaky": "success"}
    assert tries.read_text().split().count("refused") == 1
    assert tries.read_text().split().count("flaky") == 2

"""The monthly DAG's task groups, as ``@task_group`` builders: Airflow wiring only, the logic is in ``stages``.

The DAG file builds its graph from these, and so does the tests' approval harness, so both always run the same
tasks. Tasks take the run's ``params``, ``run_id`` and ``data_interval_end`` as arguments (Airflow passes context
values by name) and turn them into :class:`~include.reserving.stages.RunFacts`.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Label, TriggerRule, task, task_group

from include.reserving.sensors import ApprovalSensor, SignoffSensor

NO_RETRY = {"retries": 0}  # deterministic steps: a retry would fail the same way

# Libraries whose errors are the network's or the database's (a connection dropped, a timeout, SMTP, Slack): retried
# even when their class is a ValueError (requests' JSONDecodeError on an HTML error page, say).
TRANSIENT_LIBRARIES = frozenset({"sqlalchemy", "psycopg", "psycopg2", "requests", "urllib3", "httpx", "smtplib"})


def deterministic(exc: BaseException) -> bool:
    """True when a retry would fail the same way: the product's refusals (contract, run order, reconciliation,
    quality gate, plausibility), bad settings or source mapping, and the ValueError / LookupError the package raises
    on the data it was given (no cells for V, a book too young to hold out diagonals). An error from the database
    or network libraries, an OSError (connections, SMTP, timeouts) or anything else is not: Airflow retries it."""
    from pydantic import ValidationError

    from include.reserving.config import SettingsVariableError
    from include.reserving.contract import ContractViolation
    from include.reserving.plausibility import PlausibilityError
    from include.reserving.quality.report import QualityGateError
    from include.reserving.reconciliation import ReconciliationError
    from include.reserving.run_order import RunOrderError

    if type(exc).__module__.partition(".")[0] in TRANSIENT_LIBRARIES or isinstance(exc, OSError):
        return False
    if isinstance(exc, SettingsVariableError):  # unreadable (Airflow's API did not answer) is worth a retry
        return exc.__cause__ is None or isinstance(exc.__cause__, ValueError)
    refusals = (ContractViolation, RunOrderError, ReconciliationError, QualityGateError, PlausibilityError)
    return isinstance(exc, (*refusals, ValidationError, ValueError, LookupError))


def fails_at_once(func):
    """A task callable whose deterministic failures (:func:`deterministic`) raise AirflowFailException, which
    Airflow fails at once, without the retries and their backoff; every other error propagates and is retried.
    The original error is the exception's cause (the failure alert reports it)."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return func(*args, **kwargs)
        except AirflowFailException:
            raise
        except Exception as exc:
            if deterministic(exc):
                raise AirflowFailException(str(exc)) from exc
            raise

    run.fails_at_once = True  # the DAG's tests check every retried task has it
    return run


def _retried(decorator):
    """``decorator`` (``task``, ``task.branch``, ...) applied to the callable wrapped in :func:`fails_at_once`; used
    bare or with the decorator's arguments, as ``@task`` is."""

    def declare(python_callable=None, **task_kwargs):
        if python_callable is None:
            return functools.partial(declare, **task_kwargs)
        return decorator(fails_at_once(python_callable), **task_kwargs)

    return declare


# A retried task: the DAG's retry policy (default_args: retries with back-off) for transient errors, and deterministic
# errors fail at once. ``@retried_task``, ``@retried_task(trigger_rule=...)``, ``@retried_task.branch``,
# ``@retried_task.short_circuit``, as ``@task``. The retry numbers stay in the DAG's default_args so that a harness DAG
# can set its own (tests run with none, or with no delay); steps that must never be retried are ``@task(**NO_RETRY)``.
retried_task = _retried(task)
retried_task.branch = _retried(task.branch)
retried_task.short_circuit = _retried(task.short_circuit)


def run_facts(params: dict[str, Any], run_id: str, data_interval_end: dt.datetime | None):
    """The run's facts: V from the ``valuation_date`` param or the data interval, basis, run id, settings."""
    from include.reserving.dates import valuation_date_of_run
    from include.reserving.stages import RunFacts

    valuation_date = valuation_date_of_run(data_interval_end, params.get("valuation_date"))
    return RunFacts.create(valuation_date, run_id, restated=bool(params.get("restated")))


def later_valuation_exemption(params: dict[str, Any], dag_run) -> str | None:
    """Why this run may publish V over a later current valuation (a backfill, a restatement, the
    ``rerun_earlier_month`` param), or None."""
    from include.reserving.run_order import RERUN_PARAM, exemption

    run_type = getattr(dag_run, "run_type", None)
    return exemption(run_type, bool(params.get("restated")), bool(params.get(RERUN_PARAM)))


@task_group(group_id="input")
def input_group():
    """The book as at V, checked, and whether anything moved."""

    @task(**NO_RETRY)
    def contract(params=None, run_id=None, data_interval_end=None) -> dict:
        """The source tables against the data contract; a breach stops the run before anything reads the data."""
        from include.reserving.stages import input

        return input.contract(run_facts(params, run_id, data_interval_end))

    @retried_task
    def land(checked: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """The claims system's new rows copied into the warehouse (when it is not the warehouse itself)."""
        from include.reserving.stages import input

        return input.land(run_facts(params, run_id, data_interval_end))

    @task(**NO_RETRY)
    def run_order(checked: dict, params=None, run_id=None, data_interval_end=None, dag_run=None) -> dict:
        """Refuse a month the run may not value: a book with no activity in V's month, or a later valuation already
        current on the basis (unless a backfill, restatement or intended re-run); before anything is ingested."""
        from include.reserving.stages import input

        facts = run_facts(params, run_id, data_interval_end)
        return input.run_order(facts, later_valuation_exemption(params, dag_run))

    @task(**NO_RETRY)
    def reconcile(checked: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """The month's extract against the finance control totals (passes with a note when there are none)."""
        from include.reserving.stages import input

        return input.reconcile(run_facts(params, run_id, data_interval_end))

    @retried_task
    def ingest(reconciled: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """Snapshot the book as at V into triangle cells and claim features (replaces V's partition)."""
        from include.reserving.stages import input

        return input.ingest(run_facts(params, run_id, data_interval_end))

    @task(**NO_RETRY)
    def validate(ingested: dict, params=None, run_id=None, data_interval_end=None, ti=None) -> dict:
        """Great Expectations gate: a failed check stops the run and names what is wrong. Cleared and run again
        (it has no retries, so a later try is a clear), it takes V's snapshot again first: the source was fixed."""
        from include.reserving.stages import input

        reingest = ti is not None and ti.try_number > 1
        return input.validate(run_facts(params, run_id, data_interval_end), reingest=reingest)

    @task(**NO_RETRY)
    def plausibility(validated: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """Month-level plausibility per line against its own history: a failed check stops the run by name."""
        from include.reserving.stages import input

        return input.plausibility(run_facts(params, run_id, data_interval_end))

    @retried_task
    def drift(validated: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """PSI / KS against the champion's reference window; retrain or not."""
        from include.reserving.stages import input

        facts = run_facts(params, run_id, data_interval_end)
        return input.drift(facts, force_retrain=bool(params.get("force_retrain")))

    return drift(plausibility(validate(ingest(reconcile(run_order(land(contract())))))))


@task_group(group_id="training")
def training_group(drift_decision):
    """Train only when something moved; backtest the challenger against the champion. Returns
    ``(evaluation, skip_training)``."""

    @retried_task.branch
    def retrain_or_not(decision: dict) -> str:
        """Train only when something moved (cost control)."""
        return "training.train" if decision["retrain"] else "training.skip_training"

    @retried_task
    def train(params=None, run_id=None, data_interval_end=None) -> dict:
        """Spec search per line (rolling-origin backtests); fit and register each line's challenger (a spec once)."""
        from include.reserving.stages import training

        return training.train(run_facts(params, run_id, data_interval_end))

    @retried_task
    def evaluate(trained: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """Backtest each line's challenger against its champion; the margin-delta rule and bias guard per line."""
        from include.reserving.stages import training

        return training.evaluate(run_facts(params, run_id, data_interval_end), trained)

    skip_training = EmptyOperator(task_id="skip_training")
    trained = train()
    branch = retrain_or_not(drift_decision)
    branch >> Label("something moved") >> trained
    branch >> Label("quiet month") >> skip_training
    return evaluate(trained), skip_training


@task_group(group_id="governance")
def governance_group(evaluation, drift_decision):
    """The model card, the actuary's approval and its record, only when the rule says promote. Returns the tasks
    the reserving group waits for."""

    @retried_task.branch
    def promote_or_not(evaluation: dict) -> str:
        """Ask for approval only when some line's challenger beats that line's champion by more than delta."""
        return "governance.model_card" if evaluation["decision"] == "promote" else "governance.no_promotion"

    @retried_task
    def model_card(evaluation: dict, decision: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """The challenger's model card, written and e-mailed before anyone is asked to approve."""
        from include.reserving.stages import governance

        facts = run_facts(params, run_id, data_interval_end)
        card = governance.model_card(facts, evaluation, decision["reasons"])
        return {**card, "email": governance.email_model_card(facts, card, evaluation)}

    @task(**NO_RETRY)
    def apply_approval(evaluation: dict, outcome: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """Record approve / reject / timeout per line of the card; promote each approved line; post to Slack."""
        from include.reserving import notify
        from include.reserving.stages import governance

        facts = run_facts(params, run_id, data_interval_end)
        return governance.apply_approval(facts, evaluation, outcome, alert=notify.post_event)

    card = model_card(evaluation, drift_decision)
    awaiting = ApprovalSensor(task_id="await_approval", evaluation=evaluation)
    no_promotion = EmptyOperator(task_id="no_promotion")
    branch = promote_or_not(evaluation)
    branch >> Label("promote") >> card >> awaiting
    branch >> Label("keep the champion") >> no_promotion
    return [no_promotion, apply_approval(evaluation, awaiting.output)]


@task_group(group_id="reserving")
def reserving_group(after: list):
    """The model that reserves V, ultimates per line (mapped), one atomic publication; runs after ``after``."""

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, **NO_RETRY)  # a fit fails the same way twice
    def refit(params=None, run_id=None, data_interval_end=None) -> dict:
        """Refit the champion's spec on V's data (routine, recorded), or before any approval the chain-ladder
        fallback (preliminary); the model that reserves V."""
        from include.reserving.stages import reserving

        return reserving.refit(run_facts(params, run_id, data_interval_end))

    @retried_task
    def lines(refitted: dict) -> list[str]:
        """The lines of business to reserve, one mapped task each."""
        return refitted["segments"]

    @retried_task
    def reserve_segment(refitted: dict, segment: str, params=None, run_id=None, data_interval_end=None) -> dict:
        """Ultimates, case reserves, IBNR and unpaid (with its range) per origin for one line of business."""
        from include.reserving.stages import reserving

        return reserving.reserve_segment(run_facts(params, run_id, data_interval_end), refitted, segment)

    @retried_task
    def analyse(refitted: dict, reserved: list[dict], params=None, run_id=None, data_interval_end=None) -> dict:
        """Analysis of change per line against V-1's publication; the hold reasons (movement, A/E, unexplained)."""
        from include.reserving.stages import reserving

        return reserving.analyse(run_facts(params, run_id, data_interval_end), refitted, list(reserved))

    @retried_task
    def publish(
        refitted: dict,
        reserved: list[dict],
        analysis: dict,
        params=None,
        run_id=None,
        data_interval_end=None,
        dag_run=None,
    ) -> dict:
        """Atomic, versioned publication of all lines for V: current, or HELD for sign-off (Slack alert); refused
        if a later valuation became current meanwhile (unless a backfill, restatement or intended re-run)."""
        from include.reserving import notify
        from include.reserving.stages import reserving

        facts = run_facts(params, run_id, data_interval_end)
        refuse = later_valuation_exemption(params, dag_run) is None
        return reserving.publish(
            facts, refitted, list(reserved), analysis, alert=notify.post_event, refuse_over_later=refuse
        )

    refitted = refit()
    after >> refitted
    reserved = reserve_segment.partial(refitted=refitted).expand(segment=lines(refitted))
    return publish(refitted, reserved, analyse(refitted, reserved))


@task_group(group_id="signoff")
def signoff_group(published):
    """A held month waits for the actuary's sign-off on the numbers; returns the tasks after which the month's
    current numbers may be reported (the report is skipped after a rejection or timeout)."""

    @retried_task.branch
    def hold_or_not(published: dict) -> str:
        """Wait for a sign-off only when the analysis of change held the numbers."""
        return "signoff.await_signoff" if published["held"] else "signoff.within_tolerance"

    @task(**NO_RETRY)
    def apply_signoff(
        published: dict, outcome: dict, params=None, run_id=None, data_interval_end=None, dag_run=None
    ) -> dict:
        """Record sign-off / reject / timeout; on sign-off make the held version current and accept the month,
        unless a later valuation became current meanwhile (the run-order rule, as at publication; unless a
        backfill, restatement or intended re-run): then it stays held on record, signed off, and the alert says so."""
        from include.reserving import notify
        from include.reserving.stages import reserving

        facts = run_facts(params, run_id, data_interval_end)
        refuse = later_valuation_exemption(params, dag_run) is None
        return reserving.apply_signoff(facts, published, outcome, alert=notify.post_event, refuse_over_later=refuse)

    @retried_task.short_circuit
    def signed_off(applied: dict) -> bool:
        """Only signed-off numbers made current are reported: after a rejection, a timeout or a sign-off refused by
        the run order (a later month current) the report is skipped."""
        return applied["decision"] == "approve" and applied.get("current", True)

    awaiting = SignoffSensor(task_id="await_signoff", published=published)
    within_tolerance = EmptyOperator(task_id="within_tolerance")
    branch = hold_or_not(published)
    branch >> Label("held") >> awaiting
    branch >> Label("within tolerance") >> within_tolerance
    return [within_tolerance, signed_off(apply_signoff(published, awaiting.output))]


@task_group(group_id="reporting")
def reporting_group(published, after: list | None = None):
    """The PDF reserve report of V's current numbers, e-mailed to the chief actuary; runs after either path of
    ``after`` that made the month's numbers current."""

    @retried_task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def report(published: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """The PDF reserve report, numbers read back from the published rows."""
        from include.reserving.stages import reporting

        return reporting.report(run_facts(params, run_id, data_interval_end), published)

    @retried_task
    def email_report(reported: dict, params=None, run_id=None, data_interval_end=None) -> dict:
        """E-mail the report to the chief actuary (skipped with a reason when SMTP is not configured)."""
        from include.reserving.stages import reporting

        return reporting.email_report(run_facts(params, run_id, data_interval_end), reported)

    reported = report(published)
    if after:
        after >> reported
    return email_report(reported)

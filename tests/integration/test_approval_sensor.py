"""The approval sensor in real Airflow runs (dag.test()): approve, reject, stale version, unparsable value, timeout.

A harness DAG (tests/integration/dags/) holds the governance and reserving tasks of the monthly DAG (same sensor
class, same stage functions); the warehouse is prepared with a champion and a pending challenger for V, so each
scenario runs in seconds instead of re-running ingest and the quality gate.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from include.reserving.approval import approval_key, approval_value
from include.reserving.stages import RunFacts, input
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.reserves import current_reserves

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)
CHAMPION_SPEC = {"method": "chain_ladder", "params": {}}
CHALLENGER_SPEC = {"method": "chain_ladder", "params": {"n_periods": 5}}


@pytest.fixture
def pending(pipeline_env_any, airflow_db):
    """V ingested, a chain-ladder champion approved earlier, a challenger spec fitted at V awaiting approval."""
    facts = RunFacts.create(V, "prepare")
    input.ingest(facts)
    engine = facts.engine()
    cells = load_cells(engine, V)
    champion = fit_and_register(engine, facts, CHAMPION_SPEC, cells)
    registry.set_champion(engine, champion.model_version, V, "promoted", approved_by="Founding Actuary")
    challenger = fit_and_register(engine, facts, CHALLENGER_SPEC, cells)
    evaluation = {
        "valuation_date": V.isoformat(),
        "challenger_version": challenger.model_version,
        "champion_version": champion.model_version,
        "decision": "promote",
        "reason": "challenger beats the champion (prepared for the harness)",
        "delta": 0.01,
    }
    return engine, champion.model_version, challenger.model_version, evaluation


def _run(evaluation: dict, timeout: int):
    from tests.integration.dags.approval_harness import harness

    run = harness.test(
        logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        run_conf={"valuation_date": V.isoformat(), "evaluation": evaluation, "approval_timeout_seconds": timeout},
    )
    assert run.state == "success"
    return run


def _variable_env(monkeypatch, value: str) -> None:
    # AIRFLOW_VAR_<KEY> is how Airflow reads a Variable from the environment
    monkeypatch.setenv(f"AIRFLOW_VAR_{approval_key(V).upper()}", value)


def test_approve_promotes_and_publishes_with_the_challenger(pending, monkeypatch):
    engine, champion, challenger, evaluation = pending
    _variable_env(monkeypatch, approval_value(challenger, "approve", "Ada Actuary", "better on long tail"))
    _run(evaluation, timeout=60)
    assert registry.champion(engine).model_version == challenger
    assert registry.get(engine, champion).status == "retired"
    approvals = registry.approvals(engine)
    assert approvals[["model_version", "decision", "decided_by", "comment"]].values.tolist() == [
        [challenger, "approve", "Ada Actuary", "better on long tail"]
    ]
    history = registry.champion_history(engine)
    assert history.iloc[-1][["model_version", "action", "approved_by"]].tolist() == [
        challenger,
        "promoted",
        "Ada Actuary",
    ]
    published = current_reserves(engine, V)
    assert set(published.model_version) == {challenger}
    assert set(published.approval_ref) == {f"approvals.id={approvals.id.iloc[0]} (Ada Actuary)"}


def test_reject_keeps_the_champion(pending, monkeypatch):
    engine, champion, challenger, evaluation = pending
    _variable_env(monkeypatch, approval_value(challenger, "reject", "Bo Actuary", "unstable"))
    _run(evaluation, timeout=60)
    assert registry.champion(engine).model_version == champion
    assert registry.get(engine, challenger).status == "rejected"
    assert registry.approvals(engine).decision.tolist() == ["reject"]
    assert set(current_reserves(engine, V).model_version) == {champion}


@pytest.mark.parametrize(
    "value",
    [
        approval_value("20231231-chain_ladder-0000000000", "approve", "Ada Actuary"),  # a stale / other version
        '{"decision": "approve", "model_version": ',  # does not parse
        None,  # nobody answered
    ],
    ids=["stale-version", "unparsable", "no-answer"],
)
def test_anything_but_a_valid_decision_times_out_and_keeps_the_champion(pending, monkeypatch, value):
    engine, champion, challenger, evaluation = pending
    if value is not None:
        _variable_env(monkeypatch, value)
    _run(evaluation, timeout=3)
    assert registry.champion(engine).model_version == champion
    assert registry.get(engine, challenger).status == "candidate"
    approvals = registry.approvals(engine)
    assert approvals[["model_version", "decision"]].values.tolist() == [[challenger, "timeout"]]
    assert set(current_reserves(engine, V).model_version) == {champion}


def test_approval_set_in_the_metadata_database(pending):
    from airflow.models.variable import Variable

    engine, _, challenger, evaluation = pending
    key = approval_key(V)
    Variable.set(key, approval_value(challenger, "approve", "Cy Actuary"))
    try:
        _run(evaluation, timeout=60)
    finally:
        Variable.delete(key)
    assert registry.champion(engine).model_version == challenger
    assert json.loads(approval_value(challenger))["model_version"] == challenger

"""No dead end on a first run (dag.test() of the approval harness): with no champion, a rejected or timed-out first
challenger leaves the month PRELIMINARY from the chain-ladder fallback, and a later run with force_retrain, which
rebuilds the same (deterministic) version, still gets a decision of its own and can make it the champion."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from include.reserving import artifacts, governance
from include.reserving.approval import approval_key, approval_value
from include.reserving.ingest import cells_hash
from include.reserving.stages import RunFacts, input, reserving, training
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import decisions, registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.reserves import current_reserves, versions

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)
CHALLENGER_SPEC = {"method": "chain_ladder", "params": {"n_periods": 5}}
FALLBACK_NOTE = "no champion yet: preliminary reserves from the chain-ladder fallback"


def _first_challenger(run_id: str):
    """What a training run at V leaves with no champion: the challenger registered, the rule saying promote."""
    facts = RunFacts.create(V, run_id)
    engine = facts.engine()
    cells = load_cells(engine, V)
    challenger = fit_and_register(engine, facts, CHALLENGER_SPEC, cells)
    lines = sorted(cells["segment"].unique())
    evaluation = training.evaluate(facts, {"challengers": dict.fromkeys(lines, challenger.model_version)})
    assert evaluation["decision"] == "promote" and evaluation["challenger_version"] == challenger.model_version
    assert evaluation["promote"] == dict.fromkeys(lines, challenger.model_version)  # every line on the card
    assert {line["champion_version"] for line in evaluation["lines"]} == {None}
    return challenger.model_version, evaluation


def _delete_variable() -> None:
    from airflow.models.variable import Variable

    Variable.delete(approval_key(V))


@pytest.fixture
def approvers(airflow_api, monkeypatch):
    """ada and cy may approve; the sensor reads who wrote the Variable from the api-server's audit log."""
    monkeypatch.setenv("RESERVING_APPROVERS", "ada,cy")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_AIRFLOW_API", airflow_api.conn_uri("auditor"))
    # the hand-picked challenger is more biased than chain ladder on this small book, and evaluate's bias guard
    # would keep it off the card on every line; this test is about the first run's approval path, not the guard
    monkeypatch.setenv("RESERVING_PROMOTION_BIAS_MARGIN", "10")
    _delete_variable()  # the Airflow home outlives a test: no decision may come from an earlier one
    yield airflow_api
    _delete_variable()


def _run(evaluation: dict, day: int, timeout: int = 120, decide=None):
    """One harness run deciding on ``evaluation``; ``day`` gives each run its own run id. ``decide`` is
    (api, user, decision, comment): that user sets the Variable through the api-server once the card's code is out."""
    from tests.integration.dags.approval_harness import harness

    writer = None
    if decide is not None:
        api, user, decision, comment = decide
        engine = RunFacts.create(V, "read").engine()
        version = evaluation["challenger_version"]

        def act(code):
            return api.set_variable(user, approval_key(V), approval_value(version, decision, user, comment, code))

        writer, results = api.once_issued(engine, decisions.MODEL, V, version, act)
    run = harness.test(
        logical_date=dt.datetime(2024, 1, day, tzinfo=dt.UTC),
        run_conf={"valuation_date": V.isoformat(), "evaluation": evaluation, "approval_timeout_seconds": timeout},
    )
    assert run.state == "success"
    if writer is not None:
        writer.join(timeout=5)
        assert results in ([200], [201]), results
    return run


def _assert_preliminary_from_the_fallback(engine, run) -> str:
    """V's current version is PRELIMINARY, reserved by the fallback fitted on V's data, to the cent as reserve_segment
    computes it for that model; the fallback is a candidate, never the champion. Returns its version."""
    cells = load_cells(engine, V)
    fallback = governance.model_version_id(governance.FALLBACK_SPEC, V, cells_hash(cells))
    table = versions(engine, V)
    assert table[["is_current", "status", "model_version", "run_id"]].values.tolist() == [
        [True, "preliminary", fallback, run.run_id]
    ]
    assert set(current_reserves(engine, V).approval_ref.dropna()) == set()
    assert registry.champions(engine) == {} and registry.champion_history(engine).empty
    assert registry.get(engine, fallback).spec == governance.FALLBACK_SPEC

    check = RunFacts.create(V, "check-fallback")
    refitted = reserving.refit(check)  # still no champion: the same fallback version, recomputed
    assert (refitted["model_version"], refitted["status"]) == (fallback, "preliminary")
    expected = pd.concat(
        pd.DataFrame(
            json.loads(artifacts.read_text(reserving.reserve_segment(check, refitted, s)["reserves_uri"]))["rows"]
        )
        for s in refitted["segments"]
    )
    expected = expected.assign(origin=pd.to_datetime(expected["origin"])).sort_values(["segment", "origin"])
    published = current_reserves(engine, V)
    assert len(published) == len(expected)
    for column in ("ultimate", "case_reserve", "ibnr", "unpaid"):
        assert published[column].round(2).tolist() == expected[column].round(2).tolist(), column
    return fallback


def _slack(slack_receiver) -> list[str]:
    return [body["text"] for _, body in slack_receiver.received]


def test_a_rejected_first_challenger_publishes_preliminary_and_a_later_run_can_still_approve(
    pipeline_env_any, approvers, slack_receiver
):
    input.ingest(RunFacts.create(V, "prepare"))
    challenger, evaluation = _first_challenger("first-training")

    first = _run(evaluation, day=1, decide=(approvers, "cy", "reject", "unstable"))
    engine = RunFacts.create(V, "read").engine()
    assert registry.get(engine, challenger).status == "rejected"
    fallback = _assert_preliminary_from_the_fallback(engine, first)
    assert fallback != challenger
    lines = sorted(evaluation["promote"])
    (message,) = _slack(slack_receiver)
    assert message.startswith(f"Decisions for {V} on {challenger}: ")
    assert all(f"{line}: model {challenger} rejected by cy: {FALLBACK_NOTE}" in message for line in lines)
    assert "champion kept" not in message

    # a later run with force_retrain trains again and, on the same data, rebuilds the very same version; the
    # rejection belongs to the first run, so this run's decision is its own
    again, evaluation = _first_challenger("forced-training")
    assert again == challenger
    second = _run(evaluation, day=2, decide=(approvers, "ada", "approve", "reviewed"))
    assert {e.model_version for e in registry.champions(engine).values()} == {challenger}
    assert sorted(registry.champions(engine)) == lines
    approvals = registry.approvals(engine)
    assert approvals[["segment", "model_version", "decision", "decided_by", "run_id"]].values.tolist() == [
        *([line, challenger, "reject", "cy", first.run_id] for line in lines),
        *([line, challenger, "approve", "ada", second.run_id] for line in lines),
    ]
    approved = approvals[approvals.decision == "approve"].set_index("segment")["id"]
    history = registry.champion_history(engine)
    assert history[["segment", "model_version", "action", "approval_id"]].values.tolist() == [
        [line, challenger, "promoted", approved[line]] for line in lines
    ]
    table = versions(engine, V)
    assert table[["version", "is_current", "status", "model_version"]].values.tolist() == [
        [1, False, "preliminary", fallback],
        [2, True, "approved", challenger],
    ]
    refs = current_reserves(engine, V).groupby("segment")["approval_ref"].first().to_dict()
    assert refs == {line: f"approvals.id={approved[line]} (ada)" for line in lines}
    assert _slack(slack_receiver)[1] == f"Decisions for {V} on {challenger}: " + "; ".join(
        f"{line}: model {challenger} approved by ada and promoted to the line's champion" for line in lines
    )


def test_a_timed_out_first_challenger_publishes_preliminary_from_the_fallback(pipeline_env, approvers, slack_receiver):
    input.ingest(RunFacts.create(V, "prepare"))
    challenger, evaluation = _first_challenger("first-training")

    run = _run(evaluation, day=1, timeout=3)
    engine = RunFacts.create(V, "read").engine()
    # the unanswered challenger stays a candidate for a later decision; it does not reserve the month
    assert registry.get(engine, challenger).status == "candidate"
    lines = sorted(evaluation["promote"])
    assert registry.approvals(engine)[["segment", "model_version", "decision"]].values.tolist() == [
        [line, challenger, "timeout"] for line in lines
    ]
    _assert_preliminary_from_the_fallback(engine, run)
    (message,) = _slack(slack_receiver)
    assert all(f"{line}: approval of model {challenger} timed out: {FALLBACK_NOTE}" in message for line in lines)
    assert "champion kept" not in message

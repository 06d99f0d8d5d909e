"""The approval sensor in real Airflow runs (dag.test()) against a real api-server: who may approve, bound to the card.

A harness DAG (tests/integration/dags/) holds the governance and reserving tasks of the monthly DAG (same sensor
class, same stage functions); the warehouse is prepared with a champion and a pending challenger for V, so each
scenario runs in seconds instead of re-running ingest and the quality gate. The actuaries set the Variable through
the api-server's REST API (as the UI does) from a second thread once the model card is issued; the sensor reads
Airflow's audit log through the same server as the read-only user ``auditor``. Approvers: ada (and cy).
"""

from __future__ import annotations

import datetime as dt

import pytest

from include.reserving import governance
from include.reserving.approval import approval_key, approval_value
from include.reserving.stages import RunFacts, input
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import decisions, registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.reserves import current_reserves
from tests.servers import AirflowApi

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)
CHAMPION_SPEC = {"method": "chain_ladder", "params": {}}
CHALLENGER_SPEC = {"method": "chain_ladder", "params": {"n_periods": 5}}


def _delete_variable() -> None:
    from airflow.models.variable import Variable

    Variable.delete(approval_key(V))


def _pending(airflow_api, monkeypatch):
    """V ingested, a chain-ladder champion approved earlier, a challenger spec fitted at V awaiting approval."""
    monkeypatch.setenv("RESERVING_APPROVERS", "ada,cy")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_AIRFLOW_API", airflow_api.conn_uri("auditor"))
    facts = RunFacts.create(V, "prepare")
    input.ingest(facts)
    engine = facts.engine()
    cells = load_cells(engine, V)
    champion = fit_and_register(engine, facts, CHAMPION_SPEC, cells)
    lines = sorted(cells["segment"].unique())
    registry.set_champion(engine, champion.model_version, V, "promoted", lines, approved_by="Founding Actuary")
    challenger = fit_and_register(engine, facts, CHALLENGER_SPEC, cells)
    # the challenger beats the champion on every line (prepared for the harness): one card, every line on it
    rule = [
        governance.decide_promotion(
            V, champion.model_version, -0.12, challenger.model_version, -0.08, 0.01, segment=line
        )
        for line in lines
    ]
    evaluation = governance.evaluation(V, rule, 0.01)
    _delete_variable()  # the Airflow home outlives a test: no decision may come from an earlier one
    return engine, champion.model_version, challenger.model_version, evaluation


@pytest.fixture
def pending(pipeline_env, airflow_api, monkeypatch):
    yield _pending(airflow_api, monkeypatch)
    _delete_variable()


@pytest.fixture
def pending_any(pipeline_env_any, airflow_api, monkeypatch):
    """The same on SQLite and PostgreSQL warehouses."""
    yield _pending(airflow_api, monkeypatch)
    _delete_variable()


def _run(evaluation: dict, timeout: int):
    from tests.integration.dags.approval_harness import harness

    run = harness.test(
        logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        run_conf={"valuation_date": V.isoformat(), "evaluation": evaluation, "approval_timeout_seconds": timeout},
    )
    assert run.state == "success"
    return run


def _once_the_card_is_out(engine, version: str, act):
    return AirflowApi.once_issued(engine, decisions.MODEL, V, version, act)


def _audit_events(api, user: str) -> list[dict]:
    with api.client("auditor") as client:
        page = client.get("/eventLogs", params={"owner": user, "event_pattern": "variable", "order_by": "id"})
        page.raise_for_status()
        return page.json()["event_logs"]


def test_an_approvers_decision_is_recorded_under_their_airflow_user(pending_any, airflow_api):
    engine, champion, challenger, evaluation = pending_any

    def approve(code):
        value = approval_value(challenger, "approve", "Ada Actuary", "better on long tail", code)
        return airflow_api.set_variable("ada", approval_key(V), value)

    writer, results = _once_the_card_is_out(engine, challenger, approve)
    _run(evaluation, timeout=120)
    writer.join(timeout=5)
    assert results == [201]
    assert _champions(engine) == {challenger}
    assert registry.get(engine, champion).status == "retired"
    approvals = registry.approvals(engine)
    lines = sorted(evaluation["promote"])
    assert approvals[["segment", "model_version", "decision", "decided_by", "comment"]].values.tolist() == [
        [line, challenger, "approve", "ada", "better on long tail"] for line in lines
    ]
    # decided when Airflow logged ada's write, not when the sensor noticed it
    written = [e for e in _audit_events(airflow_api, "ada") if e["event"] == "post_variable"][-1]
    logged = dt.datetime.fromisoformat(written["when"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert approvals.decided_at.iloc[0].to_pydatetime() == logged
    history = registry.champion_history(engine)
    assert history.iloc[-1][["model_version", "action", "approved_by"]].tolist() == [challenger, "promoted", "ada"]
    published = current_reserves(engine, V)
    assert set(published.model_version) == {challenger}
    # each line's rows name the approval of that line
    refs = published.groupby("segment")["approval_ref"].unique().map(list).to_dict()
    assert refs == {r.segment: [f"approvals.id={r.id} (ada)"] for r in approvals.itertuples()}


def test_reject_by_an_approver_keeps_the_champion(pending, airflow_api):
    engine, champion, challenger, evaluation = pending
    writer, results = _once_the_card_is_out(
        engine,
        challenger,
        lambda code: airflow_api.set_variable(
            "cy", approval_key(V), approval_value(challenger, "reject", "Cy", "unstable", code)
        ),
    )
    _run(evaluation, timeout=120)
    writer.join(timeout=5)
    assert _champions(engine) == {champion}
    assert registry.get(engine, challenger).status == "rejected"
    lines = len(evaluation["promote"])
    assert registry.approvals(engine)[["decision", "decided_by"]].values.tolist() == [["reject", "cy"]] * lines
    assert set(current_reserves(engine, V).model_version) == {champion}


def _champions(engine) -> set[str]:
    return {entry.model_version for entry in registry.champions(engine).values()}


def _assert_timed_out_and_nobody_approved(engine, champion, challenger):
    assert _champions(engine) == {champion}
    assert registry.get(engine, challenger).status == "candidate"
    approvals = registry.approvals(engine)
    lines = sorted(registry.champions(engine))  # every line was on the card: one timeout a line
    assert approvals[["segment", "model_version", "decision"]].values.tolist() == [
        [line, challenger, "timeout"] for line in lines
    ]
    assert approvals.decided_by.isna().all()
    assert registry.champion_history(engine).approved_by.tolist() == ["Founding Actuary"] * len(lines)
    assert set(current_reserves(engine, V).model_version) == {champion}


def test_a_viewer_cannot_approve_and_an_admin_who_is_not_an_approver_is_ignored_and_alerted(
    pending, airflow_api, slack_receiver
):
    engine, champion, challenger, evaluation = pending

    def try_as_viewer_then_boss(code):
        value = approval_value(challenger, "approve", "Chief Actuary", "trust me", code)
        return airflow_api.set_variable("viewer", approval_key(V), value), airflow_api.set_variable(
            "boss", approval_key(V), value
        )

    writer, results = _once_the_card_is_out(engine, challenger, try_as_viewer_then_boss)
    _run(evaluation, timeout=6)
    writer.join(timeout=5)
    assert results == [(403, 201)]  # the viewer may not set Variables at all; the admin may, but may not approve
    _assert_timed_out_and_nobody_approved(engine, champion, challenger)
    alerts = [body["text"] for _, body in slack_receiver.received if "Ignored a decision" in body["text"]]
    assert len(alerts) == 1 and "'boss', who may not decide" in alerts[0]


@pytest.mark.parametrize(
    "value",
    [
        lambda challenger, code: approval_value("20231231-chain_ladder-0000000000", "approve", "Ada", code=code),
        lambda challenger, code: '{"decision": "approve", "model_version": ',
        lambda challenger, code: approval_value(challenger, "approve", "<your name>", code=code),
        lambda challenger, code: approval_value(challenger, "approve", "Ada", code="0123456789"),  # another card's
        None,  # nobody answered
    ],
    ids=["stale-version", "unparsable", "placeholder", "another-code", "no-answer"],
)
def test_anything_but_a_valid_decision_times_out_and_keeps_the_champion(pending, airflow_api, value):
    engine, champion, challenger, evaluation = pending
    writer = None
    if value is not None:
        writer, _ = _once_the_card_is_out(
            engine, challenger, lambda code: airflow_api.set_variable("ada", approval_key(V), value(challenger, code))
        )
    _run(evaluation, timeout=4)
    if writer is not None:
        writer.join(timeout=5)
    _assert_timed_out_and_nobody_approved(engine, champion, challenger)


def test_a_value_set_before_the_card_does_not_decide(pending, airflow_api):
    """The value an approver set for an earlier run of the month (its card's code), left in place: the new run
    issues a new card whose code it does not quote, and it was written before that card existed."""
    engine, champion, challenger, evaluation = pending
    earlier = decisions.issue(engine, decisions.MODEL, V, challenger, "manual__earlier-run")
    value = approval_value(challenger, "approve", "Ada", "for the earlier run", earlier.code)
    assert airflow_api.set_variable("ada", approval_key(V), value) == 201
    _run(evaluation, timeout=4)
    _assert_timed_out_and_nobody_approved(engine, champion, challenger)

"""apply_approval is atomic and idempotent (SQLite and PostgreSQL): a process killed -9 between recording the
decision and promoting leaves nothing; the re-run records one approval row and promotes once; a later re-run, or a
half-done promotion left by an older non-atomic run, never rewrites the approval row; every champion_history row
points at an approval that exists."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import insert

from include.reserving import approval, governance, schema
from include.reserving.stages import RunFacts
from include.reserving.stages.governance import apply_approval
from include.reserving.warehouse import registry
from tests.conftest import PROJECT, model_entry

V0, V = dt.date(2023, 12, 31), dt.date(2024, 1, 31)
RUN = "scheduled__2024-02-01T00:00:00+00:00"

# The child runs the stage and SIGKILLs itself as the promotion writes champion_history: after the approval row and
# the registry's status changes were sent, before the transaction commits.
KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def _die(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO CHAMPION_HISTORY"):
            os.kill(os.getpid(), signal.SIGKILL)

    from include.reserving.stages import RunFacts
    from include.reserving.stages.governance import apply_approval

    evaluation = {"challenger_version": sys.argv[3], "promote": {"Liability": sys.argv[3], "Motor": sys.argv[3]}}
    apply_approval(RunFacts.create(sys.argv[1], sys.argv[2]), evaluation,
                   {"decision": "approve", "by": "ada", "comment": "better on every line"})
    """
)


LINES = ("Liability", "Motor")


def _book(engine):
    """A champion of both lines promoted at V0 (with its approvals) and a challenger the rule wants to promote on both
    lines at V."""
    champion = registry.register(engine, model_entry("chain_ladder", V0))
    challenger = registry.register(engine, model_entry("xgboost_development", V))
    for line in LINES:
        registry.decide(engine, V0, champion.model_version, "approve", approval.approval_key(V0), line, "founder")
    decisions = [
        governance.decide_promotion(
            V, champion.model_version, -0.12, challenger.model_version, -0.08, 0.01, segment=line
        )
        for line in LINES
    ]
    registry.record_decisions(engine, V, decisions, run_id=RUN)
    return champion.model_version, challenger.model_version


def _evaluation(challenger: str) -> dict:
    return {"challenger_version": challenger, "promote": dict.fromkeys(LINES, challenger)}


def _champions(engine) -> dict[str, str]:
    return {line: entry.model_version for line, entry in registry.champions(engine).items()}


def _assert_history_points_at_existing_approvals(engine):
    approval_ids = set(registry.approvals(engine)["id"])
    history = registry.champion_history(engine)
    assert history["approval_id"].notna().all() and set(history["approval_id"]) <= approval_ids


def test_a_kill_inside_the_decision_leaves_nothing_and_the_rerun_records_once(warehouse, warehouse_url, monkeypatch):
    champion, challenger = _book(warehouse)
    env = {**os.environ, "AIRFLOW_CONN_RESERVING_DB": warehouse_url, "PYTHONPATH": str(PROJECT)}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, V.isoformat(), RUN, challenger],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    # nothing of the decision survived the kill: still pending, the old champion in place
    assert registry.decision_on(warehouse, V, challenger, RUN, "Liability") is None
    assert _champions(warehouse) == dict.fromkeys(LINES, champion)
    assert registry.get(warehouse, challenger).status == "candidate"
    assert len(registry.champion_history(warehouse)) == 2
    assert [p["challenger_version"] for p in registry.pending_decisions(warehouse)] == [challenger, challenger]

    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    facts = RunFacts.create(V, RUN)
    outcome = {"decision": "approve", "by": "ada", "comment": "better on every line"}
    first = apply_approval(facts, _evaluation(challenger), outcome)
    assert (first["decision"], first["promoted"]) == ("approve", list(LINES))
    second = apply_approval(facts, _evaluation(challenger), outcome)  # a retried task
    ids = {line: first["lines"][line]["approval_id"] for line in LINES}
    assert {line: second["lines"][line]["approval_id"] for line in LINES} == ids and second["promoted"] == []
    assert f"(already recorded as approvals.id={ids['Motor']}) Motor" in second["message"]

    rows = registry.approvals(warehouse)
    mine = rows[rows.valuation_date == V]
    assert mine[["id", "segment", "model_version", "decision", "decided_by"]].values.tolist() == [
        [ids[line], line, challenger, "approve", "ada"] for line in LINES
    ]
    history = registry.champion_history(warehouse)
    assert history[["segment", "model_version", "previous_version", "approval_id"]].values.tolist()[2:] == [
        [line, challenger, champion, ids[line]] for line in LINES
    ]
    assert _champions(warehouse) == dict.fromkeys(LINES, challenger)
    assert registry.get(warehouse, champion).status == "retired"
    _assert_history_points_at_existing_approvals(warehouse)


def test_a_half_done_promotion_is_completed_without_rewriting_the_approval(warehouse, warehouse_url, monkeypatch):
    """What the older, two-transaction apply_approval left when killed between them: approved, never promoted."""
    champion, challenger = _book(warehouse)
    decided_at = dt.datetime(2024, 2, 3, 10, 15)
    with warehouse.begin() as conn:
        conn.execute(
            insert(schema.approvals),
            list(
                dict(
                    valuation_date=V,
                    model_version=challenger,
                    decision="approve",
                    decided_by="ada",
                    decided_at=decided_at,
                    comment="approved before the crash",
                    variable_key=approval.approval_key(V),
                    run_id=RUN,
                    segment=line,
                )
                for line in LINES
            ),
        )
    before = registry.approvals(warehouse)
    assert registry.pending_decisions(warehouse) == []  # the half-done state looks decided ...
    assert _champions(warehouse) == dict.fromkeys(LINES, champion)  # ... but nothing was promoted

    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    # the re-run's own outcome (here the sensor timing out) does not override what was recorded
    result = apply_approval(RunFacts.create(V, RUN), _evaluation(challenger), {"decision": "timeout"})
    assert (result["decision"], result["promoted"]) == ("approve", list(LINES))
    assert registry.approvals(warehouse).equals(before)  # same ids, same decided_at, same text
    assert _champions(warehouse) == dict.fromkeys(LINES, challenger)
    history = registry.champion_history(warehouse)
    ids = before.loc[before.valuation_date == V, "id"].tolist()
    assert history[["model_version", "approval_id", "approved_by"]].values.tolist()[2:] == [
        [challenger, approval_id, "ada"] for approval_id in ids
    ]
    assert apply_approval(RunFacts.create(V, RUN), _evaluation(challenger), {})["promoted"] == []
    assert len(registry.champion_history(warehouse)) == 4
    _assert_history_points_at_existing_approvals(warehouse)


@pytest.mark.parametrize("decision", ["reject", "timeout"])
def test_reject_and_timeout_are_recorded_once_and_keep_the_champion(warehouse, warehouse_url, monkeypatch, decision):
    champion, challenger = _book(warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    facts = RunFacts.create(V, RUN)
    first = apply_approval(facts, _evaluation(challenger), {"decision": decision, "by": "bob"})
    again = apply_approval(facts, _evaluation(challenger), {"decision": "approve", "by": "eve"})
    assert (again["decision"], again["lines"], again["promoted"]) == (decision, first["lines"], [])
    assert _champions(warehouse) == dict.fromkeys(LINES, champion)
    assert registry.get(warehouse, challenger).status == ("rejected" if decision == "reject" else "candidate")
    assert registry.approvals(warehouse)["decided_by"].tolist() == ["founder", "founder", "bob", "bob"]
    assert len(registry.champion_history(warehouse)) == 2


def test_one_card_approves_a_line_and_rejects_another(warehouse, warehouse_url, monkeypatch):
    """The value's decision is approve, its lines reject Liability: Motor's challenger becomes Motor's champion,
    Liability keeps its champion; each line's decision is its own approvals row and a retry changes nothing."""
    champion, challenger = _book(warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    facts = RunFacts.create(V, RUN)
    outcome = {"decision": "approve", "lines": {"Liability": "reject"}, "by": "ada", "comment": "Motor only"}
    result = apply_approval(facts, _evaluation(challenger), outcome)
    assert result["decision"] == "mixed" and result["promoted"] == ["Motor"]
    assert {line: d["decision"] for line, d in result["lines"].items()} == {"Liability": "reject", "Motor": "approve"}
    assert "Liability: model" in result["message"] and "rejected by ada: its champion kept" in result["message"]
    assert _champions(warehouse) == {"Liability": champion, "Motor": challenger}
    assert registry.get(warehouse, challenger).status == "champion"  # approved on Motor, whatever Liability says
    retry = apply_approval(facts, _evaluation(challenger), {"decision": "timeout"})
    assert retry["lines"] == {line: {**d, "promoted": False} for line, d in result["lines"].items()}
    assert _champions(warehouse) == {"Liability": champion, "Motor": challenger}
    history = registry.champion_history(warehouse)
    assert history[["segment", "model_version", "previous_version"]].values.tolist()[2:] == [
        ["Motor", challenger, champion]
    ]
    _assert_history_points_at_existing_approvals(warehouse)

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

    apply_approval(RunFacts.create(sys.argv[1], sys.argv[2]), {"challenger_version": sys.argv[3]},
                   {"decision": "approve", "by": "ada", "comment": "better on every line"})
    """
)


def _book(engine):
    """A champion promoted at V0 (with its approval) and a challenger the rule wants to promote at V."""
    champion = registry.register(engine, model_entry("chain_ladder", V0))
    challenger = registry.register(engine, model_entry("xgboost_development", V))
    registry.decide(engine, V0, champion.model_version, "approve", approval.approval_key(V0), "founder")
    registry.record_decision(
        engine,
        governance.decide_promotion(V, champion.model_version, -0.12, challenger.model_version, -0.08, 0.01),
        run_id=RUN,
    )
    return champion.model_version, challenger.model_version


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
    assert registry.decision_on(warehouse, V, challenger, RUN) is None
    assert registry.champion(warehouse).model_version == champion
    assert registry.get(warehouse, challenger).status == "candidate"
    assert len(registry.champion_history(warehouse)) == 1
    assert [p["challenger_version"] for p in registry.pending_decisions(warehouse)] == [challenger]

    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    facts = RunFacts.create(V, RUN)
    outcome = {"decision": "approve", "by": "ada", "comment": "better on every line"}
    first = apply_approval(facts, {"challenger_version": challenger}, outcome)
    assert (first["decision"], first["promoted"]) == ("approve", True)
    second = apply_approval(facts, {"challenger_version": challenger}, outcome)  # a retried task
    assert (second["approval_id"], second["promoted"]) == (first["approval_id"], False)
    assert second["message"].startswith(f"(already recorded as approvals.id={first['approval_id']})")

    rows = registry.approvals(warehouse)
    mine = rows[rows.valuation_date == V]
    assert mine[["id", "model_version", "decision", "decided_by"]].values.tolist() == [
        [first["approval_id"], challenger, "approve", "ada"]
    ]
    history = registry.champion_history(warehouse)
    assert history[["model_version", "previous_version", "approval_id"]].values.tolist()[1:] == [
        [challenger, champion, first["approval_id"]]
    ]
    assert registry.champion(warehouse).model_version == challenger
    assert registry.get(warehouse, champion).status == "retired"
    _assert_history_points_at_existing_approvals(warehouse)


def test_a_half_done_promotion_is_completed_without_rewriting_the_approval(warehouse, warehouse_url, monkeypatch):
    """What the older, two-transaction apply_approval left when killed between them: approved, never promoted."""
    champion, challenger = _book(warehouse)
    decided_at = dt.datetime(2024, 2, 3, 10, 15)
    with warehouse.begin() as conn:
        conn.execute(
            insert(schema.approvals).values(
                valuation_date=V,
                model_version=challenger,
                decision="approve",
                decided_by="ada",
                decided_at=decided_at,
                comment="approved before the crash",
                variable_key=approval.approval_key(V),
                run_id=RUN,
            )
        )
    before = registry.approvals(warehouse)
    assert registry.pending_decisions(warehouse) == []  # the half-done state looks decided ...
    assert registry.champion(warehouse).model_version == champion  # ... but nothing was promoted

    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    # the re-run's own outcome (here the sensor timing out) does not override what was recorded
    result = apply_approval(RunFacts.create(V, RUN), {"challenger_version": challenger}, {"decision": "timeout"})
    assert (result["decision"], result["promoted"]) == ("approve", True)
    assert registry.approvals(warehouse).equals(before)  # same ids, same decided_at, same text
    assert registry.champion(warehouse).model_version == challenger
    history = registry.champion_history(warehouse)
    (approval_id,) = before.loc[before.valuation_date == V, "id"]
    assert history[["model_version", "approval_id", "approved_by"]].values.tolist()[1:] == [
        [challenger, approval_id, "ada"]
    ]
    assert apply_approval(RunFacts.create(V, RUN), {"challenger_version": challenger}, {})["promoted"] is False
    assert len(registry.champion_history(warehouse)) == 2
    _assert_history_points_at_existing_approvals(warehouse)


@pytest.mark.parametrize("decision", ["reject", "timeout"])
def test_reject_and_timeout_are_recorded_once_and_keep_the_champion(warehouse, warehouse_url, monkeypatch, decision):
    champion, challenger = _book(warehouse)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    facts = RunFacts.create(V, RUN)
    first = apply_approval(facts, {"challenger_version": challenger}, {"decision": decision, "by": "bob"})
    again = apply_approval(facts, {"challenger_version": challenger}, {"decision": "approve", "by": "eve"})
    assert (again["decision"], again["approval_id"], again["promoted"]) == (decision, first["approval_id"], False)
    assert registry.champion(warehouse).model_version == champion
    assert registry.get(warehouse, challenger).status == ("rejected" if decision == "reject" else "candidate")
    assert registry.approvals(warehouse)["decided_by"].tolist() == ["founder", "bob"]
    assert len(registry.champion_history(warehouse)) == 1

"""Registry: one champion (enforced by the database, also under racing promotions), promotion rule, audit."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from include.reserving import governance, schema
from include.reserving.config import Settings
from include.reserving.warehouse import registry
from include.reserving.warehouse.core import make_engine
from tests.conftest import model_entry

V = dt.date(2024, 1, 31)


def _entry(method: str, n: int, valuation_date: dt.date = V) -> governance.ModelEntry:
    return model_entry(method, valuation_date, {"n": n})


def test_version_ids_are_deterministic_and_distinct():
    a, b = _entry("chain_ladder", 1), _entry("chain_ladder", 2)
    assert a.model_version == _entry("chain_ladder", 1).model_version
    assert a.model_version != b.model_version
    assert a.model_version.startswith("20240131-chain_ladder-")


def test_one_champion_with_history(warehouse):
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    b = registry.register(warehouse, _entry("xgboost", 1))
    assert a.status == b.status == "candidate" and registry.champion(warehouse) is None

    assert registry.set_champion(warehouse, a.model_version, V, "promoted", approved_by="ada")
    assert registry.set_champion(warehouse, a.model_version, V, "promoted", approved_by="ada") is False  # re-run
    assert registry.set_champion(warehouse, b.model_version, V, "promoted", approved_by="bob")
    assert registry.champion(warehouse).model_version == b.model_version
    assert registry.get(warehouse, a.model_version).status == "retired"
    history = registry.champion_history(warehouse)
    assert list(history.model_version) == [a.model_version, b.model_version]
    assert list(history.previous_version.fillna("-")) == ["-", a.model_version]
    assert list(history.approved_by) == ["ada", "bob"]

    # the database itself refuses a second champion
    with pytest.raises(IntegrityError), warehouse.begin() as conn:
        conn.execute(
            update(schema.model_registry)
            .where(schema.model_registry.c.model_version == a.model_version)
            .values(status="champion")
        )
    # re-registering keeps the status
    assert registry.register(warehouse, _entry("xgboost", 1)).status == "champion"


def test_rejected_candidate_and_unknown_version(warehouse):
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    registry.set_status(warehouse, a.model_version, "rejected")
    assert registry.get(warehouse, a.model_version).status == "rejected"
    with pytest.raises(LookupError):
        registry.set_champion(warehouse, "nope", V, "promoted")


@pytest.mark.postgres
def test_racing_promotions_keep_one_champion(pg_url):
    engine = make_engine(pg_url)
    schema.create_all(engine)
    versions = [registry.register(engine, _entry("chain_ladder", n)).model_version for n in range(6)]
    barrier = threading.Barrier(len(versions))
    errors = []

    def promote(version):
        own = make_engine(pg_url)
        try:
            barrier.wait()
            for _ in range(5):
                registry.set_champion(own, version, V, "promoted", approved_by=version)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        champions = conn.execute(
            select(func.count()).select_from(schema.model_registry).where(schema.model_registry.c.status == "champion")
        ).scalar_one()
    assert champions == 1
    history = registry.champion_history(engine)
    # serialised: every change retired exactly the champion before it
    assert list(history.previous_version[1:]) == list(history.model_version[:-1])
    assert history.model_version.iloc[-1] == registry.champion(engine).model_version
    engine.dispose()


def test_promotion_rule_margin():
    d = governance.decide_promotion(V, "champ", -0.10, "chall", -0.08, 0.01)
    assert d.decision == "promote"
    assert governance.decide_promotion(V, "champ", -0.10, "chall", -0.095, 0.01).decision == "keep"
    assert governance.decide_promotion(V, "champ", -0.10, "chall", -0.09, 0.01).decision == "keep"  # not strictly >
    assert governance.decide_promotion(V, None, None, "chall", -0.5, 0.01).decision == "promote"
    assert governance.decide_promotion(V, "champ", -0.1, None, None, 0.01).decision == "none"


def test_promotion_rule_bias_guard():
    """A challenger far better on score is kept out when its bias exceeds chain ladder's by more than the margin."""
    kwargs = {"baseline_bias": -0.02, "bias_margin": 0.05}
    biased = governance.decide_promotion(V, "champ", 0.70, "chall", 0.90, 0.01, challenger_bias=0.0701, **kwargs)
    assert biased.decision == "keep" and "bias +0.0701 is materially worse than chain ladder's -0.0200" in biased.reason
    first = governance.decide_promotion(V, None, None, "chall", 0.90, 0.01, challenger_bias=-0.08, **kwargs)
    assert first.decision == "keep"
    within = governance.decide_promotion(V, "champ", 0.70, "chall", 0.90, 0.01, challenger_bias=-0.0699, **kwargs)
    assert within.decision == "promote"
    assert governance.materially_more_biased(0.08, 0.02, 0.05) and not governance.materially_more_biased(0.07, 0.02)
    assert not governance.materially_more_biased(float("nan"), 0.0, 0.0)
    # the setting's default is the rule's
    assert Settings.model_fields["promotion_bias_margin"].default == governance.BIAS_MARGIN


def test_near_equal_specs_alternating_never_flip_the_champion():
    """Two specs whose scores swap order every month by less than delta: the champion never changes."""
    champion, other = "spec_a", "spec_b"
    flips = 0
    for month in range(24):
        score_a = -0.100 + (0.004 if month % 2 else 0.0)
        score_b = -0.100 + (0.0 if month % 2 else 0.004)
        scores = {"spec_a": score_a, "spec_b": score_b}
        decision = governance.decide_promotion(V, champion, scores[champion], other, scores[other], delta=0.005)
        if decision.decision == "promote":
            champion, other = other, champion
            flips += 1
    assert flips == 0 and champion == "spec_a"


def test_decisions_and_backtests_are_replaced_on_rerun(warehouse):
    import pandas as pd

    d = governance.decide_promotion(V, "champ", -0.10, "chall", -0.08, 0.01)
    registry.record_decision(warehouse, d, run_id="r1")
    registry.record_decision(warehouse, d, run_id="r1")
    scores = pd.DataFrame({"segment": ["ALL", "Motor"], "wape": [0.1, 0.2], "rmse": [5.0, 6.0]})
    registry.store_backtest(warehouse, V, "chall", "challenger", scores, 4, "r1")
    registry.store_backtest(warehouse, V, "chall", "challenger", scores, 4, "r1")
    with warehouse.connect() as conn:
        for table, n in ((schema.promotion_decisions, 1), (schema.backtest_results, 2)):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == n


def test_a_decision_is_recorded_once_and_never_rewritten(warehouse):
    """The first write wins: a re-run (even one carrying another outcome) reads the row and leaves it as it was."""
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    b = registry.register(warehouse, _entry("xgboost", 1))
    key = "reserving_approval__2024-01-31"
    first = registry.decide(warehouse, V, a.model_version, "approve", key, "ada", "good", dt.datetime(2024, 2, 2, 9))
    assert (first.decision, first.newly_recorded, first.promoted) == ("approve", True, True)
    again = registry.decide(warehouse, V, a.model_version, "timeout", key, None, None, dt.datetime(2024, 2, 9))
    assert (again.approval_id, again.decision, again.decided_by) == (first.approval_id, "approve", "ada")
    assert (again.decided_at, again.newly_recorded, again.promoted) == (dt.datetime(2024, 2, 2, 9), False, False)
    rows = registry.approvals(warehouse)
    assert rows[["id", "decision", "decided_by", "comment"]].values.tolist() == [
        [first.approval_id, "approve", "ada", "good"]
    ]
    history = registry.champion_history(warehouse)
    assert history[["model_version", "approval_id", "approved_by"]].values.tolist() == [
        [a.model_version, first.approval_id, "ada"]
    ]

    rejected = registry.decide(warehouse, V, b.model_version, "reject", key, "bob")
    assert registry.get(warehouse, b.model_version).status == "rejected" and not rejected.promoted
    assert registry.decide(warehouse, V, b.model_version, "approve", key, "eve").decision == "reject"
    assert registry.champion(warehouse).model_version == a.model_version
    assert len(registry.champion_history(warehouse)) == 1
    with pytest.raises(ValueError, match="decision 'maybe'"):
        registry.decide(warehouse, V, b.model_version, "maybe", key)


def test_a_later_run_decides_anew_on_a_version_an_earlier_run_rejected(warehouse):
    """Version ids are deterministic: a run retraining after a rejection puts the same version to the actuary, and
    its decision is its own (the earlier run's row stays as it was)."""
    b = registry.register(warehouse, _entry("xgboost", 1))
    key = "reserving_approval__2024-01-31"
    promote = governance.decide_promotion(V, None, None, b.model_version, -0.08, 0.01)
    registry.record_decision(warehouse, promote, run_id="r1")
    assert [p["run_id"] for p in registry.pending_decisions(warehouse)] == ["r1"]
    rejected = registry.decide(warehouse, V, b.model_version, "reject", key, "bob", run_id="r1")
    assert registry.pending_decisions(warehouse) == [] and registry.champion(warehouse) is None
    assert registry.decide(warehouse, V, b.model_version, "approve", key, "eve", run_id="r1").decision == "reject"

    registry.record_decision(warehouse, promote, run_id="r2")  # the later run's evaluate
    assert [p["run_id"] for p in registry.pending_decisions(warehouse)] == ["r2"]
    assert registry.decision_on(warehouse, V, b.model_version, "r2") is None
    approved = registry.decide(warehouse, V, b.model_version, "approve", key, "eve", run_id="r2")
    assert (approved.decision, approved.newly_recorded, approved.promoted) == ("approve", True, True)
    assert approved.approval_id != rejected.approval_id
    assert registry.champion(warehouse).model_version == b.model_version
    assert registry.approvals(warehouse)[["decision", "decided_by", "run_id"]].values.tolist() == [
        ["reject", "bob", "r1"],
        ["approve", "eve", "r2"],
    ]
    assert registry.champion_history(warehouse).approval_id.tolist() == [approved.approval_id]
    assert registry.pending_decisions(warehouse) == []

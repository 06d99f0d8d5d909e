"""Registry: one champion per line (enforced by the database, also under racing promotions), promotion rule, audit."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select
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


LINES = ["Liability", "Motor"]


def test_one_champion_per_line_with_history(warehouse):
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    b = registry.register(warehouse, _entry("xgboost", 1))
    assert a.status == b.status == "candidate" and registry.champions(warehouse) == {}

    assert registry.set_champion(warehouse, a.model_version, V, "promoted", LINES, approved_by="ada") == LINES
    assert registry.set_champion(warehouse, a.model_version, V, "promoted", LINES, approved_by="ada") == []  # re-run
    assert registry.set_champion(warehouse, b.model_version, V, "promoted", ["Motor"], approved_by="bob") == ["Motor"]
    champions = registry.champions(warehouse)
    assert {line: e.model_version for line, e in champions.items()} == {
        "Liability": a.model_version,
        "Motor": b.model_version,
    }
    assert registry.champion_of(warehouse, "Motor").model_version == b.model_version
    assert registry.champion_of(warehouse, "Marine") is None
    # a cross-line model stays a champion while it champions any line; retired once it champions none
    assert registry.get(warehouse, a.model_version).status == registry.get(warehouse, b.model_version).status
    assert registry.set_champion(warehouse, b.model_version, V, "promoted", ["Liability"], approved_by="bob")
    assert registry.get(warehouse, a.model_version).status == "retired"
    motor = registry.champion_history(warehouse, "Motor")
    assert list(motor.model_version) == [a.model_version, b.model_version]
    assert list(motor.previous_version.fillna("-")) == ["-", a.model_version]
    assert list(motor.approved_by) == ["ada", "bob"]
    assert list(registry.champion_history(warehouse).segment) == ["Liability", "Motor", "Motor", "Liability"]

    # the database itself refuses a second champion of a line
    with pytest.raises(IntegrityError), warehouse.begin() as conn:
        conn.execute(
            schema.line_champions.insert().values(
                segment="Motor", model_version=a.model_version, valuation_date=V, changed_at=dt.datetime(2024, 2, 1)
            )
        )
    # re-registering keeps the status
    assert registry.register(warehouse, _entry("xgboost", 1)).status == "champion"


def test_rejected_candidate_and_unknown_version(warehouse):
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    registry.set_status(warehouse, a.model_version, "rejected")
    assert registry.get(warehouse, a.model_version).status == "rejected"
    with pytest.raises(LookupError):
        registry.set_champion(warehouse, "nope", V, "promoted", LINES)
    with pytest.raises(ValueError, match="name the lines"):
        registry.set_champion(warehouse, a.model_version, V, "promoted", [])


def test_racing_promotions_keep_one_champion_per_line(warehouse_url):
    """Threads (each with its own engine) promote different models for the same lines at once: every promotion is
    serialised, so each line ends with exactly one champion and its history is a chain (each change retired exactly
    the champion before it), on SQLite and PostgreSQL."""
    engine = make_engine(warehouse_url)
    schema.create_all(engine)
    versions = [registry.register(engine, _entry("chain_ladder", n)).model_version for n in range(4)]
    barrier = threading.Barrier(len(versions))
    errors = []

    def promote(n: int, version: str):
        own = make_engine(warehouse_url)
        try:
            barrier.wait()
            for attempt in range(4):
                # half the threads also promote on Liability; everyone fights for Motor
                lines = ["Motor", "Liability"] if (n + attempt) % 2 else ["Motor"]
                registry.set_champion(own, version, V, "promoted", lines, approved_by=version)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=promote, args=(n, v)) for n, v in enumerate(versions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        rows = conn.execute(select(schema.line_champions.c.segment, schema.line_champions.c.model_version)).all()
        statuses = dict(
            conn.execute(select(schema.model_registry.c.model_version, schema.model_registry.c.status)).all()
        )
    assert sorted(r.segment for r in rows) == LINES  # one row a line
    champions = registry.champions(engine)
    for line in LINES:
        history = registry.champion_history(engine, line)
        assert len(history) >= 1
        assert list(history.previous_version[1:]) == list(history.model_version[:-1])
        assert history.model_version.iloc[-1] == champions[line].model_version
    # exactly the lines' champions carry the status
    assert {v for v, s in statuses.items() if s == "champion"} == {e.model_version for e in champions.values()}
    engine.dispose()


def test_a_line_promoted_while_another_is_rejected(warehouse):
    """One challenger on two lines: approved on Motor, rejected on Liability, each decision its own row; Motor's
    champion changes, Liability keeps its champion, and the challenger stays a champion (of Motor)."""
    old = registry.register(warehouse, _entry("chain_ladder", 1))
    new = registry.register(warehouse, _entry("xgboost", 1))
    registry.set_champion(warehouse, old.model_version, V, "promoted", LINES, approved_by="ada")
    decisions = [
        governance.decide_promotion(V, old.model_version, 0.80, new.model_version, 0.90, 0.01, segment=line)
        for line in LINES
    ]
    registry.record_decisions(warehouse, V, decisions, run_id="r1")
    assert [p["segment"] for p in registry.pending_decisions(warehouse)] == LINES
    key = "reserving_approval__2024-01-31"
    motor = registry.decide(warehouse, V, new.model_version, "approve", key, "Motor", "bob", run_id="r1")
    liability = registry.decide(warehouse, V, new.model_version, "reject", key, "Liability", "bob", run_id="r1")
    assert (motor.promoted, liability.promoted) == (True, False)
    assert registry.pending_decisions(warehouse) == []
    champions = {line: e.model_version for line, e in registry.champions(warehouse).items()}
    assert champions == {"Liability": old.model_version, "Motor": new.model_version}
    assert registry.get(warehouse, new.model_version).status == "champion"  # approved on Motor: not rejected
    assert registry.get(warehouse, old.model_version).status == "champion"  # still Liability's
    assert registry.decision_on(warehouse, V, new.model_version, "r1", "Liability") == "reject"
    assert registry.approvals(warehouse)[["segment", "decision"]].values.tolist() == [
        ["Motor", "approve"],
        ["Liability", "reject"],
    ]
    history = registry.champion_history(warehouse)
    assert history[["segment", "model_version", "approval_id"]].values.tolist()[-1] == [
        "Motor",
        new.model_version,
        motor.approval_id,
    ]
    assert len(history) == 3  # two founding rows and Motor's promotion


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

    d = [governance.decide_promotion(V, "champ", -0.10, "chall", -0.08, 0.01, segment=s) for s in ("A", "B")]
    registry.record_decisions(warehouse, V, d, run_id="r1")
    registry.record_decisions(warehouse, V, d, run_id="r1")
    scores = pd.DataFrame({"segment": ["ALL", "Motor"], "wape": [0.1, 0.2], "rmse": [5.0, 6.0]})
    registry.store_backtest(warehouse, V, "chall", "challenger", scores, 4, "r1")
    registry.store_backtest(warehouse, V, "chall", "challenger", scores, 4, "r1")
    with warehouse.connect() as conn:
        for table, n in ((schema.promotion_decisions, 2), (schema.backtest_results, 2)):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == n


def test_a_decision_is_recorded_once_and_never_rewritten(warehouse):
    """The first write wins: a re-run (even one carrying another outcome) reads the row and leaves it as it was."""
    a = registry.register(warehouse, _entry("chain_ladder", 1))
    b = registry.register(warehouse, _entry("xgboost", 1))
    key = "reserving_approval__2024-01-31"
    first = registry.decide(
        warehouse, V, a.model_version, "approve", key, "Motor", "ada", "good", dt.datetime(2024, 2, 2, 9)
    )
    assert (first.decision, first.newly_recorded, first.promoted) == ("approve", True, True)
    again = registry.decide(warehouse, V, a.model_version, "timeout", key, "Motor", None, None, dt.datetime(2024, 2, 9))
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

    rejected = registry.decide(warehouse, V, b.model_version, "reject", key, "Motor", "bob")
    assert registry.get(warehouse, b.model_version).status == "rejected" and not rejected.promoted
    assert registry.decide(warehouse, V, b.model_version, "approve", key, "Motor", "eve").decision == "reject"
    assert registry.champion_of(warehouse, "Motor").model_version == a.model_version
    assert len(registry.champion_history(warehouse)) == 1
    with pytest.raises(ValueError, match="decision 'maybe'"):
        registry.decide(warehouse, V, b.model_version, "maybe", key, "Motor")


def test_a_later_run_decides_anew_on_a_version_an_earlier_run_rejected(warehouse):
    """Version ids are deterministic: a run retraining after a rejection puts the same version to the actuary, and
    its decision is its own (the earlier run's row stays as it was)."""
    b = registry.register(warehouse, _entry("xgboost", 1))
    key = "reserving_approval__2024-01-31"
    promote = governance.decide_promotion(V, None, None, b.model_version, -0.08, 0.01, segment="Motor")
    registry.record_decisions(warehouse, V, [promote], run_id="r1")
    assert [p["run_id"] for p in registry.pending_decisions(warehouse)] == ["r1"]
    rejected = registry.decide(warehouse, V, b.model_version, "reject", key, "Motor", "bob", run_id="r1")
    assert registry.pending_decisions(warehouse) == [] and registry.champions(warehouse) == {}
    again = registry.decide(warehouse, V, b.model_version, "approve", key, "Motor", "eve", run_id="r1")
    assert again.decision == "reject"

    registry.record_decisions(warehouse, V, [promote], run_id="r2")  # the later run's evaluate
    assert [p["run_id"] for p in registry.pending_decisions(warehouse)] == ["r2"]
    assert registry.decision_on(warehouse, V, b.model_version, "r2", "Motor") is None
    approved = registry.decide(warehouse, V, b.model_version, "approve", key, "Motor", "eve", run_id="r2")
    assert (approved.decision, approved.newly_recorded, approved.promoted) == ("approve", True, True)
    assert approved.approval_id != rejected.approval_id
    assert registry.champion_of(warehouse, "Motor").model_version == b.model_version
    assert registry.approvals(warehouse)[["decision", "decided_by", "run_id"]].values.tolist() == [
        ["reject", "bob", "r1"],
        ["approve", "eve", "r2"],
    ]
    assert registry.champion_history(warehouse).approval_id.tolist() == [approved.approval_id]
    assert registry.pending_decisions(warehouse) == []

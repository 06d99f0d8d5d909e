"""Evaluate per line on a small warehouse book: each line's challenger against that line's champion, with the backtest
scores and biases of that line (each version backtested once), one decision per line, and the card's proposal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from devtools import synth
from include.reserving import backtest, governance, schema
from include.reserving.config import load_settings
from include.reserving.stages import RunFacts, input, training
from include.reserving.stages import governance as governance_stage
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine

V = dt.date(2023, 12, 31)
CL = {"method": "chain_ladder", "params": {}}
CL5 = {"method": "chain_ladder", "params": {"n_periods": 5}}


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    folder = tmp_path_factory.mktemp("per-line")
    url = f"sqlite:///{folder / 'warehouse.db'}"
    schema.create_all(make_engine(url))
    synth.write_book(url, synth.BookSpec(claims=1_500, start="2021-01", end="2023-12", seed=5), progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_RESERVING_DB", url)
        mp.setenv("RESERVING_ARTIFACT_ROOT", str(folder / "artifacts"))
        facts = RunFacts.create(V, "per-line")
        input.ingest(facts)
        yield facts


def test_each_line_is_decided_against_its_own_champion(book):
    facts = book
    engine = facts.engine()
    cells = load_cells(engine, V)
    lines = sorted(cells["segment"].unique())
    assert lines == ["Liability", "Motor", "Property"]
    cl, cl5 = (fit_and_register(engine, facts, spec, cells) for spec in (CL, CL5))
    # Liability and Motor are championed by chain ladder, Property by its 5-period variant; each challenged by the
    # other spec except Motor (its best spec is its champion's: no challenger)
    registry.set_champion(engine, cl.model_version, V, "promoted", ["Liability", "Motor"], approved_by="ada")
    registry.set_champion(engine, cl5.model_version, V, "promoted", ["Property"], approved_by="ada")
    challengers = {"Liability": cl5.model_version, "Property": cl.model_version}
    evaluation = training.evaluate(facts, {"challengers": challengers})

    k, settings = facts.settings.backtest_diagonals, facts.settings
    scores = {
        spec["params"].get("n_periods"): backtest.backtest(cells, spec, k=k).scores.set_index("segment")
        for spec in (CL, CL5)
    }

    def on(spec, line, column):
        return float(scores[spec["params"].get("n_periods")].at[line, column])

    expected = {}
    for line, champion_spec, challenger_spec in (("Liability", CL, CL5), ("Property", CL5, CL)):
        expected[line] = governance.decide_promotion(
            V,
            (cl if champion_spec is CL else cl5).model_version,
            on(champion_spec, line, "score"),
            challengers[line],
            on(challenger_spec, line, "score"),
            settings.promotion_delta,
            challenger_bias=on(challenger_spec, line, "bias"),
            baseline_bias=on(CL, line, "bias"),  # chain ladder is the bias guard's yardstick on every line
            bias_margin=settings.promotion_bias_margin,
            segment=line,
        )
    rows = {r.segment: r for r in registry.decisions_at(engine, V)}
    assert sorted(rows) == lines
    for line, decision in expected.items():
        row = rows[line]
        assert (row.champion_version, row.challenger_version) == (
            decision.champion_version,
            decision.challenger_version,
        )
        assert row.champion_score == pytest.approx(decision.champion_score, abs=1e-12)
        assert row.challenger_score == pytest.approx(decision.challenger_score, abs=1e-12)
        assert (row.decision, row.reason) == (decision.decision, decision.reason)
    motor = rows["Motor"]
    assert (motor.champion_version, motor.challenger_version, motor.decision) == (cl.model_version, None, "none")
    # the two specs scored differently on the two lines: a per-line rule, not one overall number
    assert on(CL, "Liability", "score") != on(CL, "Property", "score")

    # the XCom summary: the lines sent to approval and what the approval names
    promote = {line: challengers[line] for line, d in expected.items() if d.decision == "promote"}
    assert evaluation["promote"] == promote
    assert evaluation["challenger_version"] == governance.proposal_id(V, promote)
    assert evaluation["decision"] == ("promote" if promote else "keep")
    assert [line["segment"] for line in evaluation["lines"]] == lines
    # each version backtested once, its rows per line (and overall) stored under its role
    stored = registry.backtests(engine, V)
    assert sorted(set(stored.model_version)) == sorted({cl.model_version, cl5.model_version})
    assert set(stored.loc[stored.model_version == cl5.model_version, "segment"]) == {*lines, "ALL"}
    # its role per line: chain ladder champions Liability and Motor and challenges on Property; overall a challenger
    roles = stored[stored.model_version == cl.model_version].set_index("segment")["role"].to_dict()
    assert roles == {"ALL": "challenger", "Liability": "champion", "Motor": "champion", "Property": "challenger"}
    roles = stored[stored.model_version == cl5.model_version].set_index("segment")["role"].to_dict()
    assert roles == {"ALL": "challenger", "Liability": "challenger", "Motor": "challenger", "Property": "champion"}


def test_a_proposal_of_several_challengers_has_its_own_deterministic_id():
    one = governance.proposal_id(V, {"Motor": "v1", "Liability": "v1"})
    assert one == "v1" and governance.proposal_id(V, {}) is None
    two = governance.proposal_id(V, {"Motor": "v1", "Liability": "v2"})
    assert two.startswith("20231231-lines-") and len(two) == len("20231231-lines-") + 10
    assert (
        two
        == governance.proposal_id(V, {"Liability": "v2", "Motor": "v1"})
        != governance.proposal_id(V, {"Motor": "v2", "Liability": "v1"})
    )


def _rounded(value):
    """``value`` with every float rounded to 12 significant digits, through dicts, lists and tuples."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def test_evaluate_takes_the_search_backtests_and_records_what_refitting_them_would(book, monkeypatch):
    """The search (the settings' rolling origins and methods) backtested every candidate on V's cells; evaluate takes
    those scores instead of refitting them, and records the same numbers and decisions as refitting every spec."""
    monkeypatch.setenv("RESERVING_BACKTEST_DIAGONALS", "2")
    monkeypatch.setenv("RESERVING_SEARCH_METHODS", "chain_ladder,xgboost_development")
    facts = RunFacts.create(V, "per-line-reuse")
    engine = facts.engine()
    trained = training.train(facts)
    candidates = {row["spec"] for row in trained["search"]}
    # the blends with chain ladder are derived from these two methods' backtests (no refit of their own)
    methods = {json.loads(spec)["method"] for spec in candidates}
    assert methods - {"blend"} == {"chain_ladder", "xgboost_development"}
    refitted = []
    real_backtest = backtest.backtest

    def counted(cells, spec, k=backtest.ROLLING_ORIGINS, grain_months=None):
        assert k == 2
        refitted.append(backtest.canonical(spec))
        return real_backtest(cells, spec, k=k, grain_months=grain_months)

    monkeypatch.setattr(backtest, "backtest", counted)

    def recorded() -> tuple[list, list]:
        stored = registry.backtests(engine, V).sort_values(["model_version", "segment"])
        rows = [(r.segment, r.champion_version, r.challenger_version, r.champion_score, r.challenger_score,
                 r.decision, r.reason) for r in registry.decisions_at(engine, V)]  # fmt: skip
        return stored.values.tolist(), rows

    reused = training.evaluate(facts, trained)
    from_search = recorded()
    assert not set(refitted) & candidates, "a candidate of the search was backtested again"
    refitted.clear()
    # a blend the search derived from its parts' backtests differs from its refit in the last bits of a float
    assert _rounded(training.evaluate(facts, {"challengers": trained["challengers"]})) == _rounded(reused)
    assert refitted and _rounded(recorded()) == _rounded(from_search)
    assert set(registry.backtests(engine, V)["model_version"]) >= set(trained["challengers"].values())


def test_search_methods_limit_the_grid_and_an_unregistered_one_is_refused_by_name():
    grid = training.search_candidates(load_settings(search_methods="xgboost_development"))
    assert grid and {spec["method"] for spec in grid} == {"xgboost_development"}
    assert training.search_candidates(load_settings()) == backtest.default_candidates()
    with pytest.raises(ValueError, match=r"search_methods names \['chain_lader'\].*'chain_ladder'"):
        training.search_candidates(load_settings(search_methods="chain_ladder,chain_lader"))


def test_the_model_card_leaves_out_a_line_without_a_challenger(book):
    """Liability is sent to approval, Motor has no challenger (None in the XCom lines, NaN once they are a frame):
    the card is written with Liability's challenger only."""
    facts = book
    engine = facts.engine()
    cells = load_cells(engine, V)
    cl, cl5 = (fit_and_register(engine, facts, spec, cells) for spec in (CL, CL5))
    decisions = [
        governance.decide_promotion(V, cl.model_version, 0.5, cl5.model_version, 0.9, 0.01, segment="Liability"),
        governance.decide_promotion(V, cl.model_version, 0.5, None, None, 0.01, segment="Motor"),
    ]
    evaluation = json.loads(json.dumps(governance.evaluation(V, decisions, 0.01)))  # as XCom hands it on
    assert [line["challenger_version"] for line in evaluation["lines"]] == [cl5.model_version, None]

    card = governance_stage.model_card(facts, evaluation)
    assert card["model_version"] == cl5.model_version and list(card["lines"]) == ["Liability"]
    markdown = Path(card["markdown_uri"]).read_text()
    assert cl5.model_version in markdown and "nan" not in markdown.lower().split()

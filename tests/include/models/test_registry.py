"""Model methods register without editing include/reserving/models: through the setting ``model_classes`` or an
installed entry point, a class defined elsewhere (tests/include/models/additive.py) is built from its spec, searched
by the training stage, backtested against the champion, promoted, and restored from its JSON artifact."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from include.reserving import artifacts, backtest, models, schema
from include.reserving import cells as cellsmod
from include.reserving.governance import FALLBACK_SPEC
from include.reserving.models import ChainLadder, build_model, discover_methods, load_model, register_method
from include.reserving.stages import RunFacts, training
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import stage_cells, swap_cells
from include.reserving.warehouse.core import make_engine
from tests.include.models.additive import AdditiveDevelopment

V = dt.date(2023, 12, 31)
ADDITIVE = "tests.include.models.additive:AdditiveDevelopment"
# The first quarter's paid of each origin is noisy; every later quarter pays exactly premium x 0.15 x 0.7^k: the
# additive method learns those rates exactly, the chain ladder multiplies the noise through.
FIRST_QUARTER_NOISE = (0.6, 1.5, 0.8, 1.3, 0.7, 1.2, 1.4, 0.9, 1.1, 0.5, 1.6, 1.0)


def additive_book() -> pd.DataFrame:
    """Twelve quarterly origins 2021Q1-2023Q4 of one line valued at V, premium 1,000 + 100 per origin."""
    rows = []
    for i, noise in enumerate(FIRST_QUARTER_NOISE):
        origin, premium, paid = dt.date(2021 + i // 4, 3 * (i % 4) + 1, 1), 1000.0 + 100.0 * i, 0.0
        for k, age in enumerate(range(3, 36 - 3 * i + 1, 3)):
            paid += premium * (0.2 * noise if k == 0 else 0.15 * 0.7**k)
            rows.append(
                {"segment": "Motor", "origin": origin, "development": age, "paid": round(paid, 2)}
                | {"incurred": round(paid * 1.1, 2), "reported_count": 10, "closed_count": k}
                | {"earned_premium": premium, "exposure": premium / 10}
            )
    return cellsmod.normalise(pd.DataFrame(rows))


@pytest.fixture
def registry_copy(monkeypatch):
    """The registry as this test leaves it is thrown away afterwards; nothing is discovered yet."""
    monkeypatch.setattr(models, "METHODS", dict(models.METHODS))
    monkeypatch.setattr(models, "_discovered", False)
    return models.METHODS


def test_a_method_named_by_the_setting_is_searched_trained_and_promoted(
    registry_copy, sqlite_url, tmp_path, monkeypatch
):
    # XGBoost and the blend stay out of this search (their fits take a minute on two cores), and so does Cape Cod,
    # which on this premium-driven book would be the registered method's rival
    del registry_copy["xgboost_development"], registry_copy["blend"], registry_copy["cape_cod"]
    monkeypatch.setenv("RESERVING_MODEL_CLASSES", ADDITIVE)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", sqlite_url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    cells = additive_book()
    key = {"valuation_date": V, "basis": "as_recorded"}
    stage_cells(engine, cells, key, "additive-book")
    with engine.begin() as conn:
        swap_cells(conn, key, "additive-book", len(cells))
    facts = RunFacts.create(V, "scheduled__2024-01-01T00:00:00+00:00")
    champion = training.fit_and_register(engine, facts, FALLBACK_SPEC, cells)
    lines = sorted(cells["segment"].unique())
    registry.set_champion(engine, champion.model_version, V, "promoted", lines, approved_by="ada")

    # found through the setting on first use; the search tries its own grid after the chain ladder's
    assert backtest.default_candidates() == [*ChainLadder.search_grid(), *AdditiveDevelopment.search_grid()]
    trained = training.train(facts)
    assert sorted(trained["challengers"]) == lines  # the registered method wins every line
    (version,) = set(trained["challengers"].values())  # one cross-segment model, fitted once
    challenger = registry.get(engine, version)
    assert challenger.spec == {"method": "additive_development", "params": {}}
    scores = {row["spec"]: row["score"] for row in trained["search"] if row["segment"] == "ALL"}
    assert len(scores) == 5
    assert min(s for spec, s in scores.items() if "additive" in spec) > max(
        s for spec, s in scores.items() if "chain_ladder" in spec
    )

    evaluation = training.evaluate(facts, trained)
    assert evaluation["decision"] == "promote" and evaluation["promote"] == {line: version for line in lines}
    for line in evaluation["lines"]:
        assert line["champion_version"] == champion.model_version
        assert line["challenger_score"] > line["champion_score"] + facts.settings.promotion_delta

    # approved: the registered method is every line's champion, restored from its JSON artifact as the class it was
    assert registry.set_champion(engine, version, V, "promoted", lines, approved_by="bob") == lines
    assert {e.spec["method"] for e in registry.champions(engine).values()} == {"additive_development"}
    restored = load_model(artifacts.local_dir(challenger.artifact_uri))
    assert isinstance(restored, AdditiveDevelopment)
    # the youngest origin (2023Q4, premium 2,100, one quarter seen) develops by the exact later-quarter rates
    youngest = restored.ultimates(cells).set_index("origin").loc[dt.date(2023, 10, 1)]
    exact = 2100.0 * (0.2 * 1.0 + sum(0.15 * 0.7**k for k in range(1, 12)))
    assert youngest["ultimate"] == pytest.approx(exact, abs=0.05)
    assert youngest["unpaid"] == pytest.approx(exact - 420.0, abs=0.05)


def test_a_method_from_an_installed_entry_point(registry_copy, tmp_path, monkeypatch):
    """A package declaring the entry point (its dist-info on sys.path, as pip installs it) registers on discovery."""
    dist_info = tmp_path / "reserving_additive-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: reserving-additive\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[reserving.models]\nadditive_development = {ADDITIVE}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "additive_development" not in registry_copy
    assert discover_methods(model_classes=()) == ["additive_development"]
    model = build_model({"method": "additive_development", "params": {"volume": "exposure"}})
    assert isinstance(model, AdditiveDevelopment) and model.volume == "exposure"
    assert backtest.default_candidates()[-2:] == AdditiveDevelopment.search_grid()


class _SecondChainLadder(ChainLadder):
    """Inherits the name chain_ladder without choosing one of its own."""


class _Unnamed(AdditiveDevelopment):
    method = "Additive Development"


def test_registration_errors_name_the_class_the_method_or_the_setting(registry_copy):
    with pytest.raises(TypeError, match="is not a subclass of include.reserving.models.ReservingModel"):
        register_method(dict)
    with pytest.raises(ValueError, match="_SecondChainLadder: method 'chain_ladder' is registered already by "):
        register_method(_SecondChainLadder)
    with pytest.raises(ValueError, match="_Unnamed: set the class attribute method to a name like 'my_method'"):
        register_method(_Unnamed)
    with pytest.raises(ValueError, match="setting model_classes: cannot import 'tests.include.models.additive:Nope'"):
        discover_methods(["tests.include.models.additive:Nope"])
    with pytest.raises(ValueError, match="setting model_classes: 'AdditiveDevelopment' is not an import path"):
        discover_methods(["AdditiveDevelopment"])
    with pytest.raises(ValueError, match="unknown model method 'additive_development'.*docs/ADDING_A_MODEL.md"):
        build_model({"method": "additive_development", "params": {}})
    assert register_method(AdditiveDevelopment) is AdditiveDevelopment
    assert register_method(AdditiveDevelopment) is AdditiveDevelopment  # the same class again: nothing changes
    assert list(registry_copy)[-1] == "additive_development"

"""The blend of chain ladder and the XGBoost development model: contract, end weights, persistence, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from include.reserving import backtest
from include.reserving import cells as cellsmod
from include.reserving.models import Blend, build_model, load_model

CHALLENGER = {"method": "xgboost_development", "params": {"n_estimators": 30, "residual_folds": 0}}
LEARNED = {"method": "blend", "params": {"challenger": CHALLENGER, "folds": 1, "random_state": 3}}


def fixed(weight: float) -> dict:
    return {"method": "blend", "params": {"challenger": CHALLENGER, "weight": weight, "random_state": 3}}


@pytest.fixture(scope="module")
def learned(portfolio_cells):
    return build_model(LEARNED).fit(portfolio_cells)


@pytest.fixture(scope="module")
def components(learned):
    return learned.base_, learned.challenger_


def test_predict_completes_the_square_like_its_components(learned, components, portfolio_cells):
    square = learned.predict(portfolio_cells)
    assert list(square.columns) == ["segment", "origin", "development", "paid", "observed"]
    for component in components:
        pd.testing.assert_frame_equal(
            square[cellsmod.KEY_COLUMNS], component.predict(portfolio_cells)[cellsmod.KEY_COLUMNS]
        )
    observed = square[square["observed"]].drop(columns="observed").reset_index(drop=True)
    pd.testing.assert_frame_equal(observed, portfolio_cells[["segment", "origin", "development", "paid"]])


def test_learned_weights_are_credibilities_by_maturity(learned, components, portfolio_cells):
    assert 0.0 <= learned.weight_ <= 1.0
    assert learned.weights_ and all(0.0 <= w <= 1.0 for w in learned.weights_.values())
    assert set(learned.weights_) <= set(portfolio_cells["development"])
    ultimates = learned.ultimates(portfolio_cells)
    assert list(ultimates.columns) == ["segment", "origin", "latest", "ultimate", "unpaid", "std_err", "p75", "p95"]
    base, challenger = (c.ultimates(portfolio_cells)["ultimate"].to_numpy() for c in components)
    low, high = np.minimum(base, challenger), np.maximum(base, challenger)
    assert ((ultimates["ultimate"] >= low - 1e-6) & (ultimates["ultimate"] <= high + 1e-6)).all()
    assert (ultimates["std_err"] >= 0).all()


@pytest.mark.parametrize("weight, component", [(0.0, "base"), (1.0, "challenger")])
def test_end_weights_are_exactly_one_component(weight, component, components, portfolio_cells):
    blend = build_model(fixed(weight)).fit(portfolio_cells)
    expected = components[0] if component == "base" else components[1]
    pd.testing.assert_frame_equal(blend.predict(portfolio_cells), expected.predict(portfolio_cells))
    pd.testing.assert_frame_equal(blend.ultimates(portfolio_cells), expected.ultimates(portfolio_cells))


def test_fixed_weight_is_the_weighted_mean_of_the_components(components, portfolio_cells):
    blend = Blend(challenger=CHALLENGER, weight=0.25, random_state=3).fit(portfolio_cells)
    base, challenger = (c.ultimates(portfolio_cells)["ultimate"].to_numpy() for c in components)
    np.testing.assert_allclose(blend.ultimates(portfolio_cells)["ultimate"], 0.75 * base + 0.25 * challenger)


def test_json_artifacts_reload_to_identical_predictions(tmp_path, learned, portfolio_cells):
    paths = learned.save(tmp_path / "blend")
    assert all(path.endswith(".json") for path in paths.values())  # JSON only, never a pickle
    assert json.loads(open(paths["challenger.booster"]).read())["learner"]
    restored = load_model(tmp_path / "blend")
    assert isinstance(restored, Blend) and restored.get_spec() == learned.get_spec()
    assert restored.weights_ == learned.weights_ and restored.weight_ == learned.weight_
    pd.testing.assert_frame_equal(restored.predict(portfolio_cells), learned.predict(portfolio_cells))
    pd.testing.assert_frame_equal(restored.ultimates(portfolio_cells), learned.ultimates(portfolio_cells))


def test_same_seed_same_blend(learned, portfolio_cells):
    again = build_model(LEARNED).fit(portfolio_cells)
    assert again.weights_ == learned.weights_
    pd.testing.assert_frame_equal(again.predict(portfolio_cells), learned.predict(portfolio_cells))


def test_seed_reaches_the_challenger_unless_its_spec_sets_one():
    specs = Blend(random_state=5).component_specs()
    assert specs["challenger"]["params"]["random_state"] == 5
    assert "random_state" not in specs["base"]["params"]  # chain ladder has no randomness
    seeded = {"method": "xgboost_development", "params": {"random_state": 1}}
    assert Blend(challenger=seeded, random_state=5).component_specs()["challenger"]["params"]["random_state"] == 1


@pytest.mark.parametrize(
    "params, message",
    [
        ({"weight": 1.5}, "weight"),
        ({"by": "origin"}, "by="),
        ({"base": {"method": "blend", "params": {}}}, "blend as a component"),
        ({"challenger": {"method": "nope", "params": {}}}, "unknown model method"),
    ],
)
def test_invalid_params_fail_at_fit(params, message, raa_cells):
    with pytest.raises(ValueError, match=message):
        Blend(**params).fit(raa_cells)


def test_the_training_search_blends_each_other_method_with_chain_ladder():
    fitted = backtest.default_candidates()
    assert not [spec for spec in fitted if spec["method"] == "blend"]  # none is fitted as a blend of its own
    blends = backtest.blended_candidates(fitted, (0.25, 0.5))
    learned = [spec for spec in fitted if spec["method"] in ("cape_cod", "xgboost_development")]
    assert blends[:2] == [{"method": "blend", "params": {"challenger": learned[0], "weight": w}} for w in (0.25, 0.5)]
    assert len(blends) == 2 * len(learned)

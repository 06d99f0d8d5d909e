"""The cross-segment XGBoost development model: contract, determinism, JSON persistence, backtest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from include.reserving import backtest
from include.reserving import cells as cellsmod
from include.reserving.models import XGBoostDevelopment, build_model, load_model

SPEC = {"method": "xgboost_development", "params": {"n_estimators": 60, "random_state": 3}}


@pytest.fixture(scope="module")
def fitted(portfolio_cells):
    return build_model(SPEC).fit(portfolio_cells)


def test_predict_completes_the_square_from_the_latest_paid(fitted, portfolio_cells):
    square = fitted.predict(portfolio_cells)
    observed = square[square["observed"]].drop(columns="observed").reset_index(drop=True)
    pd.testing.assert_frame_equal(observed, portfolio_cells[["segment", "origin", "development", "paid"]])
    ages = sorted(portfolio_cells["development"].unique())
    per_origin = square[square["development"] != cellsmod.ULTIMATE_DEVELOPMENT].groupby(["segment", "origin"]).size()
    assert (per_origin == len(ages)).all()  # every origin projected to the last age, step by step
    ultimate = square[square["development"] == cellsmod.ULTIMATE_DEVELOPMENT].set_index(["segment", "origin"])
    last = square[square["development"] == ages[-1]].set_index(["segment", "origin"])
    pd.testing.assert_series_equal(ultimate["paid"], last["paid"])


def test_ultimates_are_close_to_the_known_development(fitted, portfolio_cells):
    ultimates = fitted.ultimates(portfolio_cells)
    assert (ultimates["std_err"] >= 0).all()
    assert (ultimates.loc[ultimates["unpaid"] > 0, "p95"] > ultimates.loc[ultimates["unpaid"] > 0, "p75"]).all()
    # the synthetic ultimate is about 70% of premium (lognormal noise of 10%)
    premium = portfolio_cells.groupby(["segment", "origin"])["earned_premium"].first().to_numpy()
    ratio = ultimates["ultimate"].to_numpy() / premium
    assert 0.6 < np.median(ratio) < 0.8


def test_same_seed_same_model(portfolio_cells, fitted):
    again = build_model(SPEC).fit(portfolio_cells)
    pd.testing.assert_frame_equal(again.ultimates(portfolio_cells), fitted.ultimates(portfolio_cells))


def test_json_artifacts_reload_to_identical_predictions(tmp_path, fitted, portfolio_cells):
    paths = fitted.save(tmp_path / "xgb")
    assert json.loads(open(paths["booster"]).read())["learner"]  # XGBoost's own JSON format, no pickle
    restored = load_model(tmp_path / "xgb")
    assert isinstance(restored, XGBoostDevelopment) and restored.get_spec() == fitted.get_spec()
    pd.testing.assert_frame_equal(restored.predict(portfolio_cells), fitted.predict(portfolio_cells))
    pd.testing.assert_frame_equal(restored.ultimates(portfolio_cells), fitted.ultimates(portfolio_cells))


def test_backtest_is_leak_free_and_deterministic(portfolio_cells):
    _, held_out = backtest.split(portfolio_cells, 1)  # the latest diagonal: no fold fits on it
    keys = held_out.set_index(cellsmod.KEY_COLUMNS).index
    perturbed = portfolio_cells.copy()
    perturbed.loc[perturbed.set_index(cellsmod.KEY_COLUMNS).index.isin(keys), "paid"] *= 1.7
    first = backtest.backtest(portfolio_cells, SPEC, k=2)
    again = backtest.backtest(perturbed, SPEC, k=2).emergence["expected"]
    pd.testing.assert_series_equal(first.emergence["expected"], again)
    pd.testing.assert_frame_equal(first.scores, backtest.backtest(portfolio_cells, SPEC, k=2).scores)
    assert 0 < first.score < 1


def test_every_target_fits_and_an_unknown_one_is_rejected(portfolio_cells):
    for target in ["increment", "cl_residual"]:
        model = XGBoostDevelopment(n_estimators=20, target=target, residual_folds=0).fit(portfolio_cells)
        assert np.isfinite(model.ultimates(portfolio_cells)["ultimate"]).all()
    with pytest.raises(ValueError, match="target"):
        XGBoostDevelopment(target="ultimate").fit(portfolio_cells)


@pytest.mark.parametrize("target", ["log_factor_residual", "cl_residual", "increment"])
def test_no_development_is_invented_where_the_data_shows_none(portfolio_cells, target):
    """One line is fully paid from its middle age on while the others go on developing: whatever the trees learn from
    the young ages and from the other lines (they share leaves), that line's origins projected from those ages get
    no development (the output is kept within the targets the segment showed at each age, all zero there)."""
    cells = portfolio_cells.sort_values(cellsmod.KEY_COLUMNS).reset_index(drop=True)
    paid_up = sorted(cells["segment"].unique())[0]
    ages = sorted(cells["development"].unique())
    settled = ages[len(ages) // 2]
    at_settled = cells[cells["development"] == settled].set_index(["segment", "origin"])["paid"]
    flat = (cells["development"] > settled) & (cells["segment"] == paid_up)
    cells.loc[flat, "paid"] = at_settled.reindex(
        pd.MultiIndex.from_frame(cells.loc[flat, ["segment", "origin"]])
    ).values
    cells = cells.dropna(subset=["paid"]).reset_index(drop=True)
    model = XGBoostDevelopment(n_estimators=40, target=target, residual_folds=0).fit(cells)
    out = model.ultimates(cells).set_index(["segment", "origin"])
    latest_age = cells.groupby(["segment", "origin"])["development"].max().reindex(out.index)
    line = out.index.get_level_values("segment") == paid_up
    assert ((latest_age >= settled) & line).sum() > 3
    assert out.loc[(latest_age >= settled) & line, "unpaid"].abs().max() < 1e-6
    # its younger origins still develop, and so do the other lines' mature ones
    assert out.loc[(latest_age < settled) & line, "unpaid"].sum() > 0
    assert out.loc[(latest_age >= settled) & ~line, "unpaid"].sum() > 0

"""Chain ladder through the project's API reconciles to published numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from include.reserving import cells as cellsmod
from include.reserving.models import ChainLadder, build_model, load_model


def test_raa_total_reserve(raa_cells):
    """chainladder's RAA reserve (its "ibnr"; our models project paid and call ultimate - latest the unpaid)."""
    ultimates = build_model({"method": "chain_ladder", "params": {}}).fit(raa_cells).ultimates(raa_cells)
    assert round(ultimates["unpaid"].sum()) == 52135


def test_genins_total_reserve_and_mack_standard_error(genins_cells):
    model = build_model({"method": "chain_ladder", "params": {"sigma_interpolation": "mack"}}).fit(genins_cells)
    totals = model.totals(genins_cells)
    assert round(totals["unpaid"].iloc[0]) == 18680856
    assert round(totals["std_err"].iloc[0]) == 2447095


def test_ultimates_frame_contract(raa_cells):
    ultimates = ChainLadder().fit(raa_cells).ultimates(raa_cells)
    assert list(ultimates.columns) == ["segment", "origin", "latest", "ultimate", "unpaid", "std_err", "p75", "p95"]
    oldest = ultimates.iloc[0]
    assert oldest["latest"] == oldest["ultimate"] == 18834.0 and oldest["std_err"] == 0.0
    assert (ultimates["unpaid"] == ultimates["ultimate"] - ultimates["latest"]).all()
    developing = ultimates.iloc[1:]
    assert (developing["p95"] > developing["p75"]).all()


def test_predict_completes_the_square(raa_cells):
    prediction = ChainLadder().fit(raa_cells).predict(raa_cells)
    assert len(prediction) == 10 * (10 + 1)  # ten ages and the ultimate row per origin
    assert prediction["observed"].sum() == 55
    observed = prediction[prediction["observed"]].drop(columns="observed").reset_index(drop=True)
    pd.testing.assert_frame_equal(observed, raa_cells[["segment", "origin", "development", "paid"]])
    latest_1990 = prediction[(prediction["origin"] == raa_cells["origin"].max())]
    assert np.all(np.diff(latest_1990["paid"].to_numpy()) >= 0)


def test_tail_raises_the_ultimate(raa_cells):
    plain = ChainLadder().fit(raa_cells).ultimates(raa_cells)["ultimate"].sum()
    tailed = ChainLadder(tail={"curve": "exponential"}).fit(raa_cells).ultimates(raa_cells)["ultimate"].sum()
    assert tailed > plain


def test_segments_are_fitted_separately(raa_cells, genins_cells):
    both = pd.concat([raa_cells, genins_cells], ignore_index=True)
    totals = ChainLadder().fit(both).totals(both).set_index("segment")
    assert round(totals.loc["raa", "unpaid"]) == 52135
    assert round(totals.loc["genins", "unpaid"]) == 18680856


def test_save_and_load_give_identical_predictions(tmp_path, portfolio_cells):
    model = ChainLadder(n_periods=8, tail={"curve": "exponential"}).fit(portfolio_cells)
    paths = model.save(tmp_path / "cl")
    assert json.loads(open(paths["spec"]).read())["method"] == "chain_ladder"
    restored = load_model(tmp_path / "cl")
    assert restored.get_spec() == model.get_spec()
    pd.testing.assert_frame_equal(restored.ultimates(portfolio_cells), model.ultimates(portfolio_cells))


def test_factory_rejects_unknown_methods_and_parameters():
    with pytest.raises(ValueError, match="unknown model method"):
        build_model({"method": "crystal_ball"})
    with pytest.raises(ValueError, match="unknown parameters"):
        build_model({"method": "chain_ladder", "params": {"averag": "simple"}})


def test_predict_uses_fitted_factors_on_new_cells(raa_cells):
    model = ChainLadder().fit(raa_cells)
    doubled = raa_cells.assign(paid=raa_cells["paid"] * 2)
    assert model.ultimates(doubled)["unpaid"].sum() == pytest.approx(2 * 52135.228, rel=1e-6)
    with pytest.raises(ValueError, match="not fitted on"):
        model.predict(cellsmod.normalise(raa_cells.assign(segment="other")))


def test_segments_sharing_origins_fit_as_if_alone(portfolio_cells):
    together = ChainLadder(sigma_interpolation="mack").fit(portfolio_cells)
    assert len(together.groups_) == 1
    for segment in ["motor", "property"]:
        alone_cells = portfolio_cells[portfolio_cells["segment"] == segment].reset_index(drop=True)
        alone = ChainLadder(sigma_interpolation="mack").fit(alone_cells).totals(alone_cells)
        joint = together.totals(portfolio_cells).set_index("segment").loc[segment]
        assert joint["unpaid"] == pytest.approx(alone["unpaid"].iloc[0], rel=1e-12)
        assert joint["std_err"] == pytest.approx(alone["std_err"].iloc[0], rel=1e-12)
        # predicting one segment of a group alone gives that segment's part of the joint prediction
        assert together.ultimates(alone_cells)["ultimate"].sum() == pytest.approx(joint["ultimate"], rel=1e-12)

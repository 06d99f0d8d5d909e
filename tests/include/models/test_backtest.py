"""Backtests cannot see held-out cells, are deterministic, and score what they claim to."""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pandas as pd
import pytest

from include.reserving import backtest
from include.reserving import cells as cellsmod
from include.reserving.models import ChainLadder

CHAIN_LADDER = {"method": "chain_ladder", "params": {}}


def test_split_holds_out_whole_calendar_diagonals(portfolio_cells):
    train, held_out = backtest.split(portfolio_cells, 4)
    assert len(train) + len(held_out) == len(portfolio_cells)
    assert max(cellsmod.evaluation_date(train)) == dt.date(2023, 5, 31)  # four quarters before 2024-05-31
    assert min(cellsmod.evaluation_date(held_out)) == dt.date(2023, 8, 31)
    with pytest.raises(ValueError, match="cannot hold out"):
        backtest.split(portfolio_cells, 16)


def test_expected_increments_are_chain_ladder_factors_on_the_latest_paid(raa_cells):
    result = backtest.backtest(raa_cells, CHAIN_LADDER, k=1)
    train, _ = backtest.split(raa_cells, 1)
    ldf = ChainLadder().fit(train).ldf_.set_index("development")["ldf"]
    row = result.cells.set_index("origin").loc[dt.date(1989, 1, 1)]
    assert row["actual"] == 5395.0 - 3133.0
    assert row["expected"] == pytest.approx(3133.0 * (ldf[12] - 1))
    # the oldest origin is past the training triangle's last age and, without a tail, expects nothing
    assert result.cells.set_index("origin").loc[dt.date(1981, 1, 1), "expected"] == 0.0
    # the origin first seen on the held-out diagonal is not scored
    assert dt.date(1990, 1, 1) not in set(result.cells["origin"])


def test_perturbing_held_out_cells_does_not_change_predictions(portfolio_cells):
    _, held_out = backtest.split(portfolio_cells, 4)
    perturbed = portfolio_cells.copy()
    is_held_out = perturbed.set_index(cellsmod.KEY_COLUMNS).index.isin(held_out.set_index(cellsmod.KEY_COLUMNS).index)
    rng = np.random.default_rng(0)
    perturbed.loc[is_held_out, "paid"] *= rng.uniform(0.5, 3.0, is_held_out.sum())
    perturbed.loc[is_held_out, ["incurred", "earned_premium"]] = 1e9
    original = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=4).cells
    changed = backtest.backtest(perturbed, CHAIN_LADDER, k=4).cells
    pd.testing.assert_series_equal(original["expected"], changed["expected"])
    assert not original["actual"].equals(changed["actual"])


def test_same_data_and_spec_give_identical_scores(portfolio_cells):
    first = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=2).scores
    second = backtest.backtest(portfolio_cells.sample(frac=1.0, random_state=3), CHAIN_LADDER, k=2).scores
    pd.testing.assert_frame_equal(first, second)


def test_score_increments_by_hand():
    increments = pd.DataFrame(
        {"segment": ["a", "a", "b"], "actual": [10.0, -5.0, 20.0], "expected": [12.0, -5.0, 10.0]}
    )
    scores = backtest.score_increments(increments).set_index("segment")
    assert scores.loc["a", "wape"] == pytest.approx(2 / 15)
    assert scores.loc["b", "rmse"] == pytest.approx(10.0)
    assert scores.loc["ALL", "wape"] == pytest.approx(12 / 35)
    assert scores.loc["ALL", "rmse"] == pytest.approx(np.sqrt(104 / 3))
    assert scores.loc["ALL", "score"] == pytest.approx(1 - 12 / 35)
    # bias: expected less actual over the absolute actual, a: (7 - 5) / 15, all: (17 - 25) / 35
    assert scores.loc["a", "bias"] == pytest.approx(2 / 15)
    assert scores.loc["ALL", "bias"] == pytest.approx(-8 / 35)


def test_cross_validation_and_spec_selection(portfolio_cells, caplog):
    folds = backtest.cross_validate(portfolio_cells, CHAIN_LADDER, folds=2)
    assert folds["fold"].tolist() == [1, 2] and folds["segment"].eq("ALL").all()
    first_fold = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=1).score
    assert folds["score"].iloc[0] == pytest.approx(first_fold)
    candidates = [CHAIN_LADDER, {"method": "chain_ladder", "params": {"n_periods": 2}}]
    with caplog.at_level(logging.INFO, logger=backtest.__name__):
        best, table = backtest.select_spec(portfolio_cells, candidates, folds=2)
    # one progress line per candidate, in the search's order, with its mean score
    scores = table.set_index("spec")["mean_score"]
    specs = [json.dumps(spec, sort_keys=True) for spec in candidates]
    assert [r.getMessage() for r in caplog.records if r.name == backtest.__name__] == [
        f"candidate {k} of 2: {spec} score {scores[spec]:.4f}" for k, spec in enumerate(specs, 1)
    ]
    assert best in candidates and len(table) == 2
    assert table["mean_score"].is_monotonic_decreasing
    chain_ladder = table.set_index("spec").loc[json.dumps(CHAIN_LADDER, sort_keys=True)]
    assert chain_ladder["mean_bias"] == pytest.approx(folds["bias"].mean())


def test_actual_vs_expected_on_the_newest_diagonal(raa_cells):
    ave = backtest.actual_vs_expected(raa_cells, CHAIN_LADDER)
    increments = backtest.backtest(raa_cells, CHAIN_LADDER, k=1).cells
    row = ave.iloc[0]
    assert list(ave.columns) == ["segment", "actual", "expected", "ratio"]
    assert row["actual"] == increments["actual"].sum() == 172 + 535 + 603 + 984 + 225 + 2917 + 1368 + 6165 + 2262
    assert row["ratio"] == pytest.approx(row["actual"] / increments["expected"].sum())

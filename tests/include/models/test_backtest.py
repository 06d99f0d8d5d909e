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
from tests.include.models.conftest import synthetic_cells

CHAIN_LADDER = {"method": "chain_ladder", "params": {}}


def test_split_holds_out_whole_calendar_diagonals(portfolio_cells):
    train, held_out = backtest.split(portfolio_cells, 4)
    assert len(train) + len(held_out) == len(portfolio_cells)
    assert max(cellsmod.evaluation_date(train)) == dt.date(2023, 5, 31)  # four quarters before 2024-05-31
    assert min(cellsmod.evaluation_date(held_out)) == dt.date(2023, 8, 31)
    with pytest.raises(ValueError, match="cannot hold out"):
        backtest.split(portfolio_cells, 16)


def _annual(segment: str, rows: dict[int, list[float]]) -> list[dict]:
    return [
        {"segment": segment, "origin": dt.date(year, 1, 1), "development": 12 * (j + 1), "paid": paid}
        for year, paids in rows.items()
        for j, paid in enumerate(paids)
    ]


@pytest.fixture(scope="module")
def tiny_cells() -> pd.DataFrame:
    """Two segments valued at 2023-12-31 developing by exact factors 2, 1.2, 1.05, 1 until the latest diagonal; on
    it segment a departs from them (260, 230, 210 where 252, 240, 200 were due) and b, ten times a's size, does not.
    """
    a = {2019: [100, 200, 240, 252, 252], 2020: [100, 200, 240, 260], 2021: [100, 200, 230], 2022: [100, 210]}
    b = {2019: [1000, 2000, 2400, 2520, 2520], 2020: [1000, 2000, 2400, 2520], 2021: [1000, 2000, 2400]}
    b[2022] = [1000, 2000]
    rows = _annual("a", {**a, 2023: [100]}) + _annual("b", {**b, 2023: [1000]})
    return cellsmod.normalise(pd.DataFrame(rows))


def test_rolling_origin_emergence_by_hand(tiny_cells):
    result = backtest.backtest(tiny_cells, CHAIN_LADDER, k=2)
    a = result.emergence[result.emergence["segment"] == "a"].set_index(["fold", "origin"])
    # fold 1 drops the latest diagonal: factors 2, 1.2, 1.05; 2019 is past the fold's last age (48) and not scored
    assert a.loc[1, ["actual", "expected"]].to_dict("list") == {"actual": [20, 30, 110], "expected": [12, 40, 100]}
    assert [o.year for o in a.loc[1].index] == [2020, 2021, 2022]
    # fold 2 drops two: 2021 develops two steps, 12 to 36, expected 100 * 2 * 1.2 - 100, where 230 - 100 emerged
    two_steps = a.loc[(2, dt.date(2021, 1, 1)), ["development_from", "development_to", "actual", "expected"]]
    assert two_steps.to_dict() == pytest.approx(
        {"development_from": 12, "development_to": 36, "actual": 130, "expected": 140}
    )
    assert a.loc[(2, dt.date(2020, 1, 1)), ["actual", "expected"]].tolist() == [40, 40]
    scores = result.scores.set_index("segment")
    # segment a: fold errors (expected - actual) -8 and +10 on emergence 160 and 170; b is projected exactly
    assert scores.loc["a", ["actual", "expected"]].tolist() == [330, 332]
    assert scores.loc["a", "wape"] == pytest.approx(18 / 330)
    assert scores.loc["a", "bias"] == pytest.approx(2 / 330)
    assert scores.loc["a", "rmse"] == pytest.approx(np.sqrt((64 + 100) / 2))
    assert scores.loc["b", "wape"] == scores.loc["b", "bias"] == 0
    # overall: the segments' mean, not pooled (pooled, b's size would dilute a's error 11 times)
    assert scores.loc["ALL", "wape"] == pytest.approx(9 / 330)
    assert scores.loc["ALL", "bias"] == pytest.approx(1 / 330)
    assert scores.loc["ALL", "rmse"] == pytest.approx(np.sqrt(164 / 4))
    assert result.score == pytest.approx(1 - 9 / 330) and result.bias == pytest.approx(1 / 330)
    assert scores["folds"].tolist() == [2, 2, 2]


def test_overall_scores_cap_each_segment_at_what_emerged():
    emergence = pd.DataFrame(
        {
            "fold": [1, 2, 1, 1],
            "segment": ["a", "a", "b", "c"],
            "actual": [100.0, 50.0, 2.0, 40.0],
            "expected": [90.0, 65.0, 12.0, 30.0],
        }
    )
    scores = backtest.score_emergence(emergence).set_index("segment")
    assert scores["wape"].tolist()[:3] == pytest.approx([25 / 150, 5.0, 0.25])
    assert scores["bias"].tolist()[:3] == pytest.approx([5 / 150, 5.0, -0.25])
    # b expected six times what emerged: it counts as a 100% error, not 500%
    assert scores.loc["ALL", "wape"] == pytest.approx((25 / 150 + 1 + 0.25) / 3)
    assert scores.loc["ALL", "bias"] == pytest.approx((5 / 150 + 1 - 0.25) / 3)
    assert scores.loc["ALL", ["folds", "actual", "expected"]].tolist() == [2, 192, 197]
    result = backtest.BacktestResult(spec=CHAIN_LADDER, scores=scores.reset_index(), emergence=emergence)
    assert result.abs_bias == pytest.approx((5 / 150 + 1 + 0.25) / 3)  # what the bias guard compares


def _perturbed(cells: pd.DataFrame, diagonals: int) -> pd.DataFrame:
    """The cells with the latest ``diagonals`` calendar diagonals' paid scrambled and incurred and premium absurd."""
    _, held_out = backtest.split(cells, diagonals)
    perturbed = cells.copy()
    is_held_out = perturbed.set_index(cellsmod.KEY_COLUMNS).index.isin(held_out.set_index(cellsmod.KEY_COLUMNS).index)
    rng = np.random.default_rng(0)
    perturbed.loc[is_held_out, "paid"] *= rng.uniform(0.5, 3.0, is_held_out.sum())
    perturbed.loc[is_held_out, ["incurred", "earned_premium"]] = 1e9
    return perturbed


def test_perturbing_held_out_cells_does_not_change_predictions(portfolio_cells):
    original = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=3).emergence
    # no fold sees the latest diagonal; the earliest fold sees none of the latest three
    changed = backtest.backtest(_perturbed(portfolio_cells, 1), CHAIN_LADDER, k=3).emergence
    pd.testing.assert_series_equal(original["expected"], changed["expected"])
    assert not original["actual"].equals(changed["actual"])
    earliest = backtest.backtest(_perturbed(portfolio_cells, 3), CHAIN_LADDER, k=3).emergence
    fold_3 = original["fold"] == 3
    pd.testing.assert_series_equal(original.loc[fold_3, "expected"], earliest.loc[fold_3, "expected"])
    assert not original.loc[~fold_3, "expected"].equals(earliest.loc[~fold_3, "expected"])


def test_same_data_and_spec_give_identical_scores(portfolio_cells):
    first = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=2).scores
    second = backtest.backtest(portfolio_cells.sample(frac=1.0, random_state=3), CHAIN_LADDER, k=2).scores
    pd.testing.assert_frame_equal(first, second)


def test_spec_selection_ranks_by_the_backtest_score(portfolio_cells, caplog):
    candidates = [CHAIN_LADDER, {"method": "chain_ladder", "params": {"n_periods": 2}}]
    with caplog.at_level(logging.INFO, logger=backtest.__name__):
        best, table = backtest.select_spec(portfolio_cells, candidates, k=2)
    # one progress line per candidate, in the search's order, with its score
    scores = table.set_index("spec")["mean_score"]
    specs = [json.dumps(spec, sort_keys=True) for spec in candidates]
    assert [r.getMessage() for r in caplog.records if r.name == backtest.__name__] == [
        f"candidate {k} of 2: {spec} score {scores[spec]:.4f}" for k, spec in enumerate(specs, 1)
    ]
    assert best == json.loads(table["spec"].iloc[0]) and len(table) == 2
    assert table["mean_score"].is_monotonic_decreasing and table["eligible"].all()
    # the search's score is the promotion rule's: the same backtest
    chain_ladder = table.set_index("spec").loc[specs[0]]
    result = backtest.backtest(portfolio_cells, CHAIN_LADDER, k=2)
    assert (chain_ladder["mean_score"], chain_ladder["mean_bias"]) == (result.score, result.bias)


def test_bias_guard_rejects_a_better_scoring_but_biased_challenger():
    """On this portfolio, simple-average chain ladder outscores the volume-weighted one but its segments are further
    from what emerged on average: with a margin below that excess it is not selected, with the default it is."""
    cells = synthetic_cells(seed=3)
    simple = {"method": "chain_ladder", "params": {"average": "simple"}}
    best, table = backtest.select_spec(cells, [CHAIN_LADDER, simple], k=2, bias_margin=0.001)
    rows = table.set_index("spec")
    cl, biased = (rows.loc[json.dumps(spec, sort_keys=True)] for spec in (CHAIN_LADDER, simple))
    assert biased["mean_score"] > cl["mean_score"]
    assert biased["mean_abs_bias"] - cl["mean_abs_bias"] > 0.001
    assert best == CHAIN_LADDER and (cl["eligible"], biased["eligible"]) == (True, False)
    assert table["spec"].iloc[-1] == json.dumps(simple, sort_keys=True)  # ranked last, whatever its score
    # the best score wins (no allowance of standard errors toward the simpler chain ladder)
    assert backtest.select_spec(cells, [CHAIN_LADDER, simple], k=2, se_multiple=0.0)[0] == simple


def test_actual_vs_expected_on_the_newest_diagonal(raa_cells):
    ave = backtest.actual_vs_expected(raa_cells, CHAIN_LADDER)
    row = ave.iloc[0]
    assert list(ave.columns) == ["segment", "actual", "expected", "ratio"]
    assert row["actual"] == 172 + 535 + 603 + 984 + 225 + 2917 + 1368 + 6165 + 2262
    # the one-step backtest projects the same cells, but for 1981's, past the last age fitted (it expects nothing)
    emergence = backtest.backtest(raa_cells, CHAIN_LADDER, k=1).emergence
    assert emergence["actual"].sum() == row["actual"] - 172
    assert emergence["expected"].sum() == pytest.approx(row["expected"])
    assert row["ratio"] == pytest.approx(row["actual"] / row["expected"])

"""The training search's candidates and its selection rule: the one-standard-error rule toward the simpler candidate,
with standard errors, complexities and blends worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from include.reserving import backtest
from include.reserving.config import load_settings
from include.reserving.domain import OVERALL
from include.reserving.models import CapeCod, ChainLadder, build_model
from include.reserving.models.xgboost_development import XGBoostDevelopment

CHAIN_LADDER = {"method": "chain_ladder", "params": {}}
QUICK_XGB = {"method": "xgboost_development", "params": {"n_estimators": 20, "residual_folds": 0}}


def test_standard_error_of_a_paired_difference_by_hand():
    losses = pd.Series([0.1, 0.2, 0.3])
    best = pd.Series([0.1, 0.1, 0.1])
    # differences 0, 0.1, 0.2: standard deviation 0.1; a sum of three has 0.1 * sqrt(3), a mean 0.1 / sqrt(3)
    assert backtest.standard_error(losses, best, mean=False) == pytest.approx(0.1 * math.sqrt(3))
    assert backtest.standard_error(losses, best, mean=True) == pytest.approx(0.1 / math.sqrt(3))
    # units are paired by label; one common unit is no evidence of a difference
    assert backtest.standard_error(pd.Series([0.5], index=[2]), best, mean=False) == math.inf


def _group(rows: list[tuple[int, float, bool, float]], segment: str = "Motor") -> pd.DataFrame:
    """A search table's rows for one segment: (order, score, eligible, complexity)."""
    return pd.DataFrame(
        [
            {"segment": segment, "order": o, "spec": str(o), "score": s, "eligible": e, "complexity": c}
            for o, s, e, c in rows
        ]
    )


# Per-fold losses (absolute fold error over the line's absolute emergence) of four folds:
# 0 chain ladder: WAPE 0.25; 1 a blend: 0.13; 2 XGBoost: 0.12; 3 a biased candidate: 0.05
FOLD_LOSSES = {
    0: [0.05, 0.05, 0.10, 0.05],
    1: [0.04, 0.02, 0.05, 0.02],
    2: [0.02, 0.03, 0.05, 0.02],
    3: [0.01, 0.01, 0.02, 0.01],
}


def _fold_losses() -> dict[int, dict[str, pd.Series]]:
    return {order: {"Motor": pd.Series(values, index=[1, 2, 3, 4])} for order, values in FOLD_LOSSES.items()}


def test_one_standard_error_rule_by_hand():
    group = _group([(0, 0.75, True, 0.0), (1, 0.87, True, 1.25), (2, 0.88, True, 2.5), (3, 0.95, False, 3.0)])
    selected = backtest._select(group, _fold_losses(), se_multiple=1.0).set_index("order")
    # the best eligible is XGBoost (0.88; the biased 0.95 is not eligible). The blend's differences to it are
    # 0.02, -0.01, 0, 0: standard deviation sqrt(4.75e-4 / 3) = 0.012583, the sum of four twice that, 0.025166,
    # more than its gap 0.01: within one standard error and simpler, the blend wins
    assert selected.loc[1, "se"] == pytest.approx(2 * math.sqrt(4.75e-4 / 3))
    assert selected.loc[2, "se"] == 0.0
    # chain ladder's differences 0.03, 0.02, 0.05, 0.03 have the same spread, but it is 0.13 behind
    assert selected.loc[0, "se"] == pytest.approx(0.025166, abs=1e-6)
    assert selected["selected"].tolist() == [False, True, False, False]
    # the best score wins with no allowance; with 6 standard errors (0.151 > 0.13) chain ladder, the simplest
    assert backtest._select(group, _fold_losses(), se_multiple=0.0)["selected"].tolist() == [False, False, True, False]
    assert backtest._select(group, _fold_losses(), se_multiple=6.0)["selected"].tolist() == [True, False, False, False]


def test_without_a_score_the_simplest_eligible_candidate_wins():
    """Nothing emerged on the line (no score): no evidence for anything but chain ladder."""
    group = _group([(0, np.nan, True, 0.0), (1, np.nan, True, 2.5)])
    selected = backtest._select(group, {0: {}, 1: {}}, se_multiple=1.0)
    assert selected["selected"].tolist() == [True, False]


def test_complexity_orders_chain_ladder_blends_and_trees():
    def complexity(params: dict, method: str = "xgboost_development") -> float:
        return build_model({"method": method, "params": params}).complexity()

    assert complexity({}, "chain_ladder") == 0.0
    assert complexity({"n_periods": 5}, "chain_ladder") == 1.0
    # residual target 2, + 0.5 with case incurred; increment 3; a quarter per doubling of depth or learning x trees
    assert complexity({}) == 2.5
    assert complexity({"incurred": False}) == 2.0
    assert complexity({"target": "increment"}) == 3.5
    assert complexity({"learning_rate": 0.1}) == 2.75
    assert complexity({"max_depth": 2}) == pytest.approx(2.5 + 0.25 * math.log2(2 / 3))
    # a fixed-weight blend with chain ladder: its components' complexity weighted alike
    blend = {"challenger": {"method": "xgboost_development", "params": {"target": "increment"}}, "weight": 0.25}
    assert complexity(blend, "blend") == 0.25 * 3.5
    assert complexity({}, "blend") == 3.5  # a learned weight: one more than the default XGBoost model


def test_the_grid_and_the_small_grid():
    full = backtest.default_candidates(load_settings(search_grid="full"))
    assert full[:3] == ChainLadder.search_grid()
    assert full[3:6] == CapeCod.search_grid()
    assert full[6:] == XGBoostDevelopment.search_grid()
    assert len(XGBoostDevelopment.search_grid()) == 8  # defaults, 2 targets, paid only, depth 2/4, learning 0.025/0.1
    assert backtest.default_candidates(load_settings(search_grid="small")) == [
        {"method": "chain_ladder", "params": {}},
        {"method": "cape_cod", "params": {}},
        {"method": "xgboost_development", "params": {}},
    ]


@pytest.mark.parametrize("weights", ["0.5,1", "0"])
def test_blend_weights_must_lie_between_the_components(weights, monkeypatch):
    monkeypatch.setenv("RESERVING_SEARCH_BLEND_WEIGHTS", weights)
    with pytest.raises(ValueError, match="search_blend_weights"):
        load_settings()


def test_blend_weights_from_the_environment(monkeypatch):
    monkeypatch.setenv("RESERVING_SEARCH_BLEND_WEIGHTS", "0.2, 0.6")
    assert load_settings().search_blend_weights == (0.2, 0.6)


def test_a_derived_blend_backtests_exactly_like_the_blend_refitted(portfolio_cells):
    blend = {"method": "blend", "params": {"challenger": QUICK_XGB, "weight": 0.25}}
    results = {backtest.canonical(s): backtest.backtest(portfolio_cells, s, k=2) for s in (CHAIN_LADDER, QUICK_XGB)}
    derived = backtest._derived_blend(blend, results)
    refitted = backtest.backtest(portfolio_cells, blend, k=2)
    pd.testing.assert_frame_equal(derived.emergence, refitted.emergence, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(derived.scores, refitted.scores, check_exact=False, rtol=1e-9)
    # 0.25 of the way from chain ladder's expected emergence to XGBoost's, origin by origin
    base, learned = (results[backtest.canonical(s)].emergence["expected"] for s in (CHAIN_LADDER, QUICK_XGB))
    np.testing.assert_allclose(derived.emergence["expected"], 0.75 * base + 0.25 * learned)
    # a learned weight is no mix of the components' backtests
    assert backtest._derived_blend({"method": "blend", "params": {"challenger": QUICK_XGB}}, results) is None


def test_thin_evidence_goes_to_chain_ladder(portfolio_cells):
    """One rolling origin: a line's score rests on one fold, no evidence that anything beats chain ladder, which
    wins every line; over all lines the three segments are the units."""
    table = backtest.search(portfolio_cells, [CHAIN_LADDER, QUICK_XGB], k=1, blend_weights=(0.5,))
    assert len(table) == 3 * 4  # chain ladder, XGBoost and their blend; three lines and ALL
    lines = table[table["segment"] != OVERALL]
    assert set(lines.loc[lines["selected"], "spec"]) == {backtest.canonical(CHAIN_LADDER)}
    assert (lines.loc[lines["order"] > 0, "se"].isin([0.0, math.inf])).all()
    overall = table[table["segment"] == OVERALL].set_index("order")
    assert overall["se"].between(0, 1).all() and overall["selected"].sum() == 1
    assert backtest.best_per_line(table) == {line: CHAIN_LADDER for line in ("liability", "motor", "property")}

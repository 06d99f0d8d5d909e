"""The Schedule P benchmark's scoring and its view of what was known at the end of 2007."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from devtools import schedule_p


def test_score_line_by_hand():
    actual = pd.Series({"a": 100.0, "b": 200.0})
    predicted = pd.Series({"b": 150.0, "a": 110.0})
    scores = schedule_p.score_line(actual, predicted)
    assert scores["mape"] == pytest.approx((0.1 + 0.25) / 2)
    assert scores["rmspe"] == pytest.approx(np.sqrt((0.01 + 0.0625) / 2))


def test_upper_triangle_keeps_cells_evaluated_by_2007():
    cells = pd.DataFrame(
        {
            "segment": ["x"] * 3,
            "origin": [dt.date(2006, 1, 1), dt.date(2006, 1, 1), dt.date(2007, 1, 1)],
            "development": [24, 36, 12],
            "paid": [1.0, 2.0, 3.0],
        }
    )
    assert schedule_p.upper_triangle(cells)["development"].tolist() == [24, 12]


def test_markdown_shows_the_search_beside_the_outcome():
    table = pd.DataFrame(
        {
            "line": ["ppauto"] * 3,
            "spec": ["chain_ladder", "blend", "xgboost_development(target=cl_residual)"],
            "companies": [96] * 3,
            "mape": [0.03, 0.024, 0.021],
            "rmspe": [0.05, 0.04, 0.035],
            "promoted": [False, True, False],
            "backtest_score": [0.7586, 0.7825, np.nan],
            "backtest_bias": [0.0774, 0.1555, np.nan],
            "backtest_abs_bias": [0.2, 0.3, np.nan],
            "eligible": [np.True_, np.False_, np.nan],  # as the search's table gives them
            "complexity": [0.0, 1.25, np.nan],
            "se": [0.0204, 0.0, np.nan],
            "mape_ratio": [1.0, 0.8, 0.7],
            "rmspe_ratio": [1.0, 0.8, 0.7],
        }
    )
    rows = schedule_p.to_markdown(table).splitlines()
    assert rows[2] == (
        "| ppauto | `chain_ladder` | 0.0300 | 0.0500 | 1.000 | 1.000 | 0.759 | 0.020 | 0.000 | 0.077 | 0.200 |"
    )
    assert rows[3].endswith("| 0.800 | 0.800 | 0.782 | 0.000 | 1.250 | 0.155 | 0.300 (biased) |")
    assert "**promoted**" in rows[3]
    assert rows[4].endswith("| 0.700 | 0.700 |  |  |  |  |  |")  # not one of the search's candidates


def test_markdown_shows_the_derived_blends_within_one_standard_error_or_promoted():
    blend = "blend(challenger=xgboost_development,weight={})"
    table = pd.DataFrame(
        {
            "line": ["ppauto"] * 4,
            "spec": ["chain_ladder", blend.format(0.25), blend.format(0.5), blend.format(0.75)],
            "mape": [0.03] * 4,
            "rmspe": [0.05] * 4,
            "promoted": [False, False, False, True],
            "backtest_score": [0.70, 0.75, 0.76, 0.74],
            "backtest_bias": [0.0] * 4,
            "backtest_abs_bias": [0.1] * 4,
            "eligible": [True, True, True, True],
            "complexity": [0.0, 0.625, 1.25, 1.875],
            "se": [0.02, 0.005, 0.0, 0.001],
            "mape_ratio": [1.0] * 4,
            "rmspe_ratio": [1.0] * 4,
        }
    )
    # chain ladder always; 0.25 (0.01 behind the best, s.e. 0.005) not; the best; 0.75 promoted (0.02 behind)
    assert schedule_p.shown(table).tolist() == [True, False, True, True]

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

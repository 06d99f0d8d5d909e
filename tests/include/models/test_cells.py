"""The cells frame helpers and the lossless cells <-> Triangle round trip."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from include.reserving import cells as cellsmod


def test_evaluation_date_is_month_end_of_origin_plus_age():
    frame = pd.DataFrame({"origin": [dt.date(2024, 1, 1), dt.date(2023, 10, 1)], "development": [5, 3]})
    assert cellsmod.evaluation_date(frame).tolist() == [dt.date(2024, 5, 31), dt.date(2023, 12, 31)]


def test_non_quarter_end_valuation_ages_and_latest_diagonal(portfolio_cells):
    assert cellsmod.valuation_date(portfolio_cells) == dt.date(2024, 5, 31)
    assert cellsmod.development_months(portfolio_cells) == 3
    ages = sorted(portfolio_cells["development"].unique())
    assert ages[:3] == [2, 5, 8]
    latest = cellsmod.latest_diagonal(portfolio_cells)
    assert len(latest) == 3 * 16  # one cell per segment and origin
    assert set(cellsmod.evaluation_date(latest)) == {dt.date(2024, 5, 31)}


def test_round_trip_is_lossless_at_a_non_quarter_end_valuation(portfolio_cells):
    cells = portfolio_cells.copy()
    # zeros (chainladder stores them as empty) and a missing origin-level premium must survive
    cells.loc[cells.index[:3], ["paid", "incurred"]] = 0.0
    cells.loc[cells["origin"] == cells["origin"].min(), "earned_premium"] = np.nan
    triangle = cellsmod.to_triangle(cells)
    assert triangle.origin_grain == "Q"
    assert sorted(int(a) for a in triangle.development)[:2] == [2, 5]
    back = cellsmod.from_triangle(triangle)
    pd.testing.assert_frame_equal(back, cellsmod.normalise(cells))


def test_round_trip_of_a_published_sample(raa_cells):
    assert len(raa_cells) == 55
    assert raa_cells["paid"].iloc[0] == 5012.0
    pd.testing.assert_frame_equal(cellsmod.from_triangle(cellsmod.to_triangle(raa_cells)), raa_cells)


def test_records_round_trip(portfolio_cells):
    pd.testing.assert_frame_equal(cellsmod.from_records(cellsmod.to_records(portfolio_cells)), portfolio_cells)


def test_diagonals_and_incrementals(raa_cells):
    diagonal = cellsmod.diagonal(raa_cells)
    assert diagonal.max() == 9 and (diagonal == 0).sum() == 10
    assert len(cellsmod.before_diagonals(raa_cells, 2)) == 55 - 10 - 9
    increments = cellsmod.incrementals(raa_cells)
    first = raa_cells[raa_cells["origin"] == dt.date(1981, 1, 1)]
    assert increments[first.index].tolist()[:3] == [5012.0, 8269.0 - 5012.0, 10907.0 - 8269.0]


def test_normalise_rejects_duplicates_and_missing_columns(raa_cells):
    with pytest.raises(ValueError, match="duplicated"):
        cellsmod.normalise(pd.concat([raa_cells, raa_cells.head(1)]))
    with pytest.raises(ValueError, match="paid"):
        cellsmod.normalise(raa_cells.drop(columns="paid"))

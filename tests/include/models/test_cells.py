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


def _annual_cells() -> pd.DataFrame:
    """A hand-set annual paid triangle: segment A 2019-2023 at 12..60 months; B with a zero paid at 12 months."""
    paid = {
        ("A", 2019): [100.0, 110.0, 121.0, 127.05, 127.05],
        ("A", 2020): [100.0, 150.0, 180.0, 189.0],
        ("A", 2021): [200.0, 260.0, 286.0],
        ("A", 2022): [50.0, 100.0],
        ("A", 2023): [80.0],
        ("B", 2021): [10.0, 30.0],
        ("B", 2022): [0.0, 40.0],
    }
    return pd.DataFrame(
        [
            {"segment": s, "origin": dt.date(year, 1, 1), "development": 12 * (k + 1), "paid": value}
            for (s, year), values in paid.items()
            for k, value in enumerate(values)
        ]
    )


def test_link_ratios_per_origin_and_their_averages_by_hand():
    steps = cellsmod.link_ratios(_annual_cells())
    a = steps[(steps["segment"] == "A") & (steps["development"] == 12)]
    assert a["factor"].round(6).tolist() == [1.1, 1.5, 1.3, 2.0]  # 110/100, 150/100, 260/200, 100/50
    assert set(a["development_to"]) == {24}
    zero = steps[(steps["segment"] == "B") & (steps["origin"] == dt.date(2022, 1, 1))]
    assert zero["factor"].isna().all()  # 40 / 0: no ratio
    averages = cellsmod.link_ratio_averages(steps).set_index(["segment", "development"])
    # 12-24: simple (1.1 + 1.5 + 1.3 + 2.0) / 4 = 1.475; volume (110 + 150 + 260 + 100) / (100 + 100 + 200 + 50)
    # = 620 / 450; latest 3 origins (2020-2022) (1.5 + 1.3 + 2.0) / 3 = 1.6
    assert averages.loc[("A", 12), ["development_to", "simple", "volume", "latest"]].tolist() == pytest.approx(
        [24, 1.475, 620 / 450, 1.6]
    )
    # 24-36: 121/110 = 1.1, 180/150 = 1.2, 286/260 = 1.1; volume 587 / 520
    assert averages.loc[("A", 24), ["simple", "volume", "latest"]].tolist() == pytest.approx(
        [3.4 / 3, 587 / 520, 3.4 / 3]
    )
    assert averages.loc[("A", 36), ["simple", "volume"]].tolist() == pytest.approx([1.05, 316.05 / 301])
    assert averages.loc[("A", 48), ["simple", "volume", "latest"]].tolist() == pytest.approx([1.0, 1.0, 1.0])
    # B: the zero at 12 months is left out of every average (not a ratio of 40 / 0, nor 70 / 10 by volume)
    assert averages.loc[("B", 12), ["simple", "volume", "latest"]].tolist() == pytest.approx([3.0, 3.0, 3.0])
    assert len(averages) == 5


def test_volume_and_simple_averages_match_chainladder_on_raa(raa_cells):
    import chainladder as cl

    averages = cellsmod.link_ratio_averages(cellsmod.link_ratios(raa_cells))
    triangle = cellsmod.to_triangle(raa_cells, columns=["paid"])["paid"]
    for column, average in (("volume", "volume"), ("simple", "simple")):
        expected = cl.Development(average=average).fit(triangle).ldf_.values.flatten()
        assert averages[column].tolist() == pytest.approx(expected.tolist(), rel=1e-12)
    latest = cl.Development(average="simple", n_periods=3).fit(triangle).ldf_.values.flatten()
    assert averages["latest"].tolist() == pytest.approx(latest.tolist(), rel=1e-12)
    assert averages["volume"].iloc[0] == pytest.approx(2.999359, abs=1e-6)  # RAA 12-24, Mack (1993)


def test_cells_before_diagonals_restate_an_origin_period_not_complete_then_to_the_months_elapsed():
    # quarterly origins valued at the end of May: Q1 at 2 and 5 months, Q2 at 2 months (premium 300 and 90 as at V)
    rows = [
        ("Motor", dt.date(2024, 1, 1), 2, 40.0, 300.0, 30.0),
        ("Motor", dt.date(2024, 1, 1), 5, 100.0, 300.0, 30.0),
        ("Motor", dt.date(2024, 4, 1), 2, 20.0, 90.0, 9.0),
    ]
    cells = cellsmod.normalise(
        pd.DataFrame(rows, columns=["segment", "origin", "development", "paid", "earned_premium", "exposure"])
    )
    before = cellsmod.before_diagonals(cells, 1, grain_months=3)
    # as at 2024-02-29 Q1 had earned 2 of its 3 months: what a backtest fold sees, as the ingest then gave it
    assert before[["origin", "development", "paid"]].values.tolist() == [[dt.date(2024, 1, 1), 2, 40.0]]
    assert before["earned_premium"].tolist() == [200.0] and before["exposure"].tolist() == [20.0]
    # nothing held out: the figures as at V (Q2 is already 2 months earned there); the cells themselves are unchanged
    assert cellsmod.before_diagonals(cells, 0, grain_months=3)["earned_premium"].tolist() == [300.0, 300.0, 90.0]
    assert cells["earned_premium"].tolist() == [300.0, 300.0, 90.0]

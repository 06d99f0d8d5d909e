"""A new line of business with one cell, or a few, reaches every model and the backtests without a crash inside
chainladder: a segment with a single development age is reserved by the chain ladder with factors borrowed from the
rest of the book (no standard error); a segment with two ages gets its own factors."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import pytest

from include.reserving import backtest
from include.reserving import cells as cellsmod
from include.reserving.models import ChainLadder, build_model, load_model
from tests.include.models.conftest import synthetic_cells

V = dt.date(2024, 5, 31)


def _cell(origin: dt.date, development: int, paid: float) -> dict:
    return {
        "segment": "marine",
        "origin": origin,
        "development": development,
        "paid": paid,
        "incurred": paid * 1.8,
        "reported_count": 3,
        "closed_count": 0,
        "earned_premium": 1000.0,
        "exposure": 100.0,
    }


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return synthetic_cells(V)


@pytest.fixture(scope="module")
def one_cell(book) -> pd.DataFrame:
    """The book plus a new line with a single cell: the 2024Q2 origin at age 2 (V is two months into it)."""
    return cellsmod.normalise(pd.concat([book, pd.DataFrame([_cell(dt.date(2024, 4, 1), 2, 500.0)])]))


@pytest.fixture(scope="module")
def few_cells(book) -> pd.DataFrame:
    """A new line two origins old: 2024Q1 at ages 2 and 5, 2024Q2 at age 2."""
    rows = [
        _cell(dt.date(2024, 1, 1), 2, 300.0),
        _cell(dt.date(2024, 1, 1), 5, 600.0),
        _cell(dt.date(2024, 4, 1), 2, 500.0),
    ]
    return cellsmod.normalise(pd.concat([book, pd.DataFrame(rows)]))


def _pooled_cdf_from_age_2(book: pd.DataFrame) -> float:
    """The book's volume-weighted age-to-age factors from age 2 on, multiplied: what the new line borrows."""
    ordered = book.sort_values(["segment", "origin", "development"])
    ordered = ordered.assign(after=ordered.groupby(["segment", "origin"])["paid"].shift(-1)).dropna(subset=["after"])
    sums = ordered[ordered["development"] >= 2].groupby("development")[["paid", "after"]].sum()
    return float((sums["after"] / sums["paid"]).prod())


def test_a_one_cell_segment_borrows_the_books_factors(one_cell, book, caplog):
    with caplog.at_level(logging.WARNING):
        model = ChainLadder().fit(one_cell)
    assert model.young_segments_ == ["marine"]
    assert "segments ['marine'] have a single development age" in caplog.text
    marine = model.ultimates(one_cell).query("segment == 'marine'").iloc[0]
    cdf = _pooled_cdf_from_age_2(book)
    assert 1.5 < cdf < 3  # the synthetic book's paid development from two months on
    assert marine["latest"] == 500.0
    # two months into its quarter: the borrowed development projects the whole quarter, two thirds of it is reserved
    assert marine["ultimate"] == pytest.approx(500.0 * cdf * 2 / 3, rel=1e-9)
    assert marine["unpaid"] == pytest.approx(500.0 * (cdf * 2 / 3 - 1), rel=1e-9)
    assert np.isnan(marine["std_err"]) and np.isnan(marine["p95"])
    # the other lines are reserved exactly as without the new one
    alone = ChainLadder().fit(book).ultimates(book)
    others = model.ultimates(one_cell).query("segment != 'marine'").reset_index(drop=True)
    pd.testing.assert_frame_equal(others, alone)
    totals = model.totals(one_cell).set_index("segment")
    assert np.isnan(totals.at["marine", "std_err"]) and totals.at["marine", "unpaid"] == pytest.approx(marine["unpaid"])


def test_the_one_cell_segment_alone_and_after_save_and_load(one_cell, tmp_path):
    """What the mapped reserve task does: the segment's own cells through the model loaded from its artifacts."""
    model = ChainLadder().fit(one_cell)
    model.save(tmp_path)
    marine = one_cell[one_cell["segment"] == "marine"]
    pd.testing.assert_frame_equal(load_model(tmp_path).ultimates(marine), model.ultimates(marine))


@pytest.mark.parametrize("method", ["xgboost_development", "blend"])
def test_every_model_reserves_a_one_cell_segment(one_cell, method):
    ultimates = build_model({"method": method, "params": {}}).fit(one_cell).ultimates(one_cell)
    marine = ultimates[ultimates["segment"] == "marine"]
    assert len(marine) == 1 and np.isfinite(marine["ultimate"]).all() and (marine["unpaid"] > 0).all()


def test_backtests_and_actual_vs_expected_with_new_lines(one_cell, few_cells):
    """The held-out and the newest diagonal leave a new line with one cell (or none) to fit on."""
    spec = {"method": "chain_ladder", "params": {}}
    for cells in (one_cell, few_cells):
        assert 0 < backtest.backtest(cells, spec, k=4).score < 1
    ave = backtest.actual_vs_expected(few_cells, spec).set_index("segment")
    # marine's 2024Q1 went from 300 to 600 against the book's factor from age 2
    assert ave.at["marine", "actual"] == 300.0
    cdf_step = ChainLadder().fit(backtest.split(few_cells, 1)[0]).borrowed_ldf_.loc[2]
    assert ave.at["marine", "expected"] == pytest.approx(300.0 * (cdf_step - 1), rel=1e-9)
    best, table = backtest.select_spec(
        one_cell, candidates=[spec, {"method": "chain_ladder", "params": {"n_periods": 5}}], k=2
    )
    assert len(table) == 2 and best in (spec, {"method": "chain_ladder", "params": {"n_periods": 5}})

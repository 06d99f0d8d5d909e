"""Cape Cod: chainladder's published method reproduced, the projection of each future cell, and the origins it leaves
to the chain ladder."""

from __future__ import annotations

import datetime as dt

import chainladder as cl
import numpy as np
import pandas as pd
import pytest

from include.reserving import cells as cellsmod
from include.reserving.models import CapeCod, ChainLadder, load_model

COMPANY = "Allstate Ins Co Grp"


@pytest.fixture(scope="module")
def company():
    """One company's workers' compensation square in chainladder's ``clrd`` sample: paid and net earned premium."""
    clrd = cl.load_sample("clrd")
    triangle = clrd[(clrd["GRNAME"] == COMPANY) & (clrd["LOB"] == "wkcomp")]
    cells = cellsmod.from_triangle(
        triangle[["CumPaidLoss", "EarnedPremNet"]], columns={"CumPaidLoss": "paid", "EarnedPremNet": "earned_premium"}
    )
    cells["segment"] = "wkcomp"
    cells["earned_premium"] = cells.groupby("origin")["earned_premium"].transform("max")
    return triangle, cellsmod.normalise(cells)


@pytest.mark.parametrize("decay", [1.0, 0.75, 0.5])
def test_ultimates_are_chainladders_cape_cod(company, decay):
    triangle, cells = company
    theirs = cl.CapeCod(decay=decay).fit(
        cl.Development().fit_transform(triangle["CumPaidLoss"]),
        sample_weight=triangle["EarnedPremNet"].latest_diagonal,
    )
    expected = np.asarray(theirs.ultimate_.values, dtype=float).ravel()
    ours = CapeCod(decay=decay).fit(cells).ultimates(cells)
    assert ours["ultimate"].to_numpy() == pytest.approx(expected, rel=1e-9)
    assert ours["unpaid"].sum() == pytest.approx(expected.sum() - cells.groupby("origin")["paid"].last().sum())


def test_each_future_cell_emerges_by_the_pattern_from_elr_times_premium(company):
    """By hand for the newest accident year (paid at 12 months only): ELR over all years at decay 1, then the share of
    the ultimate the chain-ladder pattern expects between 12 and 48 months."""
    _, cells = company
    model = CapeCod().fit(cells)
    cdf = ChainLadder().fit(cells).ldf_.set_index("development")["ldf"][::-1].cumprod()[::-1]
    share = (1.0 / cdf).reindex(sorted(cells["development"].unique()), fill_value=1.0)
    latest = cells.groupby("origin").last()
    elr = latest["paid"].sum() / (latest["earned_premium"] * share.loc[latest["development"]].to_numpy()).sum()
    assert model.expected_loss_ratios(cells).to_numpy() == pytest.approx(np.full(len(latest), elr))

    newest = latest.index.max()
    premium, paid = latest.loc[newest, "earned_premium"], latest.loc[newest, "paid"]
    square = model.predict(cells).set_index(["origin", "development"])["paid"]
    assert square.loc[(newest, 48)] == pytest.approx(paid + elr * premium * (share.loc[48] - share.loc[12]))
    assert square.loc[(newest, cellsmod.ULTIMATE_DEVELOPMENT)] == pytest.approx(paid + elr * premium * (1 - share[12]))
    # observed cells are the data
    observed = cells.set_index(["origin", "development"])["paid"]
    assert square.reindex(observed.index).to_numpy() == pytest.approx(observed.to_numpy())


def test_without_premium_it_is_the_chain_ladder(company, caplog):
    _, cells = company
    cells = cells.assign(earned_premium=np.nan)
    cape_cod = CapeCod().fit(cells)
    pd.testing.assert_frame_equal(cape_cod.predict(cells), ChainLadder().fit(cells).predict(cells))
    assert "have no earned premium: Cape Cod keeps their chain ladder" in caplog.text
    # one origin without premium keeps its chain ladder; the others' ELR is theirs alone
    _, cells = company
    oldest = cells["origin"].min()
    some = cells.assign(earned_premium=cells["earned_premium"].where(cells["origin"] != oldest))
    elr = CapeCod().fit(some).expected_loss_ratios(some)
    assert np.isnan(elr.loc[("wkcomp", oldest)]) and elr.drop(("wkcomp", oldest)).notna().all()
    ultimates = CapeCod().fit(some).ultimates(some).set_index("origin")["ultimate"]
    assert ultimates.loc[oldest] == pytest.approx(ChainLadder().fit(some).ultimates(some).iloc[0]["ultimate"])


def test_a_part_elapsed_origin_is_projected_on_the_whole_periods_premium():
    """Quarterly origins valued one month into the newest quarter: its premium is a third earned. The projection
    takes the whole quarter's premium (earned / elapsed), and the reserve is the elapsed third of it, as for every
    model (cells.period_elapsed)."""
    rows = []
    for i, origin in enumerate(pd.date_range("2023-01-01", "2024-01-01", freq="QS").date):
        ages = range(1 if i == 4 else 4 + 3 * (3 - i), 0, -3)
        for age in ages:
            rows.append((origin, age, 100.0 * age**0.5 * (1 + i / 10), 1000.0 / (3 if i == 4 else 1)))
    cells = cellsmod.normalise(
        pd.DataFrame(rows, columns=["origin", "development", "paid", "earned_premium"]).assign(segment="Motor")
    )
    model = CapeCod().fit(cells)
    newest = cells["origin"].max()
    full_premium = 1000.0
    elr = model.expected_loss_ratios(cells).loc[("Motor", newest)]
    share = 1.0 / model.cdf_.set_index("development")["cdf"]
    latest = cells.groupby("origin").last()
    # every origin on its whole period's premium, 1,000: the newest one's third earned is not a third of the exposure
    assert elr == pytest.approx(latest["paid"].sum() / (full_premium * share.loc[latest["development"]]).sum())
    square = model.predict(cells).set_index(["origin", "development"])["paid"]
    paid = cells.loc[cells["origin"] == newest, "paid"].iloc[-1]
    full = paid + elr * full_premium * (1.0 - share.loc[1])
    assert square.loc[(newest, cellsmod.ULTIMATE_DEVELOPMENT)] == pytest.approx(full)
    ultimate = model.ultimates(cells).set_index("origin").loc[newest, "ultimate"]
    assert ultimate == pytest.approx(full / 3)


def test_a_segment_younger_than_the_book_ends_at_its_own_oldest_age(company):
    """A second line that started five years later (its own triangle, ages to 60 months): its square is complete,
    and its ultimate is its paid at its oldest age, as its chain ladder's is."""
    _, cells = company
    newer = cells[cells["origin"] >= dt.date(1993, 1, 1)].assign(segment="newer")
    newer = newer[newer["development"] <= 60]
    both = cellsmod.normalise(pd.concat([cells, newer], ignore_index=True))
    square = CapeCod().fit(both).predict(both)
    assert square["paid"].notna().all()
    mine = square[square["segment"] == "newer"].pivot(index="origin", columns="development", values="paid")
    assert list(mine.columns) == [12, 24, 36, 48, 60, cellsmod.ULTIMATE_DEVELOPMENT]
    assert mine[60].to_numpy() == pytest.approx(mine[cellsmod.ULTIMATE_DEVELOPMENT].to_numpy())
    alone = CapeCod().fit(newer).predict(newer)
    assert alone["paid"].to_numpy() == pytest.approx(square.loc[square["segment"] == "newer", "paid"].to_numpy())


def test_save_and_load_give_identical_predictions_and_ranges(tmp_path, portfolio_cells):
    model = CapeCod(decay=0.75).fit(portfolio_cells)
    model.save(tmp_path / "model")
    restored = load_model(tmp_path / "model")
    assert isinstance(restored, CapeCod) and restored.get_params() == model.get_params()
    pd.testing.assert_frame_equal(restored.predict(portfolio_cells), model.predict(portfolio_cells))
    ultimates = model.ultimates(portfolio_cells)
    pd.testing.assert_frame_equal(restored.ultimates(portfolio_cells), ultimates)
    # the range is the chain ladder's coefficient of variation on the Cape Cod reserve (of a complete origin period:
    # a part-elapsed one reserves the elapsed share of a projection less its whole paid)
    chain_ladder = ChainLadder().fit(portfolio_cells).ultimates(portfolio_cells)
    complete = cellsmod.period_elapsed(portfolio_cells).to_numpy() == 1.0
    assert 0 < (~complete).sum() < len(complete)
    cv = (chain_ladder["std_err"] / chain_ladder["unpaid"]).where((chain_ladder["unpaid"] > 0) & complete)
    mine = (ultimates["std_err"] / ultimates["unpaid"].abs()).where((chain_ladder["unpaid"] > 0) & complete)
    assert mine.dropna().to_numpy() == pytest.approx(cv.dropna().to_numpy())
    assert (ultimates["p95"] >= ultimates["unpaid"]).all()

"""Actuarial methods: golden numbers from chainladder's documentation, the project's chain ladder, tails, the
selection rule, flags and ranges."""

from __future__ import annotations

import chainladder as cl
import numpy as np
import pandas as pd
import pytest

from include.reserving import cells as cellsmod
from include.reserving import methods
from include.reserving.config import load_settings
from include.reserving.models.chain_ladder import ChainLadder

NO_TAIL = {"tail_method": "none", "expected_basis": "paid"}


@pytest.fixture(scope="module")
def raa() -> pd.DataFrame:
    """RAA paid (chainladder's sample) with incurred = paid and a flat premium of 40,000 per origin."""
    cells = cellsmod.from_triangle(cl.load_sample("raa"), columns={"values": "paid"}, segment="raa")
    return cells.assign(incurred=cells["paid"], earned_premium=40_000.0)


@pytest.fixture(scope="module")
def xyz() -> pd.DataFrame:
    sample = cl.load_sample("xyz")
    columns = {"Paid": "paid", "Incurred": "incurred", "Premium": "earned_premium"}
    return cellsmod.from_triangle(sample[list(columns)], columns=columns, segment="xyz")


def _unpaid(origins: pd.DataFrame, method: str) -> list[float]:
    return (origins[method] - origins["paid"]).round(6).tolist()


def test_bf_reproduces_chainladder_documented_example(raa):
    # BornhuetterFerguson docstring: raa, premium 40,000 per origin, apriori 0.7 -> IBNR (chainladder: ultimate
    # less latest, i.e. our unpaid) per origin 1981..1990
    documented = [0.0, 255.707763, 717.772687, 1596.061515, 2658.738155, 5239.441491, 8574.335344, 12714.889984,
                  18585.219714, 24861.068855]  # fmt: skip
    result = methods.reserve_segment(raa, load_settings(**NO_TAIL, bf_apriori_loss_ratio=0.7))
    assert _unpaid(result.origins, "bf") == pytest.approx(documented, abs=1e-5)
    assert result.summary.at[0, "bf_apriori_loss_ratio"] == 0.7


def test_cape_cod_reproduces_chainladder_documented_example(xyz):
    # CapeCod docstring: xyz Paid, premium = Premium's latest diagonal, default decay and trend -> IBNR 1998..2008
    documented = [0.0, 88.211299, 698.247374, 1858.151261, 4611.796594, 10640.571396, 25916.281295, 53264.037933,
                  56079.713590, 40470.540502, 35043.822927]  # fmt: skip
    result = methods.reserve_segment(xyz, load_settings(**NO_TAIL))
    assert _unpaid(result.origins, "cape_cod") == pytest.approx(documented, abs=1e-5)
    # the ELR is the one Cape Cod found: latest paid over used-up premium (premium / CDF)
    origins = result.origins
    used_up = (origins["earned_premium"] * origins["pct_developed_paid"]).sum()
    assert result.summary.at[0, "cape_cod_elr"] == pytest.approx(origins["paid"].sum() / used_up, rel=1e-9)


def test_paid_chain_ladder_equals_the_project_chain_ladder_without_tail(raa):
    origins = methods.reserve_segment(raa, load_settings(**NO_TAIL)).origins
    expected = ChainLadder().fit(raa).ultimates(raa)
    assert origins["paid_cl"].tolist() == pytest.approx(expected["ultimate"].tolist(), rel=1e-12)
    assert (origins["paid_tail_effect"] == 0).all()
    assert (origins["paid_cl"] - origins["paid"]).sum() == pytest.approx(52135.2, abs=0.1)  # ChainLadder's docstring


def test_tails_applied_as_chainladder_does(raa):
    plain = methods.reserve_segment(raa, load_settings(**NO_TAIL)).origins
    constant = methods.reserve_segment(raa, load_settings(**{**NO_TAIL, "tail_method": "constant"},
                                                          tail_constant_paid=1.05)).origins  # fmt: skip
    assert constant["paid_cl"].tolist() == pytest.approx((plain["paid_cl"] * 1.05).tolist(), rel=1e-12)
    assert constant["paid_tail_effect"].tolist() == pytest.approx((plain["paid_cl"] * 0.05).tolist(), rel=1e-9)

    curve = methods.reserve_segment(raa, load_settings(tail_method="exponential", expected_basis="paid"))
    triangle = cellsmod.to_triangle(raa, columns=["paid"])["paid"]
    developed = cl.TailCurve(curve="exponential").fit_transform(cl.Development().fit_transform(triangle))
    expected = np.asarray(cl.Chainladder().fit(developed).ultimate_.values, dtype=float)[0, 0, :, -1]
    assert curve.origins["paid_cl"].tolist() == pytest.approx(expected.tolist(), rel=1e-9)
    tail = curve.summary.at[0, "paid_tail_factor"]
    assert tail == pytest.approx(float(np.asarray(cl.TailCurve().fit(cl.Development().fit_transform(triangle))
                                                  .tail_).ravel()[0]), rel=1e-12)  # fmt: skip
    assert tail > 1
    assert curve.origins["paid_tail_effect"].tolist() == pytest.approx(
        (curve.origins["paid_cl"] * (1 - 1 / tail)).tolist(), rel=1e-9
    )


def test_selection_follows_the_maturity_rule(raa):
    settings = load_settings(**NO_TAIL, selection_maturity=0.9, selection_immature_method="bf")
    origins = methods.reserve_segment(raa, settings).origins
    mature = origins["pct_developed_paid"] >= 0.9
    assert 0 < mature.sum() < len(origins)  # both branches are exercised
    assert (origins.loc[mature, "selected_method"] == "paid_cl").all()
    assert (origins.loc[~mature, "selected_method"] == "bf").all()
    chosen = [origins.at[i, m] for i, m in origins["selected_method"].items()]
    assert origins["selected_ultimate"].tolist() == pytest.approx(chosen, rel=1e-15)
    assert origins.loc[mature, "rationale"].str.contains(">= 90%").all()
    assert origins.loc[~mature, "rationale"].str.contains("< 90%: Bornhuetter-Ferguson").all()
    # unpaid = case reserves + IBNR to the cent on every origin
    assert np.allclose(origins["unpaid"], origins["case_reserves"] + origins["ibnr"], atol=0.005)

    by_rule = methods.reserve_segment(raa, load_settings(**NO_TAIL, selection_rule="cape_cod")).origins
    assert by_rule["selected_ultimate"].tolist() == by_rule["cape_cod"].tolist()
    assert set(by_rule["rationale"]) == {"rule: Cape Cod for every origin"}


def test_model_ultimates_shown_and_selectable(raa):
    model = pd.DataFrame({"origin": raa["origin"].unique(), "ultimate": 1_000.0})
    origins = methods.reserve_segment(raa, load_settings(**NO_TAIL, selection_rule="model"), model).origins
    assert (origins["model"] == 1_000.0).all()
    assert (origins["selected_ultimate"] == 1_000.0).all()


def test_flags_fire_where_ultimate_is_below_incurred(raa):
    # hand-made: incurred twice paid on the latest diagonal of the two oldest origins, so paid CL (and the
    # selection, which is paid CL there) is below incurred: negative IBNR
    cells = raa.copy()
    oldest = sorted(cells["origin"].unique())[:2]
    latest = cellsmod.latest_diagonal(cells)[["origin", "development"]]
    hit = cells.merge(latest.assign(hit=True), on=["origin", "development"], how="left")["hit"].fillna(False)
    hit &= cells["origin"].isin(oldest).to_numpy()
    cells.loc[hit.to_numpy(), "incurred"] = cells.loc[hit.to_numpy(), "paid"] * 2
    origins = methods.reserve_segment(cells, load_settings(**NO_TAIL, selection_rule="paid_cl")).origins
    flagged = origins["flags"].str.contains("selected: ultimate<incurred")
    assert origins.loc[flagged, "origin"].tolist() == oldest
    assert origins.loc[flagged, "flags"].str.contains("paid_cl: ultimate<incurred").all()
    assert (origins.loc[flagged, "ibnr"] < 0).all()
    assert not origins.loc[~flagged, "flags"].str.contains("selected").any()


def test_mack_range_and_total_over_lines(raa, xyz):
    result = methods.reserve_segment(raa, load_settings(**NO_TAIL, selection_rule="paid_cl"))
    summary = result.summary.iloc[0]
    assert summary["std_err"] == pytest.approx(26880.74033, abs=1e-4)  # MackChainladder on raa, log-linear sigma
    assert summary["cv"] == pytest.approx(26880.74033 / summary["unpaid"], rel=1e-9)
    assert summary["unpaid"] < summary["p75"] < summary["p95"]
    other = methods.reserve_segment(xyz, load_settings(**NO_TAIL)).summary
    both = pd.concat([result.summary, other], ignore_index=True)
    total = methods.total_range(both, load_settings(**NO_TAIL)).iloc[0]
    assert total["unpaid"] == pytest.approx(both["unpaid"].sum(), abs=1e-6)
    assert total["std_err"] == pytest.approx(float(np.hypot(*both["std_err"])), rel=1e-12)
    assert total["correlation"] == "independent lines"


def test_no_cv_where_the_unpaid_is_near_zero(raa):
    # every origin fully developed: nothing unpaid, so no CV (a CV of a zero reserve is noise)
    oldest = raa[raa["origin"] == raa["origin"].min()]
    summary = methods.reserve_segment(oldest, load_settings(**NO_TAIL)).summary.iloc[0]
    assert abs(summary["unpaid"]) < 1e-6
    assert np.isnan(summary["cv"])


def test_reserve_segment_refuses_several_segments(raa, xyz):
    with pytest.raises(ValueError, match="one segment"):
        methods.reserve_segment(pd.concat([raa, xyz]))


def test_per_origin_range_is_macks_standard_error_around_the_selected_unpaid(raa):
    from include.reserving.models.base import reserve_percentiles

    result = methods.reserve_segment(raa, load_settings(**NO_TAIL))
    mack = cl.MackChainladder().fit(cl.Development().fit_transform(cellsmod.to_triangle(raa, columns=["paid"])))
    expected = np.asarray(mack.mack_std_err_.values, dtype=float)[0, 0, :, -1]
    origins = result.origins
    np.testing.assert_allclose(origins["std_err"].to_numpy(), expected, rtol=1e-9, equal_nan=True)
    # RAA in chainladder's MackChainladder summary: 1990's standard error 24,565.78, 1982's 142.93, total 26,880.74
    assert origins["std_err"].iloc[-1] == pytest.approx(24_565.78, abs=0.01)
    assert origins["std_err"].iloc[1] == pytest.approx(142.93, abs=0.01)
    assert result.summary.at[0, "std_err"] == pytest.approx(26_880.74, abs=0.01)
    p75, p95 = reserve_percentiles(origins["unpaid"].to_numpy(), origins["std_err"].to_numpy(), (0.75, 0.95))
    np.testing.assert_allclose(origins["p75"], p75, equal_nan=True)
    np.testing.assert_allclose(origins["p95"], p95, equal_nan=True)
    # the oldest origin is fully developed: no standard error, no percentiles
    assert np.isnan(origins["std_err"].iloc[0]) and np.isnan(origins["p95"].iloc[0])


def test_model_column_carries_the_lines_paid_tail_unless_the_model_has_its_own(raa):
    settings = load_settings(**{**NO_TAIL, "tail_method": "constant"}, tail_constant_paid=1.05)
    fitted = ChainLadder().fit(raa)
    origins = methods.reserve_segment(raa, settings, fitted.ultimates(raa), fitted.includes_tail()).origins
    # the chain ladder model projects to the oldest age; with the line's tail on top it is the methods' paid CL
    assert origins["model"].tolist() == pytest.approx(origins["paid_cl"].tolist(), rel=1e-12)
    assert origins["model"].tolist() == pytest.approx((fitted.ultimates(raa)["ultimate"] * 1.05).tolist(), rel=1e-12)
    own = ChainLadder(tail={"curve": "exponential"}).fit(raa)
    assert own.includes_tail()
    shown = methods.reserve_segment(raa, settings, own.ultimates(raa), own.includes_tail()).origins
    assert shown["model"].tolist() == pytest.approx(own.ultimates(raa)["ultimate"].tolist(), rel=1e-12)

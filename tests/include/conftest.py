"""A hand-set reserving book for the report, model card and notification tests (no warehouse needed).

Three lines (Liability, Motor, Property), quarterly origins 2021Q1-2023Q4 valued as at 2023-12-31. Ultimates per
origin and the cumulative paid/incurred patterns are set by hand; cells, latest values, IBNR (ultimate less latest
paid) and ranges follow from them to the cent, exactly as publish.py derives the published rows.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from include.reserving.movement import analysis_of_change
from include.reserving.presentation.report import ReportData, render_reserve_report

VALUATION = dt.date(2023, 12, 31)
PREVIOUS_VALUATION = dt.date(2023, 11, 30)
AGES = list(range(3, 39, 3))  # 3 .. 36 months

ULTIMATES = {
    "Motor": [
        4_812_345.67, 4_905_118.20, 5_020_776.45, 4_988_310.90, 5_134_902.33, 5_251_847.12,
        5_310_004.58, 5_402_666.71, 5_488_120.05, 5_575_930.44, 5_690_212.89, 5_802_450.16,
    ],
    "Property": [
        2_103_456.78, 2_250_981.34, 1_987_654.32, 2_345_678.90, 2_412_345.67, 2_298_765.43,
        2_501_234.56, 2_566_789.01, 2_634_567.89, 2_700_111.22, 2_789_012.34, 2_845_678.95,
    ],
    "Liability": [
        3_456_789.01, 3_512_345.67, 3_601_234.56, 3_654_321.09, 3_723_456.78, 3_801_234.57,
        3_876_543.21, 3_945_678.12, 4_012_345.68, 4_098_765.43, 4_156_789.02, 4_234_567.89,
    ],
}  # fmt: skip
PAID_PATTERN = {
    "Motor": [0.30, 0.52, 0.66, 0.76, 0.83, 0.88, 0.92, 0.95, 0.97, 0.985, 0.993, 0.998],
    "Property": [0.45, 0.70, 0.83, 0.90, 0.94, 0.965, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0],
    "Liability": [0.05, 0.12, 0.20, 0.28, 0.36, 0.44, 0.51, 0.58, 0.64, 0.70, 0.75, 0.79],
}
INCURRED_PATTERN = {
    "Motor": [0.62, 0.80, 0.89, 0.94, 0.965, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0, 1.0],
    "Property": [0.78, 0.92, 0.97, 0.99, 0.995, 0.998, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    "Liability": [0.20, 0.35, 0.48, 0.58, 0.66, 0.73, 0.78, 0.82, 0.85, 0.88, 0.90, 0.92],
}
LIABILITY_TAIL = 1.2658  # 36-to-ultimate
CV = {"Motor": 0.06, "Property": 0.05, "Liability": 0.12}
PREVIOUS_UNPAID_SCALE = {"Motor": 0.97, "Property": 1.04, "Liability": 0.95}
CHAMPION = "chain_ladder-20231130-a1b2c3"
CHALLENGER = "xgb_development-20231231-d4e5f6"

# Golden numbers, worked out from the hand-set book above (see test_fixture_golden_numbers).
# Each line ties: unpaid = case reserves + IBNR (e.g. Motor 7,833,353.75 + 4,674,096.99 = 12,507,450.74), and
# case reserves = incurred - paid in total (117,835,704.71 - 96,960,467.25).
TOTAL_UNPAID = "41,932,565.69"
UNPAID_BY_LINE = {"Liability": "25,971,208.13", "Motor": "12,507,450.74", "Property": "3,453,906.82"}
TOTAL_CASE = "20,875,237.46"
CASE_BY_LINE = {"Liability": "10,562,332.69", "Motor": "7,833,353.75", "Property": "2,479,551.02"}
TOTAL_IBNR = "21,057,328.23"
IBNR_BY_LINE = {"Liability": "15,408,875.44", "Motor": "4,674,096.99", "Property": "974,355.80"}
# The selection: the youngest origins BF, the others paid CL; the other methods' ultimates set off the selected one
YOUNG_BF = 4
METHOD_SCALES = {"paid_cl": 1.08, "incurred_cl": 1.03, "bf": 0.99, "cape_cod": 1.01, "model": 0.97}
# The ranges by line (Mack std. errors set by hand); the total's std. error adds them in quadrature:
# sqrt(1,500,000^2 + 400,000^2 + 120,000^2) = 1,557,048.49
STD_ERR_BY_LINE = {"Liability": 1_500_000.0, "Motor": 400_000.0, "Property": 120_000.0}
TOTAL_STD_ERR = "1,557,048.49"
# Earned premium and exposure per origin (origin-level, on every cell of the origin) and the claims each origin
# ultimately reports: reported counts follow the incurred pattern, closed counts the paid pattern (rounded)
PREMIUM = {"Motor": 7_500_000.00, "Property": 3_600_000.00, "Liability": 5_000_000.00}
EXPOSURE = {"Motor": 10_000.0, "Property": 2_400.0, "Liability": 800.0}
CLAIMS = {"Motor": 400, "Property": 120, "Liability": 60}
RULE = "paid chain ladder where at least 90% developed on the paid pattern, else Bornhuetter-Ferguson"


def _cents(value: float) -> float:
    return round(value + 0.0, 2)


def _split(paid: float, incurred: float, ultimate: float) -> dict[str, float]:
    """Ultimate, case reserves (incurred - paid), IBNR (ultimate - incurred) and unpaid (ultimate - paid)."""
    return {
        "ultimate": ultimate,
        "case_reserve": _cents(incurred - paid),
        "ibnr": _cents(ultimate - incurred),
        "unpaid": _cents(ultimate - paid),
    }


def _selection(ultimate: float, incurred: float, method: str) -> dict:
    """The selection columns of a published row: the selected method's ultimate is the published one."""
    values = {m: ultimate if m == method else _cents(ultimate * scale) for m, scale in METHOD_SCALES.items()}
    flags = "; ".join(f"{m}: ultimate<incurred" for m, v in values.items() if v < incurred - 0.005)
    return {"method": method, **{f"{m}_ultimate": v for m, v in values.items()}, "flags": flags}


def make_ranges(reserves: pd.DataFrame) -> pd.DataFrame:
    """reserve_ranges rows of the hand-set book: per line (std. errors by hand) and the total."""
    from include.reserving import methods
    from include.reserving.config import Settings
    from include.reserving.publish import RANGE_COLUMNS

    sums = reserves.groupby("segment")[["latest_paid", "latest_incurred", "ultimate", "case_reserve", "ibnr", "unpaid"]]
    lines = sums.sum().round(2).reset_index()
    lines = lines.rename(
        columns={"latest_paid": "paid", "latest_incurred": "incurred", "ultimate": "selected_ultimate"}
    ).assign(
        case_reserves=lines["case_reserve"],
        earned_premium=math.nan,
        **{m: math.nan for m in (*methods.METHODS, methods.MODEL)},
        std_err=lines["segment"].map(STD_ERR_BY_LINE),
        selection_rule=RULE,
        tail_method="exponential",
        paid_tail_factor=[LIABILITY_TAIL, 1.0, 1.0],
        incurred_tail_factor=[1.0812, 1.0, 1.0],
        cape_cod_elr=0.65,
        bf_apriori_loss_ratio=0.68,
        range_basis="Mack, paid chain ladder",
    )
    lines = methods.with_range(lines, Settings())
    total = methods.total_range(lines, Settings()).assign(range_basis="independent lines")
    return pd.concat([lines, total], ignore_index=True).reindex(columns=RANGE_COLUMNS)


def origins(n: int = 12) -> list[dt.date]:
    """The last n quarterly origins up to the valuation date, oldest first."""
    out, year, quarter = [], VALUATION.year, 4
    for _ in range(n):
        out.append(dt.date(year, 3 * quarter - 2, 1))
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
    return out[::-1]


def _share(pattern: list[float], age: int) -> float:
    """Cumulative share at an age; beyond the hand-set 36 months the pattern closes a tenth of its gap a quarter."""
    if age <= AGES[-1]:
        return pattern[AGES.index(age)]
    last, steps = pattern[-1], (age - AGES[-1]) // 3
    return 1.0 - (1.0 - last) * 0.9**steps


def make_book(n_origins: int = 12) -> dict[str, pd.DataFrame]:
    """Cells, reserves, previous reserves and factors of the hand-set book (older origins repeat the ultimates)."""
    cells, reserves, previous = [], [], []
    dates = origins(n_origins)
    for segment in ("Liability", "Motor", "Property"):
        ultimates = ULTIMATES[segment]
        for i, origin in enumerate(dates):
            ultimate = ultimates[(i - n_origins) % len(ultimates)]
            latest_age = (VALUATION.year - origin.year) * 12 + VALUATION.month - origin.month + 1
            for age in range(3, latest_age + 1, 3):
                cells.append(
                    {
                        "segment": segment,
                        "origin": origin,
                        "development": age,
                        "paid": _cents(ultimate * _share(PAID_PATTERN[segment], age)),
                        "incurred": _cents(ultimate * _share(INCURRED_PATTERN[segment], age)),
                        "reported_count": round(CLAIMS[segment] * _share(INCURRED_PATTERN[segment], age)),
                        "closed_count": round(CLAIMS[segment] * _share(PAID_PATTERN[segment], age)),
                        "earned_premium": PREMIUM[segment],
                        "exposure": EXPOSURE[segment],
                    }
                )
            paid, incurred = cells[-1]["paid"], cells[-1]["incurred"]
            unpaid = _cents(ultimate - paid)
            std_err = math.nan if (segment == "Liability" and i == 0) else _cents(CV[segment] * unpaid)
            row = {
                "segment": segment,
                "origin": origin,
                "latest_paid": paid,
                "latest_incurred": incurred,
                **_split(paid, incurred, ultimate),
                "std_err": std_err,
                "p75": math.nan if math.isnan(std_err) else _cents(unpaid + 0.6745 * std_err),
                "p95": math.nan if math.isnan(std_err) else _cents(unpaid + 1.6449 * std_err),
                "model_version": CHAMPION,
                **_selection(ultimate, incurred, "bf" if i >= n_origins - YOUNG_BF else "paid_cl"),
            }
            reserves.append(row)
            scale = PREVIOUS_UNPAID_SCALE[segment]
            previous.append({**row, **_split(paid, incurred, _cents(paid + unpaid * scale))})
    factors = []
    for segment, pattern in PAID_PATTERN.items():
        for a, b, share_a, share_b in zip(AGES, AGES[1:], pattern, pattern[1:], strict=False):
            factors.append(
                {"segment": segment, "development": a, "development_to": b, "factor": round(share_b / share_a, 4)}
            )
    factors.append({"segment": "Liability", "development": 36, "development_to": 9999, "factor": LIABILITY_TAIL})
    return {
        "cells": pd.DataFrame(cells),
        "reserves": pd.DataFrame(reserves),
        "previous_reserves": pd.DataFrame(previous),
        "factors": pd.DataFrame(factors),
    }


def make_report_data(n_origins: int = 12, status: str = "approved") -> ReportData:
    book = make_book(n_origins)
    ave = pd.DataFrame(
        {
            "segment": ["Liability", "Motor", "Property"],
            "actual": [412_345.67, 1_234_567.89, 456_789.01],
            "expected": [398_765.43, 1_250_000.00, 430_000.00],
        }
    )
    ave["ratio"] = ave["actual"] / ave["expected"]
    backtest = pd.DataFrame(
        [
            (CHAMPION, "champion", "ALL", 0.0842, 61_234.56),
            (CHALLENGER, "challenger", "ALL", 0.0711, 52_109.87),
            (CHAMPION, "champion", "Liability", 0.1520, 48_765.43),
            (CHALLENGER, "challenger", "Liability", 0.1190, 40_123.45),
            (CHAMPION, "champion", "Motor", 0.0610, 35_432.10),
            (CHALLENGER, "challenger", "Motor", 0.0588, 34_001.22),
            (CHAMPION, "champion", "Property", 0.0455, 12_345.67),
            (CHALLENGER, "challenger", "Property", 0.0472, 12_900.11),
        ],
        columns=["model_version", "role", "segment", "wape", "rmse"],
    )
    quality = pd.DataFrame(
        [
            ("expect_table_columns_to_match_set", None, True, 0),
            ("expect_column_values_to_not_be_null", "transaction_id", True, 0),
            ("expect_column_values_to_not_be_null", "paid_amount", True, 0),
            ("expect_column_values_to_be_between", "paid_amount", True, 0),
            ("expect_compound_columns_to_be_unique", "claim_id, transaction_date, paid_amount", True, 0),
            ("expect_column_values_to_be_in_set", "claim_type", True, 0),
            ("expect_column_values_to_be_between", "claimant_age", True, 0),
            ("expect_table_row_count_to_be_between", None, True, 48_213),
        ],
        columns=["expectation", "column", "success", "unexpected_count"],
    )
    # the month-level plausibility checks: all pass but Property's new-claims check, skipped for too little history
    plausibility = pd.DataFrame(
        [
            ("ALL", "extract_stalled", 1.5, 0.0, 7.0, True, "days since the newest row was recorded"),
            ("Liability", "paid", 402_118.37, 250_000.00, 610_000.00, True, "paid in the month"),
            ("Liability", "transactions", 1_204.0, 950.0, 1_480.0, True, "transaction rows that arrived"),
            ("Motor", "paid", 1_251_334.12, 900_000.00, 1_700_000.00, True, "paid in the month"),
            ("Motor", "transactions", 3_911.0, 3_100.0, 4_800.0, True, "transaction rows that arrived"),
            ("Property", "new_claims", 41.0, None, None, None, "skipped: 4 months of history, fewer than 6"),
            ("Property", "paid", 455_901.55, 300_000.00, 700_000.00, True, "paid in the month"),
        ],
        columns=["segment", "check", "observed", "lower", "upper", "passed", "detail"],
    )
    # the month's extract against the finance control totals: every line and measure within tolerance
    reconciliation = pd.DataFrame(
        [
            (line, measure, value, value + 0.4, -0.4, 100.0, True, None)
            for line, paid, case in (
                ("Liability", 402_118.37, 151_220.10),
                ("Motor", 1_251_334.12, -88_410.75),
                ("Property", 455_901.55, 20_114.90),
            )
            for measure, value in (("paid", paid), ("case_reserve_movement", case))
        ],
        columns=["segment", "measure", "extract_value", "control_value", "difference", "tolerance", "passed", "note"],
    )
    drift = pd.DataFrame(
        [
            ("claimant_age", "numeric", 0.2713, 0.1184, 0.000012, True),
            ("report_delay_days", "numeric", 0.0412, 0.0391, 0.2117, False),
            ("initial_incurred", "numeric", 0.0388, 0.0302, 0.4410, False),
            ("claim_type", "categorical", 0.0625, None, None, False),
            ("region", "categorical", 0.0101, None, None, False),
        ],
        columns=["feature", "kind", "psi", "ks_statistic", "ks_pvalue", "breached"],
    )
    ends = [dt.date(2023, m, 1) - dt.timedelta(days=1) for m in range(1, 13)] + [VALUATION]
    health = pd.DataFrame(
        {
            "run_id": [f"scheduled__{(d + dt.timedelta(days=1)).isoformat()}T00:00:00+00:00" for d in ends[1:]],
            "valuation_date": ends[1:],
            "state": ["success"] * 4 + ["failed"] + ["success"] * 5 + ["failed", "success"],
            "duration_seconds": [1812, 1755, 1920, 2004, 412, 1888, 1790, 1901, 2210, 1987, 95, 2044],
            "failed_task": [None] * 4 + ["quality_gate"] + [None] * 5 + ["ingest"] + [None],
        }
    )
    # the previous valuation differs only in IBNR (same paid), so the analysis of change is all "other"; 1,000.00
    # was expected to emerge on every origin and nothing did (A/E 0)
    expected = book["previous_reserves"][["segment", "origin"]].assign(expected_emergence=1_000.0)
    movements = analysis_of_change(book["reserves"], book["previous_reserves"], expected)
    return ReportData(
        valuation_date=VALUATION,
        status=status,
        movements=movements,
        champion_version=CHAMPION,
        publication_version=2,
        actual_vs_expected=ave,
        backtest=backtest,
        quality=quality,
        plausibility=plausibility,
        reconciliation=reconciliation,
        drift=drift,
        health=health,
        ranges=make_ranges(book["reserves"]),
        previous_valuation_date=PREVIOUS_VALUATION,
        **book,
    )


@pytest.fixture(scope="session")
def report_data() -> ReportData:
    return make_report_data()


@pytest.fixture(scope="session")
def report_pdf(report_data, tmp_path_factory):
    """The reserve report of the hand-set book, rendered once per session."""
    return render_reserve_report(report_data, tmp_path_factory.mktemp("report") / "reserve_report_2023-12-31.pdf")

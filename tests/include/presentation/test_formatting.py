"""One formatting module: every formatter, and ``n/a`` for every kind of missing value."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from include.reserving.presentation import formatting as f

MISSING = [None, math.nan, float("nan"), pd.NA, pd.NaT]


@pytest.mark.parametrize(
    "formatter",
    [f.money, f.number, f.factor, f.signed, f.signed_money, f.count, f.percent, f.pvalue, f.duration, f.day],
)
@pytest.mark.parametrize("value", MISSING)
def test_every_formatter_prints_a_missing_value_as_na(formatter, value):
    assert formatter(value) == f.NA == "n/a"


def test_money():
    assert f.money(1234567.891) == "1,234,567.89"
    assert f.money(-0.5) == "-0.50"
    assert f.money(0) == "0.00"
    assert f.money(1234567.5, digits=0) == "1,234,568"


def test_numbers_factors_signed_counts():
    assert f.number(0.08421) == "0.0842"
    assert f.number(1.04567, 3) == "1.046"
    assert f.factor(1.7333333) == "1.7333"
    assert (f.signed(0.0131), f.signed(-0.002), f.signed(0.0)) == ("+0.0131", "-0.0020", "+0.0000")
    assert (f.signed_money(92_549.51), f.signed_money(-971_208.13)) == ("+92,549.51", "-971,208.13")
    assert f.count(48213) == "48,213" and f.count(0) == "0"


def test_percent_refuses_infinite_ratios():
    assert f.percent(0.8333) == "83.3%"
    assert f.percent(-0.05) == "-5.0%"
    assert f.percent(math.inf) == f.NA


def test_pvalue_never_prints_a_misleading_zero():
    assert f.pvalue(0.2117) == "0.2117"
    assert f.pvalue(0.000012) == "<0.0001"
    assert f.pvalue(0.0) == "<0.0001"


def test_duration_as_hours_minutes_seconds():
    assert f.duration(755) == "0:12:35"
    assert f.duration(3600 * 26 + 61.4) == "26:01:01"


def test_money_total_is_exact_to_the_cent_and_skips_missing():
    assert f.money_total([0.1, 0.2, 0.3]) == 0.6
    assert f.money_total([1.25, None, math.nan, 2.0]) == 3.25
    assert f.money_total([]) == 0.0


def test_dates():
    assert f.as_date("2024-02-29") == dt.date(2024, 2, 29)
    assert f.as_date(pd.Timestamp("2024-02-29 13:00")) == dt.date(2024, 2, 29)
    assert f.day(dt.date(2024, 1, 31)) == "2024-01-31"
    assert f.is_missing(0) is False and f.is_missing("") is False and f.is_missing([1]) is False


def test_origin_labels_by_grain():
    years = [dt.date(y, 1, 1) for y in (2021, 2022, 2023)]
    quarters = [dt.date(2023, m, 1) for m in (1, 4, 7, 10)]
    months = [dt.date(2023, m, 1) for m in (1, 2, 3)]
    assert list(f.origin_labels(years).values()) == ["2021", "2022", "2023"]
    assert list(f.origin_labels(quarters).values()) == ["2023Q1", "2023Q2", "2023Q3", "2023Q4"]
    assert list(f.origin_labels(months).values()) == ["2023-01", "2023-02", "2023-03"]
    assert f.origin_labels([dt.date(2023, 1, 15)]) == {dt.date(2023, 1, 15): "2023-01-15"}
    halves = [dt.date(2022, 7, 1), dt.date(2023, 1, 1), dt.date(2023, 7, 1)]
    assert list(f.origin_labels(halves).values()) == ["2022H2", "2023H1", "2023H2"]


def test_origin_labels_by_a_known_grain():
    """With the grain known, a lone origin is labelled by it (inferred, a January origin would read as a year)."""
    january = [dt.date(2024, 1, 1)]
    assert f.origin_labels(january) == {dt.date(2024, 1, 1): "2024"}
    assert f.origin_labels(january, 3) == {dt.date(2024, 1, 1): "2024Q1"}
    assert f.origin_labels(january, 1) == {dt.date(2024, 1, 1): "2024-01"}
    assert f.origin_labels(january, 6) == {dt.date(2024, 1, 1): "2024H1"}
    # quarterly origins with a missing quarter: the grain says Q3, spacing alone would fall back to months
    gap = [dt.date(2023, 1, 1), dt.date(2023, 7, 1), dt.date(2023, 10, 1)]
    assert list(f.origin_labels(gap, 3).values()) == ["2023Q1", "2023Q3", "2023Q4"]
    assert list(f.origin_labels(gap).values()) == ["2023-01", "2023-07", "2023-10"]
    assert f.origin_label(dt.date(2023, 2, 1), 3) == "2023-02"  # off the quarter boundary: the month
    assert f.origin_label("2023-04-01", 3) == "2023Q2" and f.origin_label(dt.date(2023, 10, 1), 12) == "2023-10"

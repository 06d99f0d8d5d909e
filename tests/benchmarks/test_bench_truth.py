"""The truth benchmark's truth: a tiny hand-made book whose true unpaid is worked out by hand, and whose paid
ties to what the pipeline's own ingest sees at V."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from benchmarks.bench_truth import load_valuations, true_unpaid
from devtools.book import Book
from include.reserving import cells as cellsmod

JAN, FEB = dt.date(2024, 1, 31), dt.date(2024, 2, 29)


def _claim(claim_id, line, accident, report):
    return {
        "claim_id": claim_id,
        "policy_id": f"P-{claim_id}",
        "line_of_business": line,
        "claim_type": "PropertyDamage",
        "accident_date": dt.date.fromisoformat(accident),
        "report_date": dt.date.fromisoformat(report),
        "claimant_age": 40,
        "region": "North",
    }


def _txn(claim_id, n, date, recorded, paid, reserve, status="open"):
    return {
        "transaction_id": f"{claim_id}-{n}",
        "claim_id": claim_id,
        "transaction_date": dt.date.fromisoformat(date),
        "recorded_at": pd.Timestamp(recorded),
        "paid_amount": paid,
        "case_reserve_change": reserve,
        "status": status,
    }


@pytest.fixture(scope="module")
def book() -> Book:
    claims = pd.DataFrame(
        [
            _claim("M1", "Motor", "2024-01-10", "2024-01-12"),
            _claim("M2", "Motor", "2024-02-05", "2024-02-06"),  # accident after January's V
            _claim("L1", "Liability", "2023-12-01", "2023-12-10"),
        ]
    )
    transactions = pd.DataFrame(
        [
            _txn("M1", 0, "2024-01-12", "2024-01-12 09:00", 0.0, 400.0),
            _txn("M1", 1, "2024-01-20", "2024-01-20 10:00", 100.0, -100.0),
            _txn("M1", 2, "2024-01-25", "2024-02-03 10:00", 50.0, -50.0),  # recorded late: unpaid at January
            _txn("M1", 3, "2024-03-05", "2024-03-05 10:00", 200.0, -250.0, "closed"),
            _txn("M2", 0, "2024-02-06", "2024-02-06 09:00", 0.0, 70.0),
            _txn("M2", 1, "2024-02-10", "2024-02-10 09:00", 70.0, -70.0, "closed"),
            _txn("L1", 0, "2023-12-10", "2023-12-10 09:00", 0.0, 2_000.0),
            _txn("L1", 1, "2023-12-15", "2023-12-15 09:00", 1_000.0, -1_000.0),
            _txn("L1", 2, "2024-01-31", "2024-02-01 00:00", 10.0, -10.0),  # recorded at the first instant after V
            _txn("L1", 3, "2024-01-31", "2024-01-31 23:59:59", None, 5.0),  # reserve only: no paid
            _txn("L1", 4, "2025-06-01", "2025-06-01 09:00", 500.0, -995.0, "closed"),
        ]
    )
    months = [dt.date(2023, 12, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    exposure = pd.DataFrame(
        [
            {"line_of_business": line, "month": m, "earned_premium": 1_000.0, "exposure_units": 10.0}
            for line in ("Motor", "Liability")
            for m in months
        ]
    )
    return Book(claims=claims, transactions=transactions, exposure=exposure)


def test_true_unpaid_by_hand(book):
    jan = true_unpaid(book.claims, book.transactions, JAN).set_index("segment")
    # Motor: M1 only (M2's accident is after V); ultimate 350, paid 100 (the 50 was recorded after V)
    # Liability: ultimate 1,510; paid 1,000 (the 10 dated V was recorded after the end of V)
    assert jan.loc["Motor"].to_dict() == {"true_ultimate": 350.0, "paid": 100.0, "true_unpaid": 250.0}
    assert jan.loc["Liability"].to_dict() == {"true_ultimate": 1_510.0, "paid": 1_000.0, "true_unpaid": 510.0}
    feb = true_unpaid(book.claims, book.transactions, FEB).set_index("segment")
    assert feb.loc["Motor"].to_dict() == {"true_ultimate": 420.0, "paid": 220.0, "true_unpaid": 200.0}
    assert feb.loc["Liability"].to_dict() == {"true_ultimate": 1_510.0, "paid": 1_010.0, "true_unpaid": 500.0}


def test_truth_paid_ties_to_the_ingested_cells(book, tmp_path):
    cells = load_valuations(book, [JAN, FEB], tmp_path, progress=False)
    for v, frame in cells.items():
        latest = cellsmod.latest_diagonal(cellsmod.normalise(frame)).groupby("segment")["paid"].sum()
        truth = true_unpaid(book.claims, book.transactions, v).set_index("segment")["paid"]
        assert latest.to_dict() == truth.to_dict()


def test_the_search_verdict_compares_each_line_with_paid_chain_ladder():
    from benchmarks.bench_truth import score, search_verdict

    # two valuations, true unpaid 100 then 300 on each line (mean 200)
    rows = pd.DataFrame(
        {
            "valuation_date": ["2024-01-31", "2024-02-29"] * 2,
            "segment": ["Motor", "Motor", "Liability", "Liability"],
            "true_unpaid": [100.0, 300.0] * 2,
            # Motor: the search's model 10 and 30 off (MAE 20 / 200 = 10%), paid CL 20 and 20 off (10%): a tie holds;
            # Liability: the search's 50 off twice (25%), paid CL 40 off twice (20%): it does not
            "search": [110.0, 270.0, 150.0, 250.0],
            "paid_cl": [120.0, 280.0, 140.0, 260.0],
            "cl_model": [100.0, 300.0, 300.0, 300.0],
        }
    )
    for method in ("selected", "incurred_cl", "bf", "cape_cod"):
        rows[method] = rows["true_unpaid"]
    scores = score(rows).set_index(["segment", "method"])
    assert scores.loc[("Motor", "search"), "mae"] == pytest.approx(0.10)
    assert scores.loc[("Liability", "paid_cl"), "mae"] == pytest.approx(0.20)
    assert scores.loc[("Liability", "cl_model"), "mae"] == pytest.approx(0.50)  # 200 and 0 off
    met, text = search_verdict(scores.reset_index())
    assert not met
    assert (
        "on 1 of 2 lines (Liability not), and as the chain ladder model's (the report's model column, with the paid "
        "tail) on 1 of 2" in text
    )

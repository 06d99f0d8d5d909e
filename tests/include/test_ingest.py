"""Point-in-time ingest: hand-computed cells, tie-out, point-in-time, idempotency and fault injection."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import func, select

from devtools.book import CLAIM_COLUMNS, TRANSACTION_COLUMNS
from include.reserving import schema
from include.reserving.cells import latest_diagonal
from include.reserving.dates import parse_valuation_date
from include.reserving.ingest import ingest
from include.reserving.warehouse.cells import load_cells, swap_cells
from include.reserving.warehouse.core import insert_rows

D = dt.date
T = dt.datetime

CLAIMS = [
    # claim_id, policy_id, line, type, accident, report, age, region
    ("M1", "P1", "Motor", "PropertyDamage", D(2023, 2, 10), D(2023, 2, 20), 40, "North"),
    ("M2", "P2", "Motor", "BodilyInjury", D(2023, 4, 5), D(2023, 6, 1), 30, "South"),
    ("L1", "P3", "Liability", "BodilyInjury", D(2023, 1, 15), D(2023, 3, 1), 55, "North"),
]
TXNS = [
    # id, claim, date, recorded_at, paid, case reserve change, status
    ("t1", "M1", D(2023, 2, 25), T(2023, 2, 25, 9), 100.0, 400.0, "open"),
    ("t2", "M1", D(2023, 5, 10), T(2023, 5, 10, 9), 200.0, -200.0, None),
    ("t3", "M1", D(2023, 8, 15), T(2023, 8, 15, 9), 300.0, -200.0, "closed"),
    ("t4", "M2", D(2023, 6, 15), T(2023, 6, 15, 9), 50.0, 150.0, "open"),
    ("t5", "M2", D(2023, 7, 31), T(2023, 8, 2, 9), 25.0, 0.0, None),  # recorded two days after V
    ("t6", "L1", D(2023, 3, 10), T(2023, 3, 10, 9), 10.0, 990.0, "open"),
    ("t7", "L1", D(2023, 9, 1), T(2023, 9, 1, 9), 500.0, -500.0, None),
]


@pytest.fixture
def book(warehouse):
    insert_rows(warehouse, schema.claims, pd.DataFrame(CLAIMS, columns=CLAIM_COLUMNS))
    insert_rows(warehouse, schema.claim_transactions, pd.DataFrame(TXNS, columns=TRANSACTION_COLUMNS))
    exposure = [("Motor", D(2023, m, 1), 1000.0, 10.0) for m in range(1, 10)]
    insert_rows(
        warehouse,
        schema.earned_exposure,
        pd.DataFrame(exposure, columns=["line_of_business", "month", "earned_premium", "exposure_units"]),
    )
    return warehouse


def _cells_dict(cells: pd.DataFrame) -> dict:
    return {
        (r.segment, r.origin, r.development): (r.paid, r.incurred, r.reported_count, r.closed_count)
        for r in cells.itertuples()
    }


def test_cells_at_a_month_end_that_is_not_a_quarter_end(book):
    result = ingest(book, "2023-07-31")
    cells = load_cells(book, "2023-07-31")
    # evaluation dates step back from V by a quarter: Jul 31, Apr 30, Jan 31 -> ages 7, 4, 1 for Q1 origins
    assert _cells_dict(cells) == {
        ("Liability", D(2023, 1, 1), 1): (0.0, 0.0, 0, 0),
        ("Liability", D(2023, 1, 1), 4): (10.0, 1000.0, 1, 0),
        ("Liability", D(2023, 1, 1), 7): (10.0, 1000.0, 1, 0),
        ("Motor", D(2023, 1, 1), 1): (0.0, 0.0, 0, 0),
        ("Motor", D(2023, 1, 1), 4): (100.0, 500.0, 1, 0),
        ("Motor", D(2023, 1, 1), 7): (300.0, 500.0, 1, 0),
        ("Motor", D(2023, 4, 1), 1): (0.0, 0.0, 0, 0),
        ("Motor", D(2023, 4, 1), 4): (50.0, 200.0, 1, 0),
    }
    motor_q1 = cells[(cells.segment == "Motor") & (cells.origin == D(2023, 1, 1))]
    assert set(motor_q1.earned_premium) == {3000.0} and set(motor_q1.exposure) == {30.0}
    assert cells[cells.segment == "Liability"].earned_premium.isna().all()
    assert (result.claim_count, result.transaction_count, result.cell_count) == (3, 4, 8)
    assert result.paid_total == 360.0


def test_quarter_end_ages_and_closures(book):
    ingest(book, "2023-09-30")
    cells = _cells_dict(load_cells(book, "2023-09-30"))
    assert cells[("Motor", D(2023, 1, 1), 9)] == (600.0, 600.0, 1, 1)  # 100+400+200-200+300-200
    assert cells[("Motor", D(2023, 4, 1), 6)] == (75.0, 225.0, 1, 0)
    assert ("Motor", D(2023, 1, 1), 3) in cells and ("Motor", D(2023, 1, 1), 6) in cells


def test_restated_basis_includes_late_recorded_rows(book):
    ingest(book, "2023-07-31", basis="restated")
    cells = _cells_dict(load_cells(book, "2023-07-31", basis="restated"))
    assert cells[("Motor", D(2023, 4, 1), 4)] == (75.0, 225.0, 1, 0)
    # the as-recorded partition is a different key and stays absent
    with pytest.raises(LookupError, match="run ingest first"):
        load_cells(book, "2023-07-31")


def test_latest_diagonal_ties_to_transactions_to_the_cent(book):
    ingest(book, "2023-07-31")
    cells = load_cells(book, "2023-07-31")
    t = schema.claim_transactions
    with book.connect() as conn:
        expected = conn.execute(
            select(func.sum(t.c.paid_amount)).where(
                t.c.transaction_date <= D(2023, 7, 31), t.c.recorded_at < T(2023, 8, 1)
            )
        ).scalar_one()
    assert round(latest_diagonal(cells)["paid"].sum(), 2) == round(float(expected), 2) == 360.0


def test_snapshot_claims_features(book):
    ingest(book, "2023-07-31")
    sc = schema.snapshot_claims
    with book.connect() as conn:
        rows = {r.claim_id: r for r in conn.execute(select(sc).where(sc.c.valuation_date == D(2023, 7, 31)))}
    assert set(rows) == {"M1", "M2", "L1"}
    m1 = rows["M1"]
    assert (m1.report_delay_days, m1.paid_to_date, m1.incurred_to_date, m1.initial_incurred) == (10, 300, 500, 500)
    assert not m1.is_closed
    assert rows["L1"].report_delay_days == 45


def test_later_data_never_changes_a_past_valuation(book):
    first = ingest(book, "2023-07-31")
    before = load_cells(book, "2023-07-31")
    # later: new claims, new transactions, a back-dated transaction recorded after V
    insert_rows(
        book,
        schema.claims,
        pd.DataFrame(
            [("M3", "P4", "Motor", "PropertyDamage", D(2023, 7, 1), D(2023, 8, 3), 22, "North")], columns=CLAIM_COLUMNS
        ),
    )
    insert_rows(
        book,
        schema.claim_transactions,
        pd.DataFrame(
            [
                ("t8", "M1", D(2023, 6, 30), T(2023, 9, 5), 999.0, 0.0, None),
                ("t9", "M3", D(2023, 8, 10), T(2023, 8, 10), 70.0, 30.0, "open"),
            ],
            columns=TRANSACTION_COLUMNS,
        ),
    )
    again = ingest(book, "2023-07-31")
    pd.testing.assert_frame_equal(before, load_cells(book, "2023-07-31"))
    assert again.cells_hash == first.cells_hash


def test_rerun_is_idempotent_and_a_killed_swap_leaves_the_previous_state(book):
    ingest(book, "2023-07-31")
    clean = load_cells(book, "2023-07-31")
    # a correction recorded before V arrives; the retried ingest is killed between staging and swap
    insert_rows(
        book,
        schema.claim_transactions,
        pd.DataFrame([("t10", "L1", D(2023, 7, 1), T(2023, 7, 1), 40.0, -40.0, None)], columns=TRANSACTION_COLUMNS),
    )

    def killed():
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        ingest(book, "2023-07-31", before_swap=killed)
    pd.testing.assert_frame_equal(clean, load_cells(book, "2023-07-31"))

    retried = ingest(book, "2023-07-31")
    once_more = ingest(book, "2023-07-31")
    assert retried.cells_hash == once_more.cells_hash
    cells = load_cells(book, "2023-07-31")
    assert _cells_dict(cells)[("Liability", D(2023, 1, 1), 7)] == (50.0, 1000.0, 1, 0)
    with book.connect() as conn:
        for table in (schema.triangle_cells_staging,):
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(schema.snapshot_claims)).scalar_one() == 3
        assert conn.execute(select(func.count()).select_from(schema.snapshots)).scalar_one() == 1
    assert len(cells) == 8


def test_another_runs_staged_cells_are_left_alone_and_a_swap_never_takes_in_fewer_rows(book):
    """Two runs ingesting the same month at once: one's start-up clean-up must not take the other's staged cells;
    and if staged rows vanish all the same, the swap fails and the month's cells stay as they were."""
    ingest(book, "2023-07-31", run_id="run-a")
    clean = load_cells(book, "2023-07-31")
    other = clean.assign(valuation_date=D(2023, 7, 31), basis="as_recorded", load_id="x" * 23 + "-other-run")
    insert_rows(book, schema.triangle_cells_staging, other)

    again = ingest(book, "2023-07-31", run_id="run-b")
    assert again.cell_count == len(clean) == 8
    with book.connect() as conn:
        staged = conn.execute(select(schema.triangle_cells_staging.c.load_id)).scalars().all()
    assert staged == ["x" * 23 + "-other-run"] * 8  # the other run's rows, untouched; run-b's own swapped in

    # staged rows that vanish all the same (8 expected, 0 found): the swap raises and its transaction rolls back
    key = {"valuation_date": D(2023, 7, 31), "basis": "as_recorded"}
    with pytest.raises(RuntimeError, match="0 of 8 staged rows"), book.begin() as conn:
        swap_cells(conn, key, "no-such-load", expected=8)
    pd.testing.assert_frame_equal(clean, load_cells(book, "2023-07-31"))


@pytest.mark.parametrize("bad", ["2023-07-30", "2023-02-28x", "31/07/2023"])
def test_valuation_date_must_be_a_month_end(bad):
    with pytest.raises(ValueError, match="valuation_date"):
        parse_valuation_date(bad)

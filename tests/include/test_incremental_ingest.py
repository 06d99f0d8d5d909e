"""Incremental ingest: the cells, increments and claim snapshot derived from the previous month end's plus the rows
recorded since equal the full recomputation exactly, month after month; every broken premise takes the full path.

A small synthetic book with its late recordings, plus corrections (a payment reversed and re-posted months later,
dated on the original day), rows dated after the month end they were recorded by, and rows of an earlier month on
claims reported later: every part of "the rows of V not in P" is exercised. What the gate stored for a month end is
written through the gate's own store with the count the gate observes (its GX run is tested in tests/include/quality;
the DAG runs of consecutive months in tests/integration take the incremental path after the real gate).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import pandas as pd
import pytest
from sqlalchemy import select

from devtools.book import load_book
from devtools.synth import BookSpec, generate_book
from include.reserving import schema
from include.reserving.dates import add_months, end_of_day
from include.reserving.ingest import ingest
from include.reserving.quality.report import CheckResult, QualityReport
from include.reserving.quality.suite import EXTRACT, ROW_COUNT, ROW_COUNT_CHECK, SUITE_VERSION
from include.reserving.stages.input import drift_report_at
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import insert_rows, read_frame
from include.reserving.warehouse.quality import store_results, transactions_recorded_by

FIRST = dt.date(2023, 1, 31)
MONTHS = [add_months(FIRST, i) for i in range(24)]  # 2023-01-31 .. 2024-12-31
AS_RECORDED = "as_recorded"


def _book():
    book = generate_book(BookSpec(claims=300, start="2021-01", end="2024-12", seed=17, control_totals=False))
    txns, claims = book.transactions, book.claims
    day = pd.Timestamp
    extra = []
    payments = txns[(txns.paid_amount > 0) & txns.transaction_date.between(day("2023-01-01"), day("2024-09-30"))]
    for i, row in enumerate(payments.iloc[::40].head(15).itertuples()):
        # a correction: the payment reversed and re-posted at 90%, dated on the original day, recorded months later
        later = row.recorded_at + pd.Timedelta(days=35 + 9 * i)
        repost = round(row.paid_amount * 0.9, 2)
        extra.append((f"X{i}a", row.claim_id, row.transaction_date, later, -row.paid_amount, 0.0, "open"))
        extra.append((f"X{i}b", row.claim_id, row.transaction_date, later, repost, 0.0, "open"))
    reported = claims[claims.report_date.between(day("2023-03-01"), day("2024-11-01"))]
    for i, claim in enumerate(reported.iloc[::50].head(3).itertuples()):
        # dated and recorded a month before the claim's report: in the book only from the report's month end
        when = claim.report_date - pd.Timedelta(days=31)
        extra.append((f"Y{i}", claim.claim_id, when, when + pd.Timedelta(hours=9), 120.0, 380.0, "open"))
    for i, claim in enumerate(claims[claims.report_date < day("2023-01-01")].iloc[::60].head(3).itertuples()):
        # recorded at the end of a month, dated in the next (a defect the gate names; ingest must still be exact)
        recorded = day(2023, 5 + 3 * i, 28, 9)
        extra.append((f"Z{i}", claim.claim_id, day(2023, 6 + 3 * i, 3), recorded, 55.5, -55.5, "closed"))
    book.transactions = pd.concat([txns, pd.DataFrame(extra, columns=txns.columns)], ignore_index=True)
    return book


@pytest.fixture(scope="module")
def synthetic_book():
    return _book()


@pytest.fixture
def loaded(warehouse, synthetic_book):
    load_book(warehouse, synthetic_book)
    return warehouse


def record_gate(engine, valuation_date, success=True, basis=AS_RECORDED):
    """What the gate stores for (V, basis): its verdict and the rows of the extract it counted (element_count)."""
    n = transactions_recorded_by(engine, valuation_date)
    check = CheckResult(ROW_COUNT_CHECK, EXTRACT, ROW_COUNT, None, "rows", success, unexpected_count=n, element_count=n)
    store_results(engine, QualityReport(valuation_date, basis, SUITE_VERSION, [check], row_count=n, claim_count=None))


def state(engine, valuation_date, basis=AS_RECORDED, drift=False):
    """Everything ingest wrote for (V, basis): cells, increments, the snapshot's claims, the snapshot row; with
    ``drift`` also the drift report read from that snapshot (every feature's counts, PSI and KS)."""
    key = {"valuation_date": valuation_date, "basis": basis}

    def rows(table, order):
        where = [table.c[k] == v for k, v in key.items()]
        return read_frame(engine, select(table).where(*where).order_by(*[table.c[c] for c in order]))

    snap = rows(schema.snapshots, ["valuation_date"]).drop(columns="run_id")
    found = {
        "cells": load_cells(engine, valuation_date, basis),
        "increments": rows(schema.cell_increments, ["segment", "accident_month", "month"]),
        "claims": rows(schema.snapshot_claims, ["claim_id"]),
        "snapshot": snap,
    }
    if drift:
        report = drift_report_at(engine, valuation_date, basis, psi_threshold=0.2, min_sample=5)
        found["drift"] = pd.DataFrame(
            [(f.feature, f.reference_count, f.current_count, f.psi, f.ks_statistic) for f in report.features]
        )
    return found


def assert_same(actual, expected):
    for name in expected:
        pd.testing.assert_frame_equal(actual[name], expected[name], check_exact=True, obj=name)


def full_then_incremental(engine, valuation_date, drift=False, **kwargs):
    """V ingested in full (the reference), then again by the default path: (result, what each wrote)."""
    ingest(engine, valuation_date, incremental=False, **kwargs)
    expected = state(engine, valuation_date, drift=drift)
    result = ingest(engine, valuation_date, **kwargs)
    return result, state(engine, valuation_date, drift=drift), expected


def test_24_month_ends_incremental_equals_full(loaded):
    """Each month end from the previous one's incremental partition: every cell to the cent, every snapshot row,
    every increment equal to the full recomputation; a restated backfill in between takes the full path."""
    started = time.perf_counter()
    paths = []
    for i, v in enumerate(MONTHS):
        # drift reads the snapshot: its report (every sixth month, to keep the test short) is the same too
        result, actual, expected = full_then_incremental(loaded, v, drift=i % 6 == 5)
        assert_same(actual, expected)
        assert ("drift" in actual) == (i % 6 == 5)
        paths.append(result.path)
        record_gate(loaded, v)
        if i == 11:  # a restated backfill of the year end: full path, and the as-recorded chain goes on
            restated = ingest(loaded, v, basis="restated")
            assert restated.path == "full"
    assert paths == ["full"] + ["incremental"] * 23
    # the book moved: late rows and corrections landed in earlier cells of later triangles
    first, last = state(loaded, MONTHS[0]), state(loaded, MONTHS[-1])
    assert len(last["claims"]) > len(first["claims"]) > 100
    total_paid = read_frame(
        loaded,
        select(schema.claim_transactions.c.paid_amount).where(
            schema.claim_transactions.c.transaction_date <= MONTHS[-1],
            schema.claim_transactions.c.recorded_at < end_of_day(MONTHS[-1]),
        ),
    )
    reported = last["claims"]
    assert round(reported["paid_to_date"].sum(), 2) == pytest.approx(
        round(total_paid["paid_amount"].sum(), 2), abs=0.005
    )
    assert time.perf_counter() - started < 60


def test_a_late_correction_lands_in_its_own_earlier_cell(warehouse):
    """Hand-computed: a payment of 100 dated 2024-01-10 is reversed in March (recorded 2024-03-05, dated 01-10): the
    January cell as at 2024-02-29 holds 100, as at 2024-03-31 zero, by the incremental path."""
    claims = pd.DataFrame(
        [("C1", "P1", "Motor", "BodilyInjury", dt.date(2024, 1, 2), dt.date(2024, 1, 5), 40, "North")],
        columns=["claim_id", "policy_id", "line_of_business", "claim_type", "accident_date", "report_date",
                 "claimant_age", "region"],
    )  # fmt: skip
    txns = [
        ("T1", "C1", dt.date(2024, 1, 5), dt.datetime(2024, 1, 5, 9), 0.0, 500.0, "open"),
        ("T2", "C1", dt.date(2024, 1, 10), dt.datetime(2024, 1, 10, 9), 100.0, -100.0, "open"),
        ("T3", "C1", dt.date(2024, 1, 10), dt.datetime(2024, 3, 5, 9), -100.0, 100.0, "open"),
        ("T4", "C1", dt.date(2024, 3, 20), dt.datetime(2024, 3, 20, 9), 0.0, -500.0, "closed"),
    ]
    insert_rows(warehouse, schema.claims, claims)
    insert_rows(
        warehouse,
        schema.claim_transactions,
        pd.DataFrame(txns, columns=["transaction_id", "claim_id", "transaction_date", "recorded_at", "paid_amount",
                                    "case_reserve_change", "status"]),
    )  # fmt: skip
    for v in (dt.date(2024, 1, 31), dt.date(2024, 2, 29)):
        ingest(warehouse, v, origin_months=1, development_months=1)
        record_gate(warehouse, v)
    result = ingest(warehouse, dt.date(2024, 3, 31), origin_months=1, development_months=1)
    assert result.path == "incremental"
    cells = load_cells(warehouse, dt.date(2024, 3, 31))
    got = {r.development: (r.paid, r.incurred, r.closed_count) for r in cells.itertuples()}
    assert got == {1: (0.0, 500.0, 0), 2: (0.0, 500.0, 0), 3: (0.0, 0.0, 1)}
    february = load_cells(warehouse, dt.date(2024, 2, 29))
    assert {r.development: r.paid for r in february.itertuples()} == {1: 100.0, 2: 100.0}
    snap = state(warehouse, dt.date(2024, 3, 31))["claims"].iloc[0]
    assert (snap.paid_to_date, snap.incurred_to_date, snap.net_closures, bool(snap.is_closed)) == (0.0, 0.0, 1, True)
    assert snap.initial_incurred == 500.0  # T1 and T2 within 30 days of the report; T3 dated in the window too


# --- broken premises: the full path, equal to it -------------------------------------------------------------------

P, V = dt.date(2024, 5, 31), dt.date(2024, 6, 30)


def _killed():
    raise KeyboardInterrupt("task killed")


def _fail_gate(engine):
    record_gate(engine, P, success=False)


def _killed_first_ingest(engine):
    with pytest.raises(KeyboardInterrupt):
        ingest(engine, P, before_swap=_killed)


def _rewritten_history(engine):
    # a row recorded (back-dated) by P appears after P's gate
    row = ("R1", None, dt.date(2024, 5, 2), dt.datetime(2024, 5, 2, 9), 77.0, 0.0, "open")
    claim = read_frame(engine, select(schema.claims.c.claim_id).where(schema.claims.c.report_date < P)).iloc[0, 0]
    insert_rows(engine, schema.claim_transactions, [dict(zip(
        ["transaction_id", "claim_id", "transaction_date", "recorded_at", "paid_amount", "case_reserve_change",
         "status"], (row[0], claim, *row[2:]), strict=True))])  # fmt: skip


def _late_claim(engine):
    # a claim reported by P enters the claims table after P's ingest
    insert_rows(engine, schema.claims, [{
        "claim_id": "LATE1", "policy_id": "P9", "line_of_business": "Motor", "claim_type": "PropertyDamage",
        "accident_date": dt.date(2024, 4, 1), "report_date": dt.date(2024, 5, 1), "claimant_age": 33,
        "region": "North"}])  # fmt: skip


def _restated_only(engine):
    ingest(engine, P, basis="restated")
    record_gate(engine, P, basis="restated")


def _rerun_killed(engine):
    with pytest.raises(KeyboardInterrupt):
        ingest(engine, P, before_swap=_killed, run_id="rerun")


# what happened to P -> (P ingested and gated clean first, the path V takes, what the log says); the faults that
# change the source come last (each case starts from empty pipeline tables, not from a fresh source)
CASES = {
    "a killed re-run of P (its clean partition stays)": (_rerun_killed, True, "incremental", f"{P} was ingested"),
    "P failed its gate": (_fail_gate, True, "full", f"{P} failed its quality gate"),
    "P killed mid-ingest": (_killed_first_ingest, False, "full", f"{P} was not ingested on basis as_recorded"),
    "P on another basis only": (_restated_only, False, "full", f"{P} was not ingested on basis as_recorded"),
    "rows recorded by P added since": (_rewritten_history, True, "full", f"the transactions recorded by {P} changed"),
    "claims reported by P added since": (_late_claim, True, "full", f"the claims reported by {P} changed"),
}
PIPELINE_TABLES = ("snapshots", "snapshot_claims", "triangle_cells", "triangle_cells_staging", "cell_increments")


def test_a_broken_premise_takes_the_full_path_and_equals_it(loaded, caplog):
    """Each case on one warehouse (emptied of what ingest and the gate wrote): the path V takes, the log's reason,
    and V's partition equal to the full recomputation."""
    for case, (make, clean_first, path, reason) in CASES.items():
        with loaded.begin() as conn:
            for name in (*PIPELINE_TABLES, "quality_results"):
                conn.execute(schema.metadata.tables[name].delete())
        if clean_first:
            ingest(loaded, P)
            record_gate(loaded, P)
        make(loaded)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="include.reserving.ingest"):
            result, actual, expected = full_then_incremental(loaded, V)
        assert result.path == path, case
        said = [r.getMessage() for r in caplog.records if f"{path} path (" in r.getMessage()]
        assert len(said) == 1 + (path == "full") and reason in said[-1], (case, said)
        assert_same(actual, expected)
        if case == "P killed mid-ingest":  # its staged rows wait for P's next try (its scope), which clears them
            assert not read_frame(loaded, select(schema.triangle_cells_staging.c.load_id)).empty
            ingest(loaded, P)
            assert read_frame(loaded, select(schema.triangle_cells_staging.c.load_id)).empty


def test_an_older_warehouse_is_migrated_and_its_partitions_take_the_full_path(loaded, caplog):
    """A warehouse from before incremental ingest: create_all adds the snapshot's net closures and the index on
    recorded_at (once); a month end ingested then (no increments kept) makes the next one take the full path."""
    with loaded.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_claim_transactions_recorded_at")
        conn.exec_driver_sql("ALTER TABLE snapshot_claims DROP COLUMN net_closures")
    assert schema.create_all(loaded) == [
        "snapshot_claims.net_closures added",
        "claim_transactions: index on recorded_at created",
    ]
    assert schema.create_all(loaded) == []
    ingest(loaded, P)
    record_gate(loaded, P)
    with loaded.begin() as conn:  # P as an older version left it: no increments, no net closures
        conn.execute(schema.cell_increments.delete())
        conn.execute(schema.snapshot_claims.update().values(net_closures=None))
    with caplog.at_level(logging.INFO, logger="include.reserving.ingest"):
        result, actual, expected = full_then_incremental(loaded, V)
    assert result.path == "full"
    assert f"{P}'s stored increments (0 transactions, 0 claims) do not tie to its snapshot" in caplog.text
    assert_same(actual, expected)

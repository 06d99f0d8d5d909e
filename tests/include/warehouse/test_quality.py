"""quality_results on SQLite and PostgreSQL: stored per (V, basis), replaced on re-run, read back for next month's
gate and for the report."""

import datetime as dt
import json

from sqlalchemy import select

from include.reserving import schema
from include.reserving.quality.decisions import volume_baseline
from include.reserving.quality.runner import previous_gate
from include.reserving.quality.suite import ROW_COUNT_CHECK, SUITE_VERSION
from include.reserving.warehouse import quality as store
from include.reserving.warehouse.core import make_engine
from tests.include.quality.book import V, defective_book, gate, load


def test_results_are_stored_and_replaced_on_rerun(warehouse, tmp_path):
    load(warehouse, *defective_book("negative_age"))
    report = gate(warehouse, tmp_path)
    report.run_id = "run-1"
    n = store.store_results(warehouse, report)
    report.run_id = "run-2"
    assert store.store_results(warehouse, report) == n == len(report.checks)
    t = schema.quality_results
    with warehouse.connect() as conn:
        rows = conn.execute(select(t).where(t.c.valuation_date == V, t.c.basis == "as_recorded")).mappings().all()
    assert len(rows) == n and {r["run_id"] for r in rows} == {"run-2"}
    failed = [r for r in rows if not r["success"]]
    assert [(r["check_key"], r["unexpected_count"], json.loads(r["examples"])) for r in failed] == [
        ("snapshot_claims.claimant_age.between", 1, [-3])
    ]
    assert all(r["gate_success"] is False and r["suite_version"] == SUITE_VERSION for r in rows)
    frame = store.results_frame(warehouse, V, "as_recorded")  # the reserve report's section
    assert list(frame.columns) == ["expectation", "column", "success", "unexpected_count"] and len(frame) == n
    assert store.results_frame(warehouse, V, "restated").empty


def test_previous_gate_reads_the_previous_month_ends_stored_result(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine)
    feb = dt.date(2024, 2, 29)
    assert previous_gate(engine, feb, "as_recorded") is None  # never validated
    report = gate(engine, tmp_path)
    row_count = next(c for c in report.checks if c.key == ROW_COUNT_CHECK)
    assert report.row_count == row_count.element_count == 5
    store.store_results(engine, report)
    previous = previous_gate(engine, feb, "as_recorded")
    assert (previous.valuation_date, previous.success, previous.row_count) == (V, True, 5)
    assert volume_baseline(previous) == 5  # the month after V
    assert previous_gate(engine, dt.date(2024, 3, 31), "as_recorded") is None  # V is two months back
    assert previous_gate(engine, feb, "restated") is None  # another basis
    assert previous_gate(engine, V, "as_recorded") is None  # V itself is not its own baseline
    empty = gate(engine, tmp_path)
    next(c for c in empty.checks if c.key == ROW_COUNT_CHECK).element_count = 0
    store.store_results(engine, empty)
    assert volume_baseline(previous_gate(engine, feb, "as_recorded")) is None  # an empty month: none


def test_transactions_recorded_by_the_end_of_a_day(warehouse):
    load(warehouse)
    assert store.transactions_recorded_by(warehouse, dt.date(2023, 12, 31)) == 3  # T1-T3
    assert store.transactions_recorded_by(warehouse, V) == 5  # T4 at 23:59 on V counts
    assert store.check_row(warehouse, V, "as_recorded", ROW_COUNT_CHECK) is None

"""The gate end to end on SQLite and PostgreSQL: a clean book passes, each defect fails exactly its check."""

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from functools import partial

import pandas as pd
import pytest
from sqlalchemy import inspect, text

from include.reserving import schema
from include.reserving.config import Settings
from include.reserving.quality import decisions
from include.reserving.quality.report import QualityGateError, raise_for_failures
from include.reserving.quality.runner import previous_gate, run_quality_gate
from include.reserving.quality.suite import build_checks
from include.reserving.warehouse import quality as store
from include.reserving.warehouse.core import insert_rows, make_engine
from tests.conftest import PROJECT
from tests.include.quality.book import (
    DEFECTS,
    SETTINGS,
    TRANSACTION_COLUMNS,
    V,
    claims,
    defective_book,
    gate,
    load,
    snapshot,
    transactions,
    url_of,
)


def test_clean_extract_passes_and_keeps_artifacts(warehouse, tmp_path):
    load(warehouse)
    report = gate(warehouse, tmp_path, previous_row_count=6)
    assert report.success, report.summary()
    raise_for_failures(report)  # no exception
    assert report.row_count == 5  # T1-T5: T6 and T7 were recorded after V
    assert report.claim_count == 3
    results = json.loads((tmp_path / "artifacts" / "validation_results.json").read_text())
    assert results["success"] is True and len(results["validations"]) == 4
    index = tmp_path / "artifacts" / "data_docs" / "index.html"
    assert index.exists() and "reserving_snapshot_claims" in index.read_text()


# --- defects (book.DEFECTS) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_the_gate_and_is_named_with_its_count(sqlite_url, tmp_path, defect):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine, *defective_book(defect))
    report = gate(engine, tmp_path)
    _, key, count, example = DEFECTS[defect]
    assert [c.key for c in report.failures] == [key], report.summary()
    assert report.failures[0].unexpected_count == count
    with pytest.raises(QualityGateError) as raised:
        raise_for_failures(report)
    line = next(line for line in str(raised.value).splitlines() if key in line)
    assert f": {count} bad rows" in line and example in line, line
    assert raised.value.report is report


def test_catalogue_of_defects_in_one_book(warehouse, tmp_path):
    """Every defect at once, on SQLite and PostgreSQL: each check fails with exactly its own rows."""
    load(warehouse, *defective_book(*DEFECTS))
    report = gate(warehouse, tmp_path)
    expected: dict[str, int] = {}
    for _, key, count, _ in DEFECTS.values():
        expected[key] = expected.get(key, 0) + count
    assert {c.key: c.unexpected_count for c in report.failures} == expected, report.summary()
    ages = next(c for c in report.failures if c.key == "snapshot_claims.claimant_age.between")
    assert sorted(ages.examples) == [-3, 130]
    message = report.summary()
    for key, count in expected.items():
        assert f"{key} " in message and f": {count} bad rows" in message


def test_a_failed_gate_logs_its_summary_and_no_traceback(sqlite_url, tmp_path, caplog, capfd):
    """Data Docs rendering of the failed custom checks once logged a KeyError traceback an operator took for the
    cause; the gate's own summary is all a failed gate logs."""
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine, *defective_book(*DEFECTS))
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        report = gate(engine, tmp_path)
    printed = capfd.readouterr()
    assert len(report.failures) == 8, report.summary()
    logged = caplog.text + printed.out + printed.err
    assert "transactions_extract.transaction_id.unique" in logged  # the summary names the failed checks
    assert "Traceback" not in logged and "KeyError" not in logged, logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.records


def test_non_finite_amount_fails_the_bounds_check(warehouse, tmp_path):
    load(warehouse)
    # PostgreSQL numeric holds NaN; SQLite stores NaN as NULL, so it gets infinity (9e999 overflows to inf).
    bad = "'NaN'" if warehouse.dialect.name == "postgresql" else "9e999"
    with warehouse.begin() as conn:
        conn.execute(text(f"UPDATE claim_transactions SET paid_amount = {bad} WHERE transaction_id = 'T4'"))
    report = gate(warehouse, tmp_path)
    assert [(c.key, c.unexpected_count) for c in report.failures] == [("transactions_extract.paid_amount.bounds", 1)]
    assert report.failures[0].examples in (["nan"], ["inf"])


def test_empty_extract_gives_a_clear_message(warehouse, tmp_path):
    load(warehouse, transactions_frame=transactions().iloc[0:0], snapshot_frame=snapshot(claims()).iloc[0:0])
    report = gate(warehouse, tmp_path, previous_row_count=5)
    assert report.row_count == 0 and report.claim_count == 0
    with pytest.raises(QualityGateError) as raised:
        raise_for_failures(report)
    message = str(raised.value)
    assert "transactions_extract.row_count.nonzero" in message
    assert "observed 0 rows (the extract is EMPTY)" in message
    assert "snapshot_claims.row_count.nonzero" in message
    assert "transactions_extract.row_count.volume" in message
    assert "Traceback" not in message


def test_missing_column_gives_a_clear_message(warehouse, tmp_path):
    load(warehouse)
    with warehouse.begin() as conn:
        conn.execute(text("ALTER TABLE claim_transactions DROP COLUMN paid_amount"))
    report = gate(warehouse, tmp_path)
    failed = {c.key: c for c in report.failures}
    assert failed["claim_transactions.columns"].examples == ["paid_amount"]
    assert "MISSING columns ['paid_amount']" in failed["claim_transactions.columns"].explain()
    for key in (
        "claim_transactions.paid_amount.type",
        "transactions_extract.paid_amount.not_null",
        "transactions_extract.paid_amount.bounds",
        "transactions_extract.claim_date_amount.unique",
    ):
        assert "paid_amount is missing" in failed[key].error, failed[key]
    assert set(failed) == {
        "claim_transactions.columns",
        "claim_transactions.paid_amount.type",
        "transactions_extract.paid_amount.not_null",
        "transactions_extract.paid_amount.bounds",
        "transactions_extract.claim_date_amount.unique",
    }
    assert report.row_count == 5  # the rest of the extract was still judged


def test_missing_source_table_stops_the_gate(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    schema.claims.drop(engine)
    with pytest.raises(QualityGateError, match="source table claims does not exist in the warehouse"):
        gate(engine, tmp_path)
    assert not inspect(engine).get_view_names()


def test_volume_anomaly_against_the_previous_valuation(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine)
    assert gate(engine, tmp_path, previous_row_count=10).success  # 5 is within 50% of 10
    report = gate(engine, tmp_path, previous_row_count=11)  # needs at least 5.5
    assert [c.key for c in report.failures] == ["transactions_extract.row_count.volume"]
    assert "between 6 and 16" in report.failures[0].explain() and "observed 5 rows" in report.failures[0].explain()


def test_restated_basis_reads_latest_knowledge(warehouse, tmp_path):
    book_claims = claims()
    load(warehouse, book_claims, snapshot_frame=snapshot(book_claims, basis="restated"))
    report = gate(warehouse, tmp_path, basis="restated", folder="restated")
    assert report.success, report.summary()
    assert report.row_count == 6  # T6, recorded after V, is known now; T7 is dated after V
    missing_snapshot = gate(warehouse, tmp_path)  # no as-recorded snapshot was written for V
    assert [c.key for c in missing_snapshot.failures] == ["snapshot_claims.row_count.nonzero"]


def test_an_unknown_basis_is_refused(sqlite_url, tmp_path):
    with pytest.raises(ValueError, match="basis 'latest' is invalid"):
        run_quality_gate(sqlite_url, V, "latest", SETTINGS, tmp_path)


# --- the run's views -----------------------------------------------------------------------------------------------


def test_views_left_by_a_killed_run_are_dropped_and_the_runs_own_go(warehouse, tmp_path):
    load(warehouse)
    with warehouse.begin() as conn:  # as a run killed between creating its views and dropping them leaves them
        conn.exec_driver_sql('CREATE VIEW "quality_transactions_extract_0123456789ab" AS SELECT 1 AS x')
        conn.exec_driver_sql('CREATE VIEW "quality_snapshot_claims_0123456789ab" AS SELECT 1 AS x')
        conn.exec_driver_sql('CREATE VIEW "quality_dashboard" AS SELECT 1 AS x')  # not the gate's
    assert gate(warehouse, tmp_path).success
    assert inspect(warehouse).get_view_names() == ["quality_dashboard"]


# The child runs the gate and SIGKILLs itself when Great Expectations first reads one of the run's views: they are
# committed, and the run dies before its own clean-up.
KILLED_GATE = """
import os, signal, sys
from pathlib import Path
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "before_cursor_execute")
def _die(conn, cursor, statement, parameters, context, executemany):
    if "quality_transactions_extract_" in statement and not statement.lstrip().upper().startswith("CREATE"):
        os.kill(os.getpid(), signal.SIGKILL)

from tests.include.quality.book import V, SETTINGS
from include.reserving.quality.runner import run_quality_gate

run_quality_gate(sys.argv[1], V, "as_recorded", SETTINGS, Path(sys.argv[2]))
"""


@pytest.mark.postgres
def test_a_gate_killed_with_its_views_in_place_is_cleaned_up_by_the_next_run(pg_url, tmp_path):
    engine = make_engine(pg_url)
    schema.create_all(engine)
    load(engine)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_GATE, pg_url, str(tmp_path / "killed")],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -9, child.stderr[-3000:]
    left = sorted(inspect(engine).get_view_names())
    assert [name.rsplit("_", 1)[0] for name in left] == ["quality_snapshot_claims", "quality_transactions_extract"]

    report = gate(engine, tmp_path, previous_row_count=6)
    assert report.success and report.row_count == 5, report.summary()
    assert inspect(engine).get_view_names() == []
    engine.dispose()


# --- the generator's defect knobs, end to end (synth -> ingest -> gate) --------------------------------------------

# Late enough that every claim is reported and every row recorded by V: each injected defect is in the extract.
LATE_V = dt.date(2060, 12, 31)
# Defects knob -> (check key, bad rows GX counts): a duplicated id or double posting makes both rows bad.
SYNTH_DEFECTS = {
    "bad_ages": ("snapshot_claims.claimant_age.between", 1),
    "null_paid": ("transactions_extract.paid_amount.not_null", 1),
    "unknown_types": ("snapshot_claims.claim_type.allowed", 1),
    "duplicate_ids": ("transactions_extract.transaction_id.unique", 2),
    "future_dated": ("transactions_extract.transaction_date.not_after_valuation", 1),
    "accident_after_report": ("snapshot_claims.report_date.not_before_accident", 1),
    "duplicate_rows": ("transactions_extract.claim_date_amount.unique", 2),
}


def _synth_gate(engine, tmp_path, defects):
    from devtools import synth
    from devtools.book import load_book
    from include.reserving import ingest

    spec = synth.BookSpec(claims=400, start="2020-01", end="2021-12", seed=11, defects=defects)
    load_book(engine, synth.generate_book(spec), reset=True)
    ingest.ingest(engine, LATE_V, "as_recorded")
    return run_quality_gate(url_of(engine), LATE_V, "as_recorded", Settings(), tmp_path / "synth")


def test_generator_defect_catalogue(warehouse, tmp_path):
    """A clean synthetic book passes; with every defect knob set, each check fails with exactly the injected rows."""
    from devtools import synth

    clean = _synth_gate(warehouse, tmp_path, synth.Defects())
    assert clean.success, clean.summary()

    n = {"bad_ages": 4, "null_paid": 3, "unknown_types": 2, "duplicate_ids": 3, "future_dated": 2}
    n |= {"accident_after_report": 3, "duplicate_rows": 2}
    report = _synth_gate(warehouse, tmp_path, synth.Defects(**n, valuation_date=LATE_V))
    expected = {key: per_row * n[knob] for knob, (key, per_row) in SYNTH_DEFECTS.items()}
    assert {c.key: c.unexpected_count for c in report.failures} == expected, report.summary()
    with pytest.raises(QualityGateError) as raised:
        raise_for_failures(report)
    for key, count in expected.items():
        assert f"{key} " in str(raised.value) and f": {count} bad rows" in str(raised.value)


# --- uniqueness after a clean month ---------------------------------------------------------------------------------

V2 = dt.date(2024, 2, 29)
UNIQUE_KEYS = ("transactions_extract.transaction_id.unique", "transactions_extract.claim_date_amount.unique")
FEB = dt.datetime(2024, 2, 5, 9)
# February's extract holds T6, T7 and the new rows against January's 5: wide enough for the volume check to pass.
NEXT_MONTH = SETTINGS.model_copy(update={"volume_tolerance": 1.0})


def _gate_v2(engine, tmp_path, settings=NEXT_MONTH, folder="v2"):
    """V2's gate as the stage runs it: with what the gate stored for V."""
    previous = previous_gate(engine, V2, "as_recorded")
    return run_quality_gate(url_of(engine), V2, "as_recorded", settings, tmp_path / folder, previous=previous)


def _next_month(engine, tmp_path, new_rows, settings=NEXT_MONTH):
    """Store V's clean gate, add ``new_rows`` and V2's snapshot, gate V2; the two uniqueness checks of V2."""
    first = gate(engine, tmp_path)
    assert first.success, first.summary()
    store.store_results(engine, first)
    insert_rows(engine, schema.claim_transactions, pd.DataFrame(new_rows, columns=TRANSACTION_COLUMNS))
    insert_rows(engine, schema.snapshot_claims, snapshot(claims(), V2))
    report = _gate_v2(engine, tmp_path, settings)
    return report, {c.key: c for c in report.checks if c.key in UNIQUE_KEYS}


def test_new_rows_duplicating_rows_of_a_clean_month_fail_the_gate(warehouse, tmp_path):
    load(warehouse)
    report, unique = _next_month(
        warehouse,
        tmp_path,
        [
            ("T1", "C2", dt.date(2024, 2, 5), FEB, 10.0, 0.0, "open"),  # T1 was recorded in November
            ("T9", "C1", dt.date(2023, 12, 15), FEB, 1200.0, -1200.0, "open"),  # T2 posted again
            ("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open"),  # a clean new row
        ],
    )
    assert sorted(c.key for c in report.failures) == sorted(UNIQUE_KEYS)
    for check in unique.values():
        assert "rows recorded after 2024-01-31" in check.description  # the narrowed scope, said in the result
        assert check.unexpected_count == 2  # both copies of the one duplicated group
    assert unique["transactions_extract.transaction_id.unique"].examples == [{"transaction_id": "T1", "copies": 2}]
    assert unique["transactions_extract.claim_date_amount.unique"].examples[0]["claim_id"] == "C1"


def test_a_clean_new_month_passes_and_rewritten_history_is_checked_in_full(warehouse, tmp_path):
    load(warehouse)
    clean, unique = _next_month(warehouse, tmp_path, [("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open")])
    assert clean.success, clean.summary()
    assert all("rows recorded after 2024-01-31" in c.description for c in unique.values())
    # a row back-dated into January arrives after January's gate, duplicating T3: January's count no longer holds
    late = pd.DataFrame(
        [("T3", "C2", dt.date(2024, 1, 10), dt.datetime(2024, 1, 10, 9), 5.0, 0.0, None)], columns=TRANSACTION_COLUMNS
    )
    insert_rows(warehouse, schema.claim_transactions, late)
    report = _gate_v2(warehouse, tmp_path, folder="again")
    failed = {c.key: c for c in report.failures}
    assert list(failed) == ["transactions_extract.transaction_id.unique"]
    assert failed["transactions_extract.transaction_id.unique"].description == "no duplicate transaction ids"


def test_row_level_checks_after_a_clean_month_judge_the_new_rows_with_the_full_verdict(warehouse, tmp_path):
    """After January's clean gate, February's row-level checks read only the rows recorded since (the run's recent
    view), and find exactly what the full check finds: the same failed checks, the same bad-row counts."""
    load(warehouse)
    new_rows = [
        ("T10", "C3", dt.date(2024, 2, 5), FEB, None, 0.0, "open"),  # paid NULL
        ("T11", "C3", dt.date(2024, 2, 6), FEB, 987_654_321.0, 0.0, "open"),  # out of bounds
        ("T12", "C2", dt.date(2024, 3, 9), FEB, 10.0, 0.0, "open"),  # dated after V2, recorded by it
        ("T13", "C4", dt.date(2024, 2, 1), FEB, 10.0, 0.0, "open"),  # dated before C4's report (2024-02-10)
        ("T14", "C3", dt.date(2024, 2, 7), FEB, 20.0, 0.0, "open"),  # clean
    ]
    wider = NEXT_MONTH.model_copy(update={"volume_tolerance": 2.0})  # 12 rows against January's 5
    narrowed, _ = _next_month(warehouse, tmp_path, new_rows, wider)
    full = _gate_v2(warehouse, tmp_path, wider.model_copy(update={"incremental_uniqueness": False}), "full")
    row_level = {c.key for c in build_checks(V2, "as_recorded", NEXT_MONTH) if c.row_level}
    assert len(row_level) == 10
    found = {c.key: c.unexpected_count for c in narrowed.failures}
    assert found == {c.key: c.unexpected_count for c in full.failures}
    assert found == {
        "transactions_extract.paid_amount.not_null": 1,
        "transactions_extract.paid_amount.bounds": 1,
        "transactions_extract.transaction_date.not_after_valuation": 1,
        "transactions_extract.transaction_date.not_before_report": 1,
    }
    by_key = {c.key: c for c in narrowed.checks}
    for key in row_level:
        assert "rows recorded after 2024-01-31" in by_key[key].description, key
    # what the narrowed checks read: February's 7 rows (T6, T7 and the five above), not the 12 of the extract
    assert by_key["transactions_extract.transaction_id.not_null"].element_count == 7
    assert by_key["transactions_extract.row_count.nonzero"].element_count == 12


def test_a_claim_removed_since_the_clean_month_has_every_row_checked(warehouse, tmp_path):
    """The extract's report dates come from the claims: when the claims reported by January's month end no longer
    number what its gate counted, January's rows are judged again (here: C1's two rows lost their claim)."""
    load(warehouse)
    wider = NEXT_MONTH.model_copy(update={"volume_tolerance": 2.0})
    _next_month(warehouse, tmp_path, [("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open")], wider)
    with warehouse.begin() as conn:
        conn.execute(schema.claims.delete().where(schema.claims.c.claim_id == "C1"))
    report = _gate_v2(warehouse, tmp_path, wider, "again")
    failed = {c.key: c for c in report.failures}
    assert failed["transactions_extract.report_date.not_null"].unexpected_count == 2
    assert "recorded after" not in failed["transactions_extract.report_date.not_null"].description


def test_incremental_uniqueness_can_be_switched_off(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine)
    full = NEXT_MONTH.model_copy(update={"incremental_uniqueness": False})
    report, unique = _next_month(engine, tmp_path, [("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open")], full)
    assert report.success and all("recorded after" not in c.description for c in unique.values())
    previous, recorded_by = previous_gate(engine, V2, "as_recorded"), partial(store.transactions_recorded_by, engine)
    assert decisions.uniqueness_checked_through(previous, "restated", recorded_by) is None  # latest knowledge: full
    assert decisions.uniqueness_checked_through(previous, "as_recorded", recorded_by) == V


# --- Great Expectations is a run-time dependency -------------------------------------------------------------------

# Imports the quality package and its storage, then runs a gate: GX, its analytics switch and log level come with it.
GX_PROBE = """
import datetime as dt, json, logging, os, sys

from include.reserving.config import Settings
from include.reserving.quality import decisions, queries, report, runner, suite
from include.reserving.warehouse import quality


def state():
    gx = sorted(m for m in sys.modules if m.split(".")[0] == "great_expectations")
    level = logging.getLogger("great_expectations").level
    print("STATE", json.dumps([gx[:3], os.environ.get("GX_ANALYTICS_ENABLED"), level]))


state()
runner.run_quality_gate(sys.argv[1], dt.date(2024, 1, 31), "as_recorded", Settings(), sys.argv[2])
state()
"""


def test_great_expectations_is_imported_and_set_up_only_when_a_gate_runs(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    load(engine)
    env = {k: v for k, v in os.environ.items() if k != "GX_ANALYTICS_ENABLED"} | {"PYTHONPATH": str(PROJECT)}
    done = subprocess.run(
        [sys.executable, "-c", GX_PROBE, sqlite_url, str(tmp_path / "probe")],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = [json.loads(line.removeprefix("STATE ")) for line in done.stdout.splitlines() if "STATE" in line]
    assert before == [[], None, 0]  # imported: no GX, no switch, GX's logger untouched
    assert after[0] and after[1:] == ["False", 30]  # a gate ran: GX imported, analytics off, warnings only

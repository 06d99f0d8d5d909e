"""Plausibility's monthly aggregates by the incremental path (the previous month end's stored aggregates plus V's
month) equal the full recomputation exactly, month after month, on SQLite and PostgreSQL: every frame value for
value, and so every check's observed value and band. Broken premises take the full path and say why.

The book is the incremental ingest's (tests/include/test_incremental_ingest.py): late recordings, corrections
recorded months after their date, rows recorded before their transaction date and rows recorded before their claim
was reported (these last two change months before V's: those month ends must take the full path).
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from devtools.book import load_book
from include.reserving import plausibility as checks_module
from include.reserving.config import Settings
from include.reserving.dates import month_index
from include.reserving.ingest import ingest
from include.reserving.stages.input import plausibility_aggregates
from include.reserving.warehouse import history
from tests.include.test_incremental_ingest import AS_RECORDED, MONTHS, _book, record_gate

SETTINGS = Settings()
MEDIAN_MONTHS = SETTINGS.plausibility_history_months + 1


@pytest.fixture(scope="module")
def synthetic_book():
    return _book()


@pytest.fixture
def loaded(warehouse, synthetic_book):
    load_book(warehouse, synthetic_book)
    return warehouse


def _month_end(engine, valuation_date, caplog, basis=AS_RECORDED):
    """Ingest and gate V as the DAG does, then plausibility's aggregates by the stage's path; returns
    (frames, path)."""
    ingest(engine, valuation_date, basis=basis)
    record_gate(engine, valuation_date, basis=basis)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="include.reserving.stages.input"):
        frames = plausibility_aggregates(engine, valuation_date, basis, SETTINGS)
    said = [r.getMessage() for r in caplog.records if "plausibility aggregates" in r.getMessage()]
    assert len(said) == 1, said
    return frames, "incremental" if "incremental path" in said[0] else "full"


def _assert_same(found, expected, valuation_date):
    for name, got, full in zip(("transactions", "claims", "exposure"), found, expected, strict=True):
        assert_frame_equal(got, full, check_exact=True, obj=f"{name} at {valuation_date}")
    checks = checks_module.evaluate(*found, valuation_date, SETTINGS)
    assert checks == checks_module.evaluate(*expected, valuation_date, SETTINGS), valuation_date
    return checks


def test_incremental_aggregates_equal_the_full_path_over_24_month_ends(loaded, caplog):
    paths = {}
    for valuation_date in MONTHS:
        found, paths[valuation_date] = _month_end(loaded, valuation_date, caplog)
        expected = history.monthly_aggregates(loaded, valuation_date, AS_RECORDED, median_months=MEDIAN_MONTHS)
        checks = _assert_same(found, expected, valuation_date)
        judged = [c for c in checks if c.check == "paid" and c.passed is not None]
        assert judged, valuation_date  # the bands were computed, not skipped
        # what was stored reads back as what the month computed
        txn, claims, window_start = history.stored_aggregates(loaded, valuation_date, AS_RECORDED)
        assert_frame_equal(txn, expected[0], check_exact=True)
        assert_frame_equal(claims, expected[1], check_exact=True)
        assert window_start == month_index(valuation_date) - MEDIAN_MONTHS
    assert paths[MONTHS[0]] == "full"  # nothing stored before the first
    # the month ends a row recorded before it joined the extract since (the book's Y and Z rows) take the full path
    joined = {v for v in MONTHS[1:] if history.rows_joining_before(loaded, MONTHS[MONTHS.index(v) - 1], v)}
    assert joined, "the book has rows that join earlier months"
    assert {v for v in MONTHS[1:] if paths[v] == "full"} == joined
    assert sum(path == "incremental" for path in paths.values()) >= 15


def test_a_rerun_of_the_month_end_gives_the_same_rows(loaded, caplog):
    first, second = MONTHS[0], MONTHS[1]
    _month_end(loaded, first, caplog)
    once, _ = _month_end(loaded, second, caplog)
    again, path = _month_end(loaded, second, caplog)
    assert path == "incremental"
    for a, b in zip(once, again, strict=True):
        assert_frame_equal(a, b, check_exact=True)
    stored = history.stored_aggregates(loaded, second, AS_RECORDED)
    assert_frame_equal(stored[0], once[0], check_exact=True)


@pytest.mark.parametrize("broken", ["failed_gate", "nothing_stored", "restated", "switched_off"])
def test_broken_premises_take_the_full_path(loaded, caplog, broken):
    first, second = MONTHS[3], MONTHS[4]
    basis = "restated" if broken == "restated" else AS_RECORDED
    _month_end(loaded, first, caplog, basis=basis)
    if broken == "failed_gate":
        record_gate(loaded, first, success=False)
    if broken == "nothing_stored":
        with loaded.begin() as conn:
            conn.execute(history.schema.monthly_aggregates.delete())
    settings = Settings(incremental_ingest=False) if broken == "switched_off" else SETTINGS
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="include.reserving.stages.input"):
        found = plausibility_aggregates(loaded, second, basis, settings)
    said = " ".join(r.getMessage() for r in caplog.records if "plausibility aggregates" in r.getMessage())
    assert "full path" in said
    reason = {
        "failed_gate": "failed its quality gate",
        "nothing_stored": "no stored plausibility aggregates",
        "restated": "basis restated",
        "switched_off": "switched off",
    }[broken]
    assert reason in said
    expected = history.monthly_aggregates(loaded, second, basis, median_months=MEDIAN_MONTHS)
    _assert_same(found, expected, second)


def test_the_new_month_only_reads_the_month(loaded, caplog):
    """The incremental path's own read is V's month: its transactions frame holds no earlier month."""
    _month_end(loaded, MONTHS[0], caplog)
    v = MONTHS[1]
    ingest(loaded, v)
    record_gate(loaded, v)
    mv = month_index(v)
    txn, claims, _ = history._aggregates(loaded, v, AS_RECORDED, mv, whole_extract=False)
    assert set(txn["month"]) == {mv}
    assert set(claims["month"]) <= {mv}
    assert isinstance(txn, pd.DataFrame)

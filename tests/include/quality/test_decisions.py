"""The gate's decisions on in-memory rows: no warehouse, no Great Expectations."""

import datetime as dt
import logging

import pytest

from include.reserving.quality import decisions
from include.reserving.quality.decisions import PreviousGate
from include.reserving.quality.report import CheckResult
from include.reserving.quality.suite import SUITE_VERSION

DEC = dt.date(2023, 12, 31)
CLEAN = PreviousGate(DEC, True, SUITE_VERSION, 5)


def _stored(**row):
    return {"valuation_date": DEC, "gate_success": True, "suite_version": SUITE_VERSION, "element_count": 5} | row


def test_the_stored_row_of_the_previous_month_end_becomes_a_previous_gate():
    assert decisions.previous_gate(None) is None  # never validated
    assert decisions.previous_gate(_stored()) == CLEAN
    assert decisions.previous_gate(_stored(gate_success=0, element_count=None)) == PreviousGate(
        DEC, False, SUITE_VERSION, None
    )


@pytest.mark.parametrize(
    ("previous", "baseline"),
    [
        (None, None),  # never validated: no volume check
        (CLEAN, 5),
        (PreviousGate(DEC, False, SUITE_VERSION, 7), 7),  # a failed gate still counted its rows
        (PreviousGate(DEC, True, "1", 7), 7),  # as did an older suite
        (PreviousGate(DEC, False, SUITE_VERSION, 0), None),  # an empty month is no baseline
        (PreviousGate(DEC, False, SUITE_VERSION, None), None),
    ],
)
def test_volume_baseline(previous, baseline):
    assert decisions.volume_baseline(previous) == baseline


def _never_asked(day):
    raise AssertionError(f"recounted rows recorded by {day} though the answer could not change the decision")


@pytest.mark.parametrize(
    ("previous", "basis"),
    [
        (CLEAN, "restated"),  # latest knowledge: rows dated by V' may have arrived after its gate
        (None, "as_recorded"),  # never validated
        (PreviousGate(DEC, False, SUITE_VERSION, 5), "as_recorded"),  # V''s gate failed
        (PreviousGate(DEC, True, "1", 5), "as_recorded"),  # judged by another suite version
        (PreviousGate(DEC, True, SUITE_VERSION, None), "as_recorded"),  # no count to compare
    ],
)
def test_uniqueness_is_checked_over_every_row_unless_a_clean_month_vouches(previous, basis):
    assert decisions.uniqueness_checked_through(previous, basis, _never_asked) is None


def test_uniqueness_after_a_clean_month_covers_only_new_rows_while_its_history_holds(caplog):
    asked = []
    assert decisions.uniqueness_checked_through(CLEAN, "as_recorded", lambda day: asked.append(day) or 5) == DEC
    assert asked == [DEC]
    with caplog.at_level(logging.WARNING):
        assert decisions.uniqueness_checked_through(CLEAN, "as_recorded", lambda day: 6) is None  # history rewritten
    assert "rows recorded by 2023-12-31 changed since its gate (5 then, 6 now)" in caplog.text


def test_missing_columns_per_asset():
    present = {
        "claims": {"claim_id", "line_of_business", "claim_type", "accident_date", "claimant_age", "region"},
        "claim_transactions": {"transaction_id", "claim_id", "transaction_date", "recorded_at", "case_reserve_change"},
    }
    assert decisions.missing_columns(present) == {
        "claims": {"report_date"},
        "claim_transactions": {"paid_amount"},
        "transactions_extract": {"paid_amount", "report_date"},  # the extract joins the claim dates
    }


def test_a_second_pass_fetches_examples_only_for_failed_row_level_checks():
    def result(key, expectation, success, element_count=10, error=None):
        return CheckResult(key, "a", expectation, None, "", success, 1, element_count, error=error)

    results = [
        result("passed", "expect_column_values_to_not_be_null", True),
        result("failed", "expect_column_values_to_be_between", False),
        result("query", "expect_no_bad_rows", False),  # brought its examples in pass 1
        result("not_evaluated", "expect_column_values_to_be_between", False, error="column x is missing"),
        result("columns", "expect_table_columns_to_match_set", False, element_count=None),  # no rows to show
    ]
    assert decisions.needs_examples(results) == {"failed"}

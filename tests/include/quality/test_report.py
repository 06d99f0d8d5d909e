"""What a failed gate says: one line per failed check for an actuary, and the error that stops the run."""

import datetime as dt

import pytest

from include.reserving.quality.report import CheckResult, QualityGateError, QualityReport, examples, raise_for_failures
from tests.include.quality.book import V


def _report(*checks):
    return QualityReport(V, "as_recorded", "2", list(checks), row_count=5, claim_count=3, artifact_uri="/runs/q")


AGES = CheckResult(
    "snapshot_claims.claim_type.allowed",
    "snapshot_claims",
    "expect_column_values_to_be_in_set",
    "claim_type",
    "claim type is one of ['BodilyInjury', 'PropertyDamage']",
    False,
    unexpected_count=1,
    element_count=3,
    examples=["Unknown"],
)


def test_alert_hook_gets_the_message_before_the_run_stops():
    report = _report(AGES)
    alerts = []
    with pytest.raises(QualityGateError) as raised:
        raise_for_failures(report, alert=lambda r, message: alerts.append((r, message)))
    assert alerts == [(report, report.summary())]
    assert raised.value.report is report and str(raised.value) == report.summary()


def test_a_passing_report_raises_nothing_and_alerts_no_one():
    passed = CheckResult("k", "a", "expect_column_values_to_not_be_null", "c", "c is not null", True, 0, 3)
    raise_for_failures(_report(passed), alert=lambda r, message: pytest.fail("alerted on a passing gate"))


def test_summary_names_each_failed_check():
    assert _report(AGES).summary().splitlines() == [
        "quality gate for V=2024-01-31 basis=as_recorded (suite v2): 0 of 1 checks passed; "
        "validation results and Data Docs in /runs/q",
        "  FAILED snapshot_claims.claim_type.allowed (snapshot_claims) - expected: claim type is one of "
        "['BodilyInjury', 'PropertyDamage'] [column claim_type]: 1 bad rows of 3, e.g. ['Unknown']",
    ]


@pytest.mark.parametrize(
    ("expectation", "fields", "says"),
    [
        ("expect_table_row_count_to_be_between", {"unexpected_count": 0}, ": observed 0 rows (the extract is EMPTY)"),
        ("expect_table_columns_to_match_set", {"examples": ["paid_amount"]}, ": MISSING columns ['paid_amount']"),
        ("expect_column_to_have_sql_type_family", {"examples": ["TEXT"]}, ": found type TEXT"),
        ("expect_column_values_to_not_be_null", {"error": "column x is missing"}, ": NOT EVALUATED, column x is"),
        ("expect_no_bad_rows", {}, ": ? bad rows"),
    ],
)
def test_explain_says_what_failed_in_the_words_of_its_kind(expectation, fields, says):
    check = CheckResult("a.k", "a", expectation, None, "it holds", False, **fields)
    assert check.explain().startswith("a.k (a) - expected: it holds: ") and says in check.explain()


def test_examples_are_json_able_and_distinct():
    values = [dt.date(2024, 1, 2), float("nan"), {"id": "T1", "at": dt.datetime(2024, 1, 2, 3)}, 1, 1, 2, 3, 4]
    assert examples(values) == ["2024-01-02", "nan", {"id": "T1", "at": "2024-01-02T03:00:00"}, 1, 2]

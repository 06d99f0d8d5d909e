import datetime as dt
import json

import pytest

from include.reserving.approval import approval_command, approval_key, approval_value, parse_approval

V = dt.date(2024, 2, 29)


def test_key_value_and_command():
    assert approval_key(V) == "reserving_approval__2024-02-29"
    assert json.loads(approval_value("m1", "reject", "Ada", "why")) == {
        "decision": "reject",
        "model_version": "m1",
        "by": "Ada",
        "comment": "why",
    }
    command = approval_command(V, "m1", "approve", "Ada O'Brien", "fine")
    assert command == [
        "airflow",
        "variables",
        "set",
        approval_key(V),
        approval_value("m1", "approve", "Ada O'Brien", "fine"),
    ]
    with pytest.raises(ValueError, match="decision"):
        approval_value("m1", "maybe")


def test_parse_valid_approve_and_reject():
    ok, warning = parse_approval(approval_value("m1", "approve", "Ada", "fine"), "m1")
    assert warning is None and (ok.decision, ok.by, ok.comment) == ("approve", "Ada", "fine")
    rejected, _ = parse_approval(json.dumps({"decision": "Reject", "model_version": "m1", "by": "Bo"}), "m1")
    assert rejected.decision == "reject"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"decision": "maybe", "model_version": "m1", "by": "Ada"}), "not one of"),
        (json.dumps({"decision": "approve", "model_version": "m0", "by": "Ada"}), "pending challenger is 'm1'"),
        (json.dumps({"decision": "approve", "model_version": "m1"}), "who decided"),
    ],
)
def test_bad_values_are_ignored_with_a_reason(raw, why):
    approval, warning = parse_approval(raw, "m1")
    assert approval is None and why in warning


def test_absent_value_is_just_waiting():
    assert parse_approval(None, "m1") == (None, None)

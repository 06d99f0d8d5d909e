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


def test_numbers_signoff_contract_is_bound_to_the_held_publication_version():
    from include.reserving.approval import NUMBERS_SIGNOFF
    from include.reserving.presentation.instruction import SignoffInstruction

    assert NUMBERS_SIGNOFF.key(V) == "reserving_signoff__2024-02-29"
    value = NUMBERS_SIGNOFF.value(3, "approve", "Ada", "explained")
    assert json.loads(value) == {"decision": "approve", "publication_version": 3, "by": "Ada", "comment": "explained"}
    ok, warning = NUMBERS_SIGNOFF.parse(value, 3)
    assert warning is None and (ok.decision, ok.model_version, ok.by) == ("approve", 3, "Ada")
    stale, warning = NUMBERS_SIGNOFF.parse(NUMBERS_SIGNOFF.value(2, "approve", "Ada"), 3)
    assert stale is None and "names publication_version 2, but the held publication is 3" in warning
    # a model approval is not a sign-off of numbers, and the reverse
    assert NUMBERS_SIGNOFF.parse(approval_value("m1", "approve", "Ada"), 3)[0] is None
    text = SignoffInstruction(V, 3).text
    assert "reserving_signoff__2024-02-29" in text and "held as version 3" in text
    assert "airflow variables set reserving_signoff__2024-02-29 " in text and '"publication_version": 3' in text


def test_cli_finds_the_held_publication(warehouse_url, capsys):
    import pandas as pd

    from include.reserving import schema
    from include.reserving.approve import main
    from include.reserving.warehouse.core import make_engine
    from include.reserving.warehouse.reserves import publish_reserves

    engine = make_engine(warehouse_url)
    schema.create_all(engine)
    args = ["--valuation-date", "2024-02-29", "--decision", "approve", "--by", "Ada", "--numbers", "--print-only"]
    assert main([*args, "--db", warehouse_url]) == 1
    assert "no reserves are held for sign-off at 2024-02-29" in capsys.readouterr().err
    rows = pd.DataFrame(
        {
            "segment": ["Motor"],
            "origin": [dt.date(2023, 1, 1)],
            "latest_paid": [1.0],
            "latest_incurred": [1.5],
            "ultimate": [2.0],
            "case_reserve": [0.5],
            "ibnr": [0.5],
            "unpaid": [1.0],
        }
    )
    publish_reserves(engine, V, "run-1", rows, "m1")
    publish_reserves(engine, V, "run-2", rows, "m2", status="held")
    assert main([*args, "--db", warehouse_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("airflow variables set reserving_signoff__2024-02-29 ") and '"publication_version": 2' in out
    engine.dispose()

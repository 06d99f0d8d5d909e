"""The decision contracts: keys, values, validation of what an actuary sets, and who may have set it (pure)."""

import datetime as dt
import json
import shlex

import pytest

from include.reserving.approval import (
    MAX_BY,
    MAX_COMMENT,
    NUMBERS_SIGNOFF,
    VariableWrite,
    approval_command,
    approval_key,
    approval_value,
    check_text,
    judge_writes,
    new_code,
    parse_approval,
)

V = dt.date(2024, 2, 29)
CODE = "c0ffee1234"


def test_key_value_and_command():
    assert approval_key(V) == "reserving_approval__2024-02-29"
    assert json.loads(approval_value("m1", "reject", "Ada", "why", CODE)) == {
        "decision": "reject",
        "model_version": "m1",
        "code": CODE,
        "by": "Ada",
        "comment": "why",
    }
    command = approval_command(V, "m1", "approve", "Ada O'Brien", "fine", CODE)
    assert command == [
        "airflow",
        "variables",
        "set",
        "reserving_approval__2024-02-29",
        approval_value("m1", "approve", "Ada O'Brien", "fine", CODE),
    ]
    with pytest.raises(ValueError, match="decision 'maybe' is invalid"):
        approval_value("m1", "maybe")
    # without a code (the card not issued yet) the value shows where to find it
    assert json.loads(approval_value("m1"))["code"] == "<code on the model card>"


def test_codes_are_one_time():
    codes = {new_code() for _ in range(1000)}
    assert len(codes) == 1000 and all(len(c) == 10 and int(c, 16) >= 0 for c in codes)


def test_parse_valid_approve_and_reject():
    ok, notes = parse_approval(approval_value("m1", "approve", " Ada ", "fine", CODE), "m1", CODE)
    assert notes == [] and ok.as_dict() == {
        "decision": "approve",
        "model_version": "m1",
        "by": "Ada",
        "comment": "fine",
        "code": CODE,
    }
    value = {"decision": "Reject", "model_version": "m1", "code": CODE, "by": "Bo"}
    rejected, _ = parse_approval(json.dumps(value), "m1", CODE)
    assert (rejected.decision, rejected.comment) == ("reject", "")


def _value(**changes) -> str:
    value = {"decision": "approve", "model_version": "m1", "code": CODE, "by": "Ada", "comment": "fine"}
    return json.dumps({**value, **changes})


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ('{"decision": "approve", ', "is not JSON"),
        ('["approve"]', "must be a JSON object, got list"),
        (_value(decision="maybe"), "not one of"),
        (_value(decision=["approve"]), "not one of"),
        (_value(model_version="m0"), "pending challenger is 'm1'"),
        (_value(code="deadbeef00"), "quotes code 'deadbeef00', not the code on the model card of 'm1'"),
        (_value(code=None), "quotes code None"),
        (_value(by=""), "'by' is empty"),
        (_value(by="   "), "'by' is empty"),
        (_value(by="<your name>"), "'by' is the placeholder '<your name>'"),
        (_value(comment="<why>"), "'comment' is the placeholder '<why>'"),
        (_value(by={"name": "x"}), "'by' must be text, got dict"),
        (_value(by=42), "'by' must be text, got int"),
        (_value(comment=["a"]), "'comment' must be text, got list"),
        (_value(by="x" * (MAX_BY + 1)), f"'by' has {MAX_BY + 1} characters, at most {MAX_BY}"),
        (_value(comment="y" * (MAX_COMMENT + 1)), f"'comment' has {MAX_COMMENT + 1} characters"),
    ],
)
def test_bad_values_are_ignored_with_a_reason(raw, why):
    approval, notes = parse_approval(raw, "m1", CODE)
    assert approval is None and why in notes[-1] and notes[-1].endswith("ignored")


def test_limits_fit_the_schema_and_unknown_keys_are_ignored_with_a_warning():
    from include.reserving import schema

    assert schema.approvals.c.decided_by.type.length >= MAX_BY and schema.signoffs.c.decided_by.type.length >= MAX_BY
    ok, notes = parse_approval(_value(by="x" * MAX_BY, comment="y" * MAX_COMMENT, extra=1, model="m9"), "m1", CODE)
    assert ok is not None and len(ok.by) == MAX_BY
    assert notes == ["unknown key 'extra' ignored", "unknown key 'model' ignored"]


def test_absent_value_is_just_waiting():
    assert parse_approval(None, "m1", CODE) == (None, [])
    assert parse_approval("", "m1", CODE) == (None, [])


def test_check_text_is_what_the_cli_refuses():
    assert check_text("Ada", "") is None
    assert "empty" in check_text("", "x")
    assert "placeholder" in check_text("<your name>", "")
    assert "at most 200" in check_text("x" * 201, "")


def test_numbers_signoff_contract_is_bound_to_the_held_publication_version():
    from include.reserving.presentation.instruction import SignoffInstruction

    assert NUMBERS_SIGNOFF.key(V) == "reserving_signoff__2024-02-29"
    value = NUMBERS_SIGNOFF.value(3, "approve", "Ada", "explained", CODE)
    assert json.loads(value) == {
        "decision": "approve",
        "publication_version": 3,
        "code": CODE,
        "by": "Ada",
        "comment": "explained",
    }
    ok, notes = NUMBERS_SIGNOFF.parse(value, 3, CODE)
    assert notes == [] and (ok.decision, ok.model_version, ok.by) == ("approve", 3, "Ada")
    stale, notes = NUMBERS_SIGNOFF.parse(NUMBERS_SIGNOFF.value(2, "approve", "Ada", code=CODE), 3, CODE)
    assert stale is None and "names publication_version 2, but the held publication is 3" in notes[-1]
    # a model approval is not a sign-off of numbers, and the reverse
    assert NUMBERS_SIGNOFF.parse(approval_value("m1", "approve", "Ada", code=CODE), 3, CODE)[0] is None
    text = SignoffInstruction(V, 3, CODE).text
    assert "reserving_signoff__2024-02-29" in text and "held as version 3" in text
    assert "airflow variables set reserving_signoff__2024-02-29 " in text and '"publication_version": 3' in text
    assert f'"code": "{CODE}"' in text


# --- who wrote it ----------------------------------------------------------------------------------------------------

ISSUED = dt.datetime(2024, 3, 1, 9, 0, 0)


def _write(owner: str, minutes: float, event: str = "patch_variable", event_id: int = 1) -> VariableWrite:
    return VariableWrite(event_id, event, owner, ISSUED + dt.timedelta(minutes=minutes))


def test_an_approver_writing_after_the_card_decides_at_the_time_airflow_logged():
    verdict = judge_writes([_write("boss", 1, event_id=1), _write("ada", 5, event_id=2)], ISSUED, ("ada",), False)
    assert (verdict.decided_by, verdict.decided_at, verdict.why) == ("ada", ISSUED + dt.timedelta(minutes=5), None)


def test_someone_else_writing_last_is_ignored_and_named():
    verdict = judge_writes([_write("ada", 1, event_id=1), _write("boss", 5, event_id=2)], ISSUED, ("ada",), False)
    assert verdict.decided_by is None and "'boss', who may not decide" in verdict.why
    assert verdict.foreign.event_id == 2


def test_a_value_written_before_the_card_never_decides():
    verdict = judge_writes([_write("ada", -1)], ISSUED, ("ada",), False)
    assert verdict.decided_by is None and "before the code was issued" in verdict.why
    assert "no write" in judge_writes([], ISSUED, ("ada",), False).why


def test_cli_writes_count_only_when_the_setting_says_so():
    cli = [_write("ada", 1, event="cli_variables_set")]
    verdict = judge_writes(cli, ISSUED, ("ada",), False)
    assert verdict.decided_by is None and "Airflow CLI" in verdict.why and verdict.foreign is not None
    assert judge_writes(cli, ISSUED, ("ada",), True).decided_by == "ada"


def test_a_deleted_variable_decides_nothing():
    writes = [_write("ada", 1, event_id=1), _write("ada", 2, event="delete_variable", event_id=2)]
    assert "deleted by 'ada'" in judge_writes(writes, ISSUED, ("ada",), False).why


def _held(warehouse_url):
    import pandas as pd

    from include.reserving import schema
    from include.reserving.warehouse.core import make_engine
    from include.reserving.warehouse.reserves import publish_reserves

    engine = make_engine(warehouse_url)
    schema.create_all(engine)
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
    return engine


def test_cli_finds_the_held_publication_and_its_code(warehouse_url, capsys):
    from include.reserving import schema
    from include.reserving.approve import main
    from include.reserving.warehouse import decisions
    from include.reserving.warehouse.core import make_engine

    schema.create_all(make_engine(warehouse_url))
    args = ["--valuation-date", "2024-02-29", "--decision", "approve", "--by", "Ada", "--numbers", "--print-only"]
    assert main([*args, "--db", warehouse_url]) == 1
    assert "no reserves are held for sign-off at 2024-02-29" in capsys.readouterr().err
    engine = _held(warehouse_url)
    assert main([*args, "--db", warehouse_url]) == 1
    assert "no code was issued for 2 at 2024-02-29 yet" in capsys.readouterr().err
    issued = decisions.issue(engine, decisions.NUMBERS, V, 2, "run-2")
    assert decisions.issue(engine, decisions.NUMBERS, V, 2, "run-2") == issued  # a retried task keeps its code
    assert main([*args, "--db", warehouse_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("airflow variables set reserving_signoff__2024-02-29 ") and '"publication_version": 2' in out
    assert f'\\"code\\": \\"{issued.code}\\"' in out or f'"code": "{issued.code}"' in out
    engine.dispose()


def test_cli_finds_the_month_card_and_decides_lines_apart(warehouse_url, capsys):
    """The pending card of V (its lines' challengers, its code); --line decides one line otherwise; a line not on the
    card is refused before anything is written."""
    from include.reserving import governance, schema
    from include.reserving.approve import main
    from include.reserving.warehouse import decisions, registry
    from include.reserving.warehouse.core import make_engine

    engine = make_engine(warehouse_url)
    schema.create_all(engine)
    rule = [
        governance.decide_promotion(V, "champ", 0.80, "chall", score, 0.01, segment=line)
        for line, score in (("Liability", 0.90), ("Motor", 0.95), ("Property", 0.80))
    ]
    registry.record_decisions(engine, V, rule, run_id="run-1")  # Property keeps its champion: not on the card
    issued = decisions.issue(engine, decisions.MODEL, V, "chall", "run-1")
    args = ["--valuation-date", "2024-02-29", "--decision", "approve", "--by", "Ada", "--print-only"]
    assert main([*args, "--line", "Motor=reject", "--db", warehouse_url]) == 0
    command = capsys.readouterr().out
    assert command.startswith("airflow variables set reserving_approval__2024-02-29 ")
    value = json.loads(shlex.split(command)[-1])
    assert (value["model_version"], value["code"], value["lines"]) == ("chall", issued.code, {"Motor": "reject"})
    assert main([*args, "--line", "Property=reject", "--db", warehouse_url]) == 1
    assert "--line names ['Property'], not on the model card (its lines: ['Liability', 'Motor'])" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([*args, "--line", "Motor", "--db", warehouse_url])
    assert "--line takes LINE=DECISION" in capsys.readouterr().err
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--valuation-date", "2024-13-45", "--decision", "approve", "--by", "Ada"], "is not a date"),
        (["--valuation-date", "2024-02-28", "--decision", "approve", "--by", "Ada"], "is not a month end"),
        (["--valuation-date", "2024-02-29", "--decision", "approve", "--by", ""], "'by' is empty"),
        (["--valuation-date", "2024-02-29", "--decision", "approve", "--by", "<your name>"], "placeholder"),
        (["--valuation-date", "2024-02-29", "--decision", "maybe", "--by", "Ada"], "invalid choice"),
        (["--valuation-date", "2024-02-29", "--decision", "approve", "--by", "Ada", "--api-url", "x"], "--user"),
    ],
)
def test_cli_answers_bad_input_with_one_line_and_usage(args, error, capsys):
    from include.reserving.approve import main

    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: python -m include.reserving.approve") and error in lines[-1]
    assert "Traceback" not in err


def test_four_eyes_the_user_who_forced_a_retrain_may_not_approve_it():
    from include.reserving.approval import four_eyes

    assert "triggered this forced retrain" in four_eyes("ada", "ada", forced_retrain=True)
    assert four_eyes("ada", "bo", forced_retrain=True) is None
    assert four_eyes("ada", "ada", forced_retrain=False) is None  # a scheduled or plain run: no conflict
    assert four_eyes("ada", None, forced_retrain=True) is None


def test_a_value_may_decide_the_lines_of_the_card_apart():
    """``decision`` decides every line on the card; ``lines`` the lines it names otherwise. A line not on the card, or
    a decision that is neither approve nor reject, makes the whole value invalid (nothing is decided)."""
    card = ("Liability", "Motor", "Property")
    value = approval_value(
        "m1", "approve", "Ada", "Motor only", CODE, lines={"Liability": "reject", "Property": "reject"}
    )
    assert json.loads(value)["lines"] == {"Liability": "reject", "Property": "reject"}
    value = value.replace('"Property": "reject"', '"Property": " Reject"')  # typed by hand: read as reject
    ok, notes = parse_approval(value, "m1", CODE, card)
    assert notes == [] and ok.lines == {"Liability": "reject", "Property": "reject"}
    assert [ok.decision_of(line) for line in card] == ["reject", "approve", "reject"]
    assert ok.as_dict()["lines"] == {"Liability": "reject", "Property": "reject"}
    # a whole-card value: every line the same, and no "lines" in its record
    whole, _ = parse_approval(approval_value("m1", "reject", "Ada", "", CODE), "m1", CODE, card)
    assert [whole.decision_of(line) for line in card] == ["reject"] * 3 and "lines" not in whole.as_dict()

    stray = approval_value("m1", "approve", "Ada", "", CODE, lines={"Marine": "reject"})
    assert parse_approval(stray, "m1", CODE, card) == (
        None,
        [
            "'lines' names ['Marine'], which are not on the card "
            "(its lines: ['Liability', 'Motor', 'Property']): ignored"
        ],
    )
    odd = json.dumps({**json.loads(value), "lines": {"Motor": "maybe"}})
    assert parse_approval(odd, "m1", CODE, card)[1] == [
        "'lines' gives 'Motor' the decision 'maybe'; use one of ('approve', 'reject'): ignored"
    ]
    listed = json.dumps({**json.loads(value), "lines": ["Motor"]})
    assert parse_approval(listed, "m1", CODE, card)[1] == [
        "'lines' must be an object of line: decision, got list: ignored"
    ]
    with pytest.raises(ValueError, match="decision 'maybe' is invalid"):
        approval_value("m1", "approve", lines={"Motor": "maybe"})
    # the sign-off of held numbers is decided as a whole
    with pytest.raises(ValueError, match="decided as a whole"):
        NUMBERS_SIGNOFF.value(3, "approve", lines={"Motor": "reject"})
    held = json.dumps(
        {**json.loads(NUMBERS_SIGNOFF.value(3, "approve", "Ada", "", CODE)), "lines": {"Motor": "reject"}}
    )
    signed, notes = NUMBERS_SIGNOFF.parse(held, 3, CODE)
    assert signed.lines == {} and notes == ["unknown key 'lines' ignored"]

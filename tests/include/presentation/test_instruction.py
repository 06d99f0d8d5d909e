"""The approval instruction is spelled once: exact key, values and shell-safe command lines, in one sentence."""

from __future__ import annotations

import shlex

from include.reserving.presentation.instruction import ApprovalInstruction
from tests.include.conftest import CHALLENGER, VALUATION

KEY = "reserving_approval__2023-12-31"
CODE = "5eed0c0de1"  # the model card's one-time code
APPROVE = (
    '{"decision": "approve", "model_version": "xgb_development-20231231-d4e5f6", "code": "5eed0c0de1", '
    '"by": "<your name>", "comment": "<why>"}'
)
REJECT = APPROVE.replace('"approve"', '"reject"')


def test_key_values_and_command_lines_are_exact():
    instruction = ApprovalInstruction(VALUATION, CHALLENGER, CODE)
    assert (instruction.key, instruction.approve_value, instruction.reject_value) == (KEY, APPROVE, REJECT)
    assert instruction.command("approve") == f"airflow variables set {KEY} '{APPROVE}'"
    assert instruction.command("reject") == f"airflow variables set {KEY} '{REJECT}'"


def test_command_lines_survive_the_shell_whatever_the_version():
    odd = ApprovalInstruction(VALUATION, "it's $(rm -rf) `x`")
    assert shlex.split(odd.command("approve"))[-1] == odd.approve_value


def test_text_is_the_sentence_then_one_step_a_line():
    instruction = ApprovalInstruction(VALUATION, CHALLENGER, CODE)
    sentence, *steps = instruction.text.splitlines()
    assert sentence == instruction.sentence
    assert sentence.startswith(
        f"To approve model {CHALLENGER} for valuation 2023-12-31, set the Airflow Variable {KEY}"
    )
    assert "a value naming another version or quoting another card's code is ignored" in sentence
    assert f"keep model_version and code ({CODE}) as they are" in sentence
    assert "Only a user named in the approvers setting can decide" in sentence
    assert steps == [
        f"Variable key: {KEY}",
        f"Value to approve: {APPROVE}",
        f"Command line to approve: airflow variables set {KEY} '{APPROVE}'",
        f"Value to reject: {REJECT}",
        f"Command line to reject: airflow variables set {KEY} '{REJECT}'",
    ]


def test_a_card_of_several_lines_says_each_line_is_decided_and_shows_a_mixed_value():
    instruction = ApprovalInstruction(VALUATION, CHALLENGER, CODE, ("Liability", "Motor"))
    assert instruction.sentence.startswith(
        "The decision is per line of business: this card asks about Liability, Motor; decision decides every one of "
        "them, and a lines object decides the lines it names otherwise (e.g. approve one line, reject another); a "
        "line rejected keeps its champion. To approve model"
    )
    label, value = instruction.steps[-1]
    assert label == "Value to approve Liability and reject the other lines (example)"
    assert value == APPROVE.replace('"<why>"}', '"<why>", "lines": {"Motor": "reject"}}')
    assert len(instruction.steps) == 6
    single = ApprovalInstruction(VALUATION, CHALLENGER, CODE, ("Motor",))
    assert single.sentence.startswith("The decision is per line of business: this card asks about Motor; decision ")
    assert len(single.steps) == 5

"""The analysis of change and the hold rule on a hand-computed book (pure: no warehouse)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from include.reserving import movement
from include.reserving.cells import ULTIMATE_DEVELOPMENT
from include.reserving.config import load_settings

Q1, Q2, Q3 = dt.date(2023, 1, 1), dt.date(2023, 4, 1), dt.date(2023, 7, 1)


def _rows(records):
    return pd.DataFrame(records, columns=["segment", "origin", "latest_paid", "unpaid"])


PREVIOUS = _rows([("Motor", Q1, 100.0, 50.0), ("Motor", Q2, 40.0, 60.0), ("Liability", Q1, 10.0, 1000.0)])
CURRENT = _rows([("Motor", Q1, 110.0, 45.0), ("Motor", Q2, 55.0, 50.0), ("Motor", Q3, 5.0, 30.01)])
EXPECTED = pd.DataFrame(
    {"segment": ["Motor", "Motor", "Liability"], "origin": [Q1, Q2, Q1], "expected_emergence": [8.0, 12.0, 0.0]}
)
PREVIOUS_MODEL = _rows([("Motor", Q1, 110.0, 44.0), ("Motor", Q2, 55.0, 52.0), ("Motor", Q3, 5.0, 29.0)])


def _aoc(**kwargs):
    return movement.analysis_of_change(CURRENT, PREVIOUS, EXPECTED, PREVIOUS_MODEL, model_changed=True, **kwargs)


def _steps(aoc, segment):
    rows = aoc[aoc["segment"] == segment]
    return dict(zip(rows["step"], rows["amount"], strict=True)), rows


def test_steps_are_hand_computed_and_tie_to_the_cent():
    aoc = _aoc()
    motor, rows = _steps(aoc, "Motor")
    # 110 previous - 25 paid in the month (10 + 15) + 30.01 new origin - 1 model (45-44 + 50-52) + 11 other = 125.01
    assert motor[movement.PREVIOUS] == 110.0
    assert motor[movement.ACTUAL] == -25.0
    assert motor[movement.NEW_ORIGINS] == 30.01
    assert motor[movement.MODEL_CHANGE] == -1.0
    assert motor[movement.OTHER] == 11.0
    assert motor[movement.THIS] == 125.01
    assert motor[movement.EXPECTED] == 20.0
    assert rows.loc[rows["step"] == movement.AE, "ratio"].item() == pytest.approx(1.25)
    assert rows["step_order"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    # a line gone from the extract: everything it held is unexplained
    liability, _ = _steps(aoc, "Liability")
    assert (liability[movement.PREVIOUS], liability[movement.OTHER], liability[movement.THIS]) == (1000.0, -1000.0, 0)
    assert movement.ties(aoc)


def test_balancing_item_is_exact_on_amounts_that_do_not_add_up_in_floating_point():
    previous = _rows([("Motor", Q1, 0.1, 0.1), ("Motor", Q2, 0.2, 0.2)])
    current = _rows([("Motor", Q1, 0.3, 0.7), ("Motor", Q2, 0.3, 0.3)])
    aoc = movement.analysis_of_change(current, previous)
    motor, _ = _steps(aoc, "Motor")
    assert (motor[movement.PREVIOUS], motor[movement.ACTUAL], motor[movement.OTHER], motor[movement.THIS]) == (
        0.3,
        -0.3,
        1.0,
        1.0,
    )
    assert motor[movement.MODEL_CHANGE] == 0.0 and movement.ties(aoc)


def test_model_change_not_separated_is_said_and_left_in_other():
    aoc = movement.analysis_of_change(CURRENT, PREVIOUS, EXPECTED, None, model_changed=True)
    motor, rows = _steps(aoc, "Motor")
    assert motor[movement.MODEL_CHANGE] == 0.0 and motor[movement.OTHER] == 10.0
    assert rows.loc[rows["step"] == movement.MODEL_CHANGE, "note"].item() == movement.MODEL_NOT_SEPARATED


def test_first_month_has_no_movement_and_no_hold():
    aoc = movement.analysis_of_change(CURRENT, None)
    assert aoc["step"].tolist() == [movement.PREVIOUS, movement.THIS]
    assert aoc["amount"].isna().tolist() == [True, False] and aoc["amount"].iloc[1] == 125.01
    assert aoc["note"].iloc[0] == movement.NO_PREVIOUS_NOTE
    assert movement.hold_reasons(aoc, load_settings(hold_movement_tolerance=1e-9, hold_floor=0)) == []


def test_hold_reasons_name_line_amount_and_tolerance():
    aoc = _aoc()
    quiet = load_settings(hold_movement_tolerance=0.2, hold_unexplained_tolerance=0.2, hold_ae_factor=2, hold_floor=0)
    reasons = movement.hold_reasons(aoc[aoc["segment"] == "Motor"], quiet)
    assert reasons == []  # movement 15.01 <= 22, other 11 <= 22, A/E 1.25 in [0.5, 2]
    strict = load_settings(
        hold_movement_tolerance=0.1, hold_unexplained_tolerance=0.05, hold_ae_factor=1.2, hold_floor=0
    )
    reasons = movement.hold_reasons(aoc[aoc["segment"] == "Motor"], strict)
    assert len(reasons) == 3
    assert reasons[0].startswith("Motor: unpaid moved +15.01 from 110.00 to 125.01")
    assert "tolerance of 11.00" in reasons[0]
    assert "actual / expected emergence 1.25 (paid 25.00 against 20.00 expected) is outside [0.83, 1.20]" in reasons[1]
    assert "experience and other) +11.00 is beyond 5.50" in reasons[2]
    # the floor: small amounts never hold; A/E is only judged when expected emergence exceeds it
    assert movement.hold_reasons(aoc[aoc["segment"] == "Motor"], strict.model_copy(update={"hold_floor": 50})) == []
    # a line that disappears is held by name, however loose the tolerances
    loose = load_settings(hold_movement_tolerance=5, hold_unexplained_tolerance=5, hold_ae_factor=5, hold_floor=0)
    assert movement.hold_reasons(aoc, loose) == [
        "Liability: published at the previous month end with unpaid 1,000.00, but the line has no rows this month"
    ]


def test_expected_emergence_is_one_month_pro_rata_of_the_next_projected_step():
    prediction = pd.DataFrame(
        {
            "segment": ["Motor"] * 5,
            "origin": [Q1, Q1, Q1, Q2, Q2],
            "development": [2, 5, ULTIMATE_DEVELOPMENT, 38, ULTIMATE_DEVELOPMENT],
            "paid": [100.0, 160.0, 200.0, 500.0, 530.0],
            "observed": [True, False, False, True, False],
        }
    )
    out = movement.expected_emergence(prediction, months=1, grain_months=3)
    # Q1: (160 - 100) over the 3 months from age 2 to 5; Q2: (530 - 500) to ultimate over one quarter
    assert out["expected_emergence"].tolist() == pytest.approx([20.0, 10.0])
    # on the published reserve: Q1's 50 unpaid (BF, not the model's 100) emerges 60 / 100 to age 5, a third of it in
    # the month; Q2's published unpaid 60 (model 30): all of it to ultimate, a third in the month
    published = pd.DataFrame({"segment": ["Motor", "Motor"], "origin": [Q1, Q2], "unpaid": [50.0, 60.0]})
    out = movement.expected_emergence(prediction, published, months=1, grain_months=3)
    assert out["expected_emergence"].tolist() == pytest.approx([50 * 60 / 100 / 3, 60 / 3])


def test_a_change_of_model_is_separated_only_on_the_lines_whose_model_changed():
    """Each line has its own champion: a new model on Motor is Motor's change of model; Property, reserved by the same
    model as before, shows none (its whole movement stays in emergence and other)."""
    previous = pd.concat([PREVIOUS, _rows([("Property", Q1, 20.0, 80.0)])], ignore_index=True)
    current = pd.concat([CURRENT, _rows([("Property", Q1, 30.0, 75.0)])], ignore_index=True)
    # the previous models' rows on V's data: Motor's as above; Property's would say 90 (ignored: same model)
    on_current = pd.concat([PREVIOUS_MODEL, _rows([("Property", Q1, 30.0, 90.0)])], ignore_index=True)
    aoc = movement.analysis_of_change(current, previous, EXPECTED, on_current, model_changed={"Motor"})
    motor, _ = _steps(aoc, "Motor")
    assert (motor[movement.MODEL_CHANGE], motor[movement.OTHER]) == (-1.0, 11.0)  # as when every line changed
    property_, rows = _steps(aoc, "Property")
    # 80 previous - 10 paid + 0 new origins + 0 model + 5 other = 75
    assert (property_[movement.ACTUAL], property_[movement.MODEL_CHANGE], property_[movement.OTHER]) == (-10.0, 0, 5.0)
    assert rows.loc[rows["step"] == movement.MODEL_CHANGE, "note"].item() == movement.SAME_MODEL
    assert movement.ties(aoc)

"""Publication: versioned, idempotent per run, atomic under a killed publish, totals tie to the cent."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from include.reserving.publish import reserve_rows, to_cents
from include.reserving.warehouse.reserves import current_reserves, publish_reserves, versions

V = dt.date(2024, 3, 31)


def _model_output(scale: float = 1.0):
    origins = [dt.date(2023, m, 1) for m in (1, 4, 7, 10)]
    ultimates = pd.DataFrame(
        {
            "segment": ["Motor"] * 4 + ["Liability"] * 4,
            "origin": origins * 2,
            "latest": [100.0, 80.0, 50.0, 10.0, 300.0, 120.0, 60.0, 5.0],
            "ultimate": [x * scale for x in (100.004, 95.555, 90.125, 60.3333, 600.0, 420.1, 300.456, 250.0049)],
            "ibnr": 0.0,
            "std_err": [0.0, 3.333, 5.5, 9.9999, 10.0, 20.0, 30.0, 40.0],
            "p75": 1.0,
            "p95": 2.0,
        }
    )
    ultimates["ibnr"] = ultimates["ultimate"] - ultimates["latest"]
    latest = ultimates[["segment", "origin"]].assign(paid=ultimates["latest"], incurred=ultimates["latest"] * 1.5)
    return ultimates, latest


def test_rows_round_to_the_cent_and_tie():
    ultimates, latest = _model_output()
    rows = reserve_rows(ultimates, latest)
    assert to_cents(pd.Series([0.125, -0.125, 2.675, 1.005])).tolist() == [0.13, -0.13, 2.68, 1.01]
    assert (rows["ultimate"] - rows["latest_paid"] - rows["ibnr"]).abs().max() < 1e-9
    motor_q3 = rows[(rows.segment == "Motor") & (rows.origin == dt.date(2023, 7, 1))].iloc[0]
    assert (motor_q3.ultimate, motor_q3.ibnr, motor_q3.std_err) == (90.13, 40.13, 5.5)
    # the total ties to the model's total to within the rounding of each row
    assert abs(rows["ibnr"].sum() - ultimates["ibnr"].sum()) <= 0.005 * len(rows)


def test_same_run_twice_gives_identical_rows_and_one_version(warehouse):
    ultimates, latest = _model_output()
    rows = reserve_rows(ultimates, latest)
    first = publish_reserves(warehouse, V, "run-1", rows, "m1", approval_ref="approval:1")
    published = current_reserves(warehouse, V)
    second = publish_reserves(warehouse, V, "run-1", rows, "m1", approval_ref="approval:1")
    assert (first.version, second.version) == (1, 1) and second.is_new_version is False
    pd.testing.assert_frame_equal(published, current_reserves(warehouse, V))
    assert len(versions(warehouse, V)) == 1
    assert round(published["ibnr"].sum(), 2) == first.ibnr_total == round(rows["ibnr"].sum(), 2)
    assert published["ibnr"].tolist() == rows["ibnr"].tolist()


def test_restatement_adds_a_version_and_moves_the_current_flag(warehouse):
    ultimates, latest = _model_output()
    publish_reserves(warehouse, V, "run-1", reserve_rows(ultimates, latest), "m1")
    restated, _ = _model_output(scale=1.1)
    second = publish_reserves(warehouse, V, "backfill-1", reserve_rows(restated, latest), "m1", basis="restated")
    assert second.version == 2 and second.is_new_version
    table = versions(warehouse, V)
    assert table["is_current"].tolist() == [False, True]
    current = current_reserves(warehouse, V)
    assert (current["version"] == 2).all()
    assert current["ultimate"].iloc[0] == reserve_rows(restated, latest)["ultimate"].iloc[0]


def test_a_publish_killed_before_its_swap_leaves_the_previous_state(warehouse):
    ultimates, latest = _model_output()
    publish_reserves(warehouse, V, "run-1", reserve_rows(ultimates, latest), "m1")
    before_rows, before_versions = current_reserves(warehouse, V), versions(warehouse, V)

    def killed():
        raise RuntimeError("worker lost")

    new, _ = _model_output(scale=1.2)
    with pytest.raises(RuntimeError):
        publish_reserves(warehouse, V, "run-2", reserve_rows(new, latest), "m2", before_swap=killed)
    pd.testing.assert_frame_equal(before_rows, current_reserves(warehouse, V))
    pd.testing.assert_frame_equal(before_versions, versions(warehouse, V))

    retried = publish_reserves(warehouse, V, "run-2", reserve_rows(new, latest), "m2")
    assert retried.version == 2
    assert current_reserves(warehouse, V)["model_version"].unique().tolist() == ["m2"]


def test_nothing_partial_is_published(warehouse):
    ultimates, latest = _model_output()
    rows = reserve_rows(ultimates, latest)
    with pytest.raises(ValueError, match="duplicate"):
        publish_reserves(warehouse, V, "run-1", pd.concat([rows, rows.iloc[:1]]), "m1")
    with pytest.raises(ValueError, match="no reserves"):
        publish_reserves(warehouse, V, "run-1", rows.iloc[:0], "m1")
    assert current_reserves(warehouse, V).empty

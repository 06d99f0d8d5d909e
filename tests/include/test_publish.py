"""Publication: versioned, idempotent per run, atomic under a killed publish, totals tie to the cent."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from concurrent.futures import ThreadPoolExecutor

import numpy as np
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
            "unpaid": 0.0,
            "std_err": [0.0, 3.333, 5.5, 9.9999, 10.0, 20.0, 30.0, 40.0],
            "p75": 1.0,
            "p95": 2.0,
        }
    )
    ultimates["unpaid"] = ultimates["ultimate"] - ultimates["latest"]
    latest = ultimates[["segment", "origin"]].assign(paid=ultimates["latest"], incurred=ultimates["latest"] * 1.5)
    return ultimates, latest


def test_rows_round_to_the_cent_and_tie():
    ultimates, latest = _model_output()
    rows = reserve_rows(ultimates, latest)
    assert to_cents(pd.Series([0.125, -0.125, 2.675, 1.005])).tolist() == [0.13, -0.13, 2.68, 1.01]
    assert (rows["ultimate"] - rows["latest_paid"] - rows["unpaid"]).abs().max() < 1e-9
    motor_q3 = rows[(rows.segment == "Motor") & (rows.origin == dt.date(2023, 7, 1))].iloc[0]
    # paid 50.00, incurred 75.00, ultimate 90.13: case 25.00 + IBNR 15.13 = unpaid 40.13
    assert (motor_q3.ultimate, motor_q3.case_reserve, motor_q3.ibnr, motor_q3.unpaid, motor_q3.std_err) == (
        90.13,
        25.0,
        15.13,
        40.13,
        5.5,
    )
    # the total ties to the model's total to within the rounding of each row
    assert abs(rows["unpaid"].sum() - ultimates["unpaid"].sum()) <= 0.005 * len(rows)


def _hand_set():
    """Three origins, hand-computed: rounded inputs, then case reserves, IBNR and unpaid to the cent.

    2023Q1: paid 1,234.57, incurred 2,000.00, ultimate 2,600.13: case 765.43 + IBNR 600.13 = unpaid 1,365.56
    2023Q2: paid 500.00, incurred 900.10, ultimate 850.05: case 400.10 + IBNR -50.05 = unpaid 350.05 (below incurred)
    2023Q3: paid 10.00, incurred unknown, ultimate 15.50: case and IBNR unknown, unpaid 5.50
    """
    origins = [dt.date(2023, m, 1) for m in (1, 4, 7)]
    ultimates = pd.DataFrame(
        {
            "segment": "Motor",
            "origin": origins,
            "latest": [1234.565, 500.0, 10.0],
            "ultimate": [2600.125, 850.046, 15.5],
            "unpaid": [1365.56, 350.046, 5.5],
            "std_err": [100.0, 20.0, float("nan")],
            "p75": [1400.0, 360.0, float("nan")],
            "p95": [1500.0, 380.0, float("nan")],
        }
    )
    latest = pd.DataFrame(
        {"segment": "Motor", "origin": origins, "paid": [1234.565, 500.0, 10.0], "incurred": [2000.004, 900.104, None]}
    )
    return reserve_rows(ultimates, latest)


HAND_SET = [  # latest_paid, latest_incurred, ultimate, case_reserve, ibnr, unpaid
    (1234.57, 2000.0, 2600.13, 765.43, 600.13, 1365.56),
    (500.0, 900.1, 850.05, 400.1, -50.05, 350.05),
    (10.0, None, 15.5, None, None, 5.5),
]


def _figures(frame: pd.DataFrame) -> list[tuple]:
    columns = ["latest_paid", "latest_incurred", "ultimate", "case_reserve", "ibnr", "unpaid"]
    return [tuple(None if pd.isna(v) else round(float(v), 2) for v in row) for row in frame[columns].to_numpy()]


def test_hand_computed_case_reserves_ibnr_and_unpaid_are_published_to_the_cent(warehouse):
    rows = _hand_set()
    assert _figures(rows) == HAND_SET
    first_two = publish_reserves(warehouse, V, "run-1", rows.iloc[:2], "m1")
    assert (first_two.unpaid_total, first_two.case_reserve_total, first_two.ibnr_total) == (1715.61, 1165.53, 550.08)
    assert first_two.as_xcom()["unpaid_total"] == 1715.61 and first_two.as_xcom()["ibnr_total"] == 550.08
    result = publish_reserves(warehouse, V, "run-2", rows, "m1")
    published = current_reserves(warehouse, V)
    assert _figures(published) == HAND_SET
    # the range is of the unpaid, as the model gave it
    assert published["std_err"].tolist()[:2] == [100.0, 20.0] and published["p95"].tolist()[:2] == [1500.0, 380.0]
    # a total of partly unknown figures is unknown: case reserves and IBNR totals NULL, the unpaid known
    assert (result.unpaid_total, result.case_reserve_total, result.ibnr_total) == (1721.11, None, None)
    stored = versions(warehouse, V).set_index("version")
    assert stored.loc[1, ["unpaid_total", "case_reserve_total", "ibnr_total"]].tolist() == [1715.61, 1165.53, 550.08]
    assert stored.loc[2, "unpaid_total"] == 1721.11
    assert stored.loc[2, ["case_reserve_total", "ibnr_total"]].isna().all()


def test_same_run_twice_gives_identical_rows_and_one_version(warehouse):
    ultimates, latest = _model_output()
    rows = reserve_rows(ultimates, latest)
    first = publish_reserves(warehouse, V, "run-1", rows, "m1", approval_ref="approval:1")
    published = current_reserves(warehouse, V)
    second = publish_reserves(warehouse, V, "run-1", rows, "m1", approval_ref="approval:1")
    assert (first.version, second.version) == (1, 1) and second.is_new_version is False
    pd.testing.assert_frame_equal(published, current_reserves(warehouse, V))
    assert len(versions(warehouse, V)) == 1
    assert round(published["unpaid"].sum(), 2) == first.unpaid_total == round(rows["unpaid"].sum(), 2)
    assert round(published["ibnr"].sum(), 2) == first.ibnr_total == round(rows["ibnr"].sum(), 2)
    for column in ("case_reserve", "ibnr", "unpaid"):
        assert published[column].tolist() == rows[column].tolist()


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


def test_a_held_version_is_stored_but_the_current_one_stays_until_signed_off(warehouse):
    from include.reserving.warehouse.reserves import make_current, record_signoff, signoffs, version_of_run

    ultimates, latest = _model_output()
    publish_reserves(warehouse, V, "run-1", reserve_rows(ultimates, latest), "m1")
    moved, _ = _model_output(scale=2.0)
    held = publish_reserves(warehouse, V, "run-2", reserve_rows(moved, latest), "m2", status="held")
    assert held.version == 2
    table = versions(warehouse, V)
    assert table[["version", "status", "is_current"]].values.tolist() == [[1, "approved", True], [2, "held", False]]
    assert current_reserves(warehouse, V)["model_version"].unique().tolist() == ["m1"]
    assert version_of_run(warehouse, V, "run-2")["status"] == "held"

    signoff_id, decision = record_signoff(warehouse, V, "as_recorded", 2, "approve", "Ada Actuary", "explained")
    # a decision is written once: a re-run reads it back and never rewrites it
    assert record_signoff(warehouse, V, "as_recorded", 2, "reject", "Bo Actuary") == (signoff_id, "approve")
    make_current(warehouse, V, 2, "approved")
    table = versions(warehouse, V)
    assert table[["version", "status", "is_current"]].values.tolist() == [
        [1, "approved", False],
        [2, "approved", True],
    ]
    current = current_reserves(warehouse, V)
    assert round(current["unpaid"].sum(), 2) == held.unpaid_total
    assert signoffs(warehouse, V)[["publication_version", "decision", "decided_by", "comment"]].values.tolist() == [
        [2, "approve", "Ada Actuary", "explained"]
    ]
    with pytest.raises(LookupError, match="no version 7"):
        make_current(warehouse, V, 7, "approved")


def test_movements_replace_their_own_run_and_read_back_to_the_cent(warehouse):
    from include.reserving import movement
    from include.reserving.warehouse.reserves import movements, store_movements

    previous = pd.DataFrame(
        {"segment": ["Motor"], "origin": [dt.date(2023, 1, 1)], "latest_paid": [100.0], "unpaid": [50.05]}
    )
    current = previous.assign(latest_paid=112.5, unpaid=[41.1])
    aoc = movement.analysis_of_change(current, previous)
    store_movements(warehouse, V, "as_recorded", "run-1", aoc)
    store_movements(warehouse, V, "as_recorded", "run-1", aoc)  # a retried task: same rows, not twice
    stored = movements(warehouse, V, "run-1")
    assert stored["step"].tolist() == [s for _, s, _ in movement.STEPS[:6]]
    # 50.05 - 12.50 paid + 3.55 other = 41.10
    assert stored["amount"].tolist() == [50.05, -12.5, 0.0, 0.0, 3.55, 41.1]
    assert movement.ties(stored) and stored["basis"].unique().tolist() == ["as_recorded"]


def test_selected_ultimates_and_ranges_are_published_together_to_the_cent(warehouse):
    """chainladder's xyz book (paid, incurred, premium): the published ultimate per origin is the methods'
    selection to the cent, each row names its method and carries every method's ultimate; the version's ranges tie
    to the published unpaid, per line and in total; a publish killed before its swap leaves neither."""
    import chainladder as cl

    from include.reserving import cells as cellsmod
    from include.reserving import methods
    from include.reserving.cells import latest_diagonal
    from include.reserving.config import load_settings
    from include.reserving.publish import range_rows, selected_ultimates
    from include.reserving.warehouse.reserves import ranges_of

    columns = {"Paid": "paid", "Incurred": "incurred", "Premium": "earned_premium"}
    sample = cl.load_sample("xyz")[list(columns)]
    cells = pd.concat(
        [cellsmod.from_triangle(sample * scale, columns=columns, segment=s) for s, scale in (("A", 1), ("B", 0.5))],
        ignore_index=True,
    )
    settings = load_settings()
    book = methods.reserve_book(cells, settings)
    rows = reserve_rows(selected_ultimates(book.origins), latest_diagonal(cells))
    ranges = range_rows(book.summary, rows, settings)

    def killed():
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        publish_reserves(warehouse, V, "run-1", rows, "m1", ranges=ranges, before_swap=killed)
    assert ranges_of(warehouse, V, 1).empty and current_reserves(warehouse, V).empty
    result = publish_reserves(warehouse, V, "run-1", rows, "m1", ranges=ranges)

    published = current_reserves(warehouse, V)
    assert published["ultimate"].tolist() == to_cents(book.origins["selected_ultimate"]).tolist()
    assert published["method"].tolist() == book.origins["selected_method"].tolist()
    assert set(published["method"]) == {"paid_cl", "bf"}  # mature origins paid CL, young ones BF
    for method in methods.METHODS:
        assert published[f"{method}_ultimate"].tolist() == to_cents(book.origins[method]).tolist()
    assert published["model_ultimate"].isna().all()  # no model was passed
    assert ((published["case_reserve"] + published["ibnr"] - published["unpaid"]).abs() < 0.005).all()
    assert published["flags"].tolist() == book.origins["flags"].tolist()

    stored = ranges_of(warehouse, V, result.version)
    lines = published.groupby("segment")["unpaid"].sum().round(2)
    assert stored["segment"].tolist() == ["A", "B", "Total"]
    assert stored["unpaid"].tolist() == [*lines.tolist(), result.unpaid_total]
    # chain ladder scales: B is A at half size, so its Mack standard error is half A's; the total's in quadrature
    assert stored["std_err"].iloc[1] == pytest.approx(stored["std_err"].iloc[0] / 2, abs=0.01)
    assert stored["std_err"].iloc[2] == pytest.approx(float(np.hypot(*stored["std_err"].iloc[:2])), abs=0.01)
    assert stored["selection_rule"].iloc[0] == methods.describe_rule(settings) and pd.isna(stored["selection_rule"][2])
    assert (stored["p95"] > stored["p75"]).all() and stored["cv"].notna().all()
    # re-running the run replaces the version's ranges, no duplicates
    publish_reserves(warehouse, V, "run-1", rows, "m1", ranges=ranges)
    assert len(ranges_of(warehouse, V, result.version)) == 3


def test_runs_swapping_at_once_get_distinct_versions_each_whole(warehouse):
    """Four runs publishing the same V from four threads at once: four versions, each with all its rows, one current."""
    ultimates, latest = _model_output()
    runs = {f"run-{i}": reserve_rows(_model_output(scale=1 + i / 10)[0], latest) for i in range(4)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda item: publish_reserves(warehouse, V, item[0], item[1], "m"), runs.items()))
    assert sorted(r.version for r in results) == [1, 2, 3, 4]
    table = versions(warehouse, V)
    assert table["is_current"].sum() == 1
    for result in results:
        row = table.set_index("version").loc[result.version]
        assert round(row["unpaid_total"], 2) == round(runs[row["run_id"]]["unpaid"].sum(), 2)
    assert len(current_reserves(warehouse, V)) == 8


def _publish_in_a_process(url: str, run_id: str, scale: float, staged=None, go=None) -> None:
    """One run's publish in its own process; with events, it stops between staging and swap until told to go."""
    from include.reserving.warehouse.core import make_engine

    ultimates, latest = _model_output(scale)

    def barrier():
        staged.set()
        if not go.wait(120):
            raise TimeoutError("never told to swap")

    before_swap = barrier if staged is not None else None
    publish_reserves(make_engine(url), V, run_id, reserve_rows(ultimates, latest), run_id, before_swap=before_swap)


def test_two_processes_publishing_the_same_month_both_complete_one_current(warehouse, warehouse_url):
    """The interleaving that lost rows: run A stages and stops; run B, another process, publishes in full (its
    start-up clean-up used to delete A's staged rows); then A swaps. Both versions whole, one current."""
    context = multiprocessing.get_context("spawn")
    staged, go = context.Event(), context.Event()
    a = context.Process(target=_publish_in_a_process, args=(warehouse_url, "run-a", 1.1, staged, go))
    a.start()
    try:
        assert staged.wait(120), "run A never staged"
        b = context.Process(target=_publish_in_a_process, args=(warehouse_url, "run-b", 1.2))
        b.start()
        b.join(120)
        assert b.exitcode == 0
    finally:
        go.set()
        a.join(120)
    assert a.exitcode == 0
    table = versions(warehouse, V)
    assert table[["version", "run_id", "is_current"]].values.tolist() == [[1, "run-b", False], [2, "run-a", True]]
    _, latest = _model_output()
    for version, scale in ((1, 1.2), (2, 1.1)):
        expected = reserve_rows(_model_output(scale)[0], latest)
        assert round(table.set_index("version").loc[version, "unpaid_total"], 2) == round(expected["unpaid"].sum(), 2)
    current = current_reserves(warehouse, V)
    assert len(current) == 8 and set(current["model_version"]) == {"run-a"}

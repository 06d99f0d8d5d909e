import datetime as dt
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from include.reserving import dates, drift, schema
from include.reserving.config import Settings
from include.reserving.stages import RunFacts, input
from include.reserving.stages.input import drift_report_at
from include.reserving.warehouse import drift as drift_store
from include.reserving.warehouse.core import insert_rows

# --- PSI and KS ----------------------------------------------------------------------------------------------------


def test_psi_of_a_sample_against_itself_is_zero():
    sample = np.random.default_rng(7).lognormal(8, 1.2, size=5_000)
    assert drift.psi_numeric(sample, sample) == 0.0
    levels = ["BodilyInjury"] * 30 + ["PropertyDamage"] * 70
    assert drift.psi_categorical(levels, levels) == 0.0


def test_numeric_psi_matches_the_hand_computation():
    reference = list(range(1, 11))  # deciles (linear): 1.9, 2.8, ..., 9.1, so one reference value per bin
    current = [1, 1, 1, 1, 2, 2, 3, 4, 5, 10]
    eps = 1e-4
    # bins (-inf,1.9], (1.9,2.8], ..., (9.1,inf): reference shares 0.1 each;
    # current shares 0.4, 0.2, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0.1 (the four empty bins take eps)
    expected = (
        (0.4 - 0.1) * math.log(0.4 / 0.1)
        + (0.2 - 0.1) * math.log(0.2 / 0.1)
        + 3 * (0.1 - 0.1) * math.log(0.1 / 0.1)
        + 4 * (eps - 0.1) * math.log(eps / 0.1)
        + (0.1 - 0.1) * math.log(0.1 / 0.1)
    )
    assert expected == pytest.approx(0.3 * math.log(4) + 0.1 * math.log(2) + 4 * 0.0999 * math.log(1000), abs=1e-12)
    assert drift.psi_numeric(reference, current, bins=10, eps=eps) == pytest.approx(expected, abs=1e-9)
    assert drift.decile_edges(reference) == pytest.approx([1.9, 2.8, 3.7, 4.6, 5.5, 6.4, 7.3, 8.2, 9.1])


def test_numeric_psi_ignores_missing_values_and_collapses_tied_deciles():
    reference = [30.0] * 50 + [40.0] * 50  # deciles are 30 and 40 only: bins (-inf,30], (30,40], (40,inf)
    current = [30.0] * 25 + [40.0] * 75 + [float("nan")] * 10
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert drift.psi_numeric(reference, current) == pytest.approx(expected, abs=1e-12)


def test_categorical_psi_counts_an_unseen_level():
    reference = ["A"] * 50 + ["B"] * 50
    current = ["A"] * 40 + ["B"] * 40 + ["C"] * 20
    eps = 1e-4
    # levels A, B, C: reference 0.5, 0.5, 0 (-> eps); current 0.4, 0.4, 0.2
    expected = 2 * (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.2 - eps) * math.log(0.2 / eps)
    assert drift.psi_categorical(reference, current, eps=eps) == pytest.approx(expected, abs=1e-9)
    assert drift.psi_categorical(reference, current, eps=eps) > 1.0


def test_categorical_psi_treats_missing_as_a_level():
    levels, ref, cur = drift.level_shares(["A", "A"], ["A", None])
    assert levels == [drift.MISSING_LEVEL, "A"]
    assert ref.tolist() == [0.0, 1.0]
    assert cur.tolist() == [0.5, 0.5]


def test_ks_matches_known_values():
    # Fully separated samples of 5 and 5: D = 1, exact two-sided p = 2 / C(10, 5) = 2 / 252.
    separated = drift.ks([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert separated.statistic == 1.0
    assert separated.pvalue == pytest.approx(2 / 252, abs=1e-12)
    same = drift.ks([1, 2, 3, 4], [1, 2, 3, 4])
    assert (same.statistic, same.pvalue) == (0.0, 1.0)
    # Half overlap: F_ref - F_cur peaks at 5/10 - 0 between 5 and 6.
    assert drift.ks(list(range(1, 11)), list(range(6, 16))).statistic == 0.5


def test_empty_samples_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="current sample is empty"):
        drift.psi_numeric([1.0, 2.0], [])
    with pytest.raises(ValueError, match="reference sample is empty"):
        drift.psi_categorical([], ["A"])


# --- windows -------------------------------------------------------------------------------------------------------


def test_reference_window_without_and_with_a_champion():
    v = dt.date(2024, 2, 29)
    assert drift.current_window(v) == drift.Window(dt.date(2024, 2, 1), v)
    assert drift.reference_window(v) == drift.Window(dt.date(2023, 2, 1), dt.date(2024, 1, 31))
    champion = drift.reference_window(v, champion_valuation_date=dt.date(2023, 9, 30))
    assert champion == drift.Window(dt.date(2022, 10, 1), dt.date(2023, 9, 30))
    assert dates.add_months(dt.date(2024, 1, 31), 1) == dt.date(2024, 2, 29)


def test_the_windows_read_are_the_compared_report_dates_merged():
    """Twelve compared windows (six features, reference and current) read as one range, or two with a gap."""
    v = dt.date(2024, 6, 30)
    assert len([w for pair in drift.feature_windows(v, drift.reference_window(v)) for w in pair]) == 12
    # no champion: reference 2023-06..2024-05, current 2024-06, severity's current 2024-05: one range
    assert drift.windows_to_read(v) == [drift.Window(dt.date(2023, 6, 1), v)]
    # a champion trained at 2023-12-31: 2024-01..2024-04 is compared by no feature, so it is not read
    old = drift.reference_window(v, champion_valuation_date=dt.date(2023, 12, 31))
    assert drift.windows_to_read(v, old) == [
        drift.Window(dt.date(2023, 1, 1), dt.date(2023, 12, 31)),
        drift.Window(dt.date(2024, 5, 1), v),
    ]


# --- decision ------------------------------------------------------------------------------------------------------


def _feature(name, psi):
    return drift.FeatureDrift(name, name, "numeric", 100, 10, psi=psi, breached=psi is not None and psi > 0.2)


def test_decide_retrain_reasons():
    quiet = [_feature("claimant_age", 0.05), _feature("severity", 0.19)]
    keep = drift.decide_retrain(quiet, psi_threshold=0.2)
    assert not keep.retrain
    assert "largest: severity 0.1900" in keep.summary()

    moved = drift.decide_retrain([*quiet, _feature("report_delay", 0.31)], psi_threshold=0.2)
    assert moved.retrain and moved.reasons == ("PSI of report_delay is 0.3100 > 0.2",)

    forced = drift.decide_retrain(quiet, psi_threshold=0.2, force_retrain=True)
    assert forced.retrain and forced.reasons == ("force_retrain was set for this run",)

    ave = drift.decide_retrain(quiet, psi_threshold=0.2, ave_breach=True, ave_detail="paid AvE -31% on Motor")
    assert ave.retrain and "paid AvE -31% on Motor" in ave.reasons[0]

    at_threshold = drift.decide_retrain([_feature("severity", 0.2)], psi_threshold=0.2)
    assert not at_threshold.retrain  # retrain only when PSI exceeds the threshold


# --- report from the warehouse -------------------------------------------------------------------------------------

V = dt.date(2024, 1, 31)


def _snapshot_rows(valuation_date, basis, report_dates, ages, types, prefix):
    for i, (report_date, age, claim_type) in enumerate(zip(report_dates, ages, types, strict=True)):
        yield {
            "valuation_date": valuation_date,
            "basis": basis,
            "claim_id": f"{prefix}{i}",
            "line_of_business": "Motor" if i % 3 else "Property",
            "claim_type": claim_type,
            "region": "North" if i % 2 else "South",
            "accident_date": report_date - dt.timedelta(days=i % 40),
            "report_date": report_date,
            "claimant_age": age,
            "report_delay_days": i % 40,
            "paid_to_date": 0.0,
            "incurred_to_date": 1000.0 + i,
            "initial_incurred": 500.0 + 10 * i,
            "is_closed": False,
        }


def _load_book(engine):
    rng = np.random.default_rng(3)
    ref_dates = [dt.date(2023, 1 + i % 12, 1 + i % 28) for i in range(600)]
    ref_ages = rng.integers(18, 80, size=600).tolist()
    ref_types = ["BodilyInjury" if i % 4 == 0 else "PropertyDamage" for i in range(600)]
    cur_dates = [dt.date(2024, 1, 1 + i % 31) for i in range(80)]
    cur_ages = rng.integers(40, 95, size=80).tolist()  # older claimants this month
    cur_types = ["BodilyInjury" if i % 2 == 0 else "PropertyDamage" for i in range(80)]
    rows = [
        *_snapshot_rows(V, "as_recorded", ref_dates, ref_ages, ref_types, "R"),
        *_snapshot_rows(V, "as_recorded", cur_dates, cur_ages, cur_types, "C"),
        # outside both windows, another basis, another valuation: all ignored
        *_snapshot_rows(V, "as_recorded", [dt.date(2022, 12, 31)] * 5, [200] * 5, ["X"] * 5, "OLD"),
        *_snapshot_rows(V, "restated", [dt.date(2024, 1, 5)] * 5, [200] * 5, ["X"] * 5, "RS"),
        *_snapshot_rows(dt.date(2023, 12, 31), "as_recorded", [dt.date(2023, 12, 5)] * 5, [200] * 5, ["X"] * 5, "P"),
    ]
    insert_rows(engine, schema.snapshot_claims, pd.DataFrame(rows))
    return ref_ages, cur_ages, ref_types, cur_types


def test_drift_report_reads_the_windows_and_stores_replaceable_rows(warehouse):
    ref_ages, cur_ages, ref_types, cur_types = _load_book(warehouse)
    report = drift_report_at(warehouse, V, "as_recorded", psi_threshold=0.2, min_sample=50)
    assert report.reference == drift.Window(dt.date(2023, 1, 1), dt.date(2023, 12, 31))
    by_name = {f.feature: f for f in report.features}
    assert set(by_name) == {"claimant_age", "report_delay", "severity", "claim_type_mix", "line_mix", "region_mix"}

    age = by_name["claimant_age"]
    assert (age.reference_count, age.current_count) == (600, 80)
    assert age.psi == pytest.approx(drift.psi_numeric(ref_ages, cur_ages), abs=1e-12)
    assert age.ks_statistic == pytest.approx(drift.ks(ref_ages, cur_ages).statistic, abs=1e-12)
    assert age.breached
    claim_type = by_name["claim_type_mix"]
    assert claim_type.psi == pytest.approx(drift.psi_categorical(ref_types, cur_types), abs=1e-12)
    assert claim_type.ks_statistic is None
    assert claim_type.detail["levels"] == ["BodilyInjury", "PropertyDamage"]

    decision = drift.decide_retrain(report, report.psi_threshold)
    assert decision.retrain and any("claimant_age" in r for r in decision.reasons)

    assert drift_store.store_drift_metrics(warehouse, report, run_id="run-1") == 6
    assert drift_store.store_drift_metrics(warehouse, report, run_id="run-2") == 6  # re-run replaces, never appends
    t = schema.drift_metrics
    with warehouse.connect() as conn:
        rows = conn.execute(select(t).where(t.c.valuation_date == V)).mappings().all()
    assert len(rows) == 6 and {r["run_id"] for r in rows} == {"run-2"}
    stored = {r["feature"]: r for r in rows}
    assert stored["claimant_age"]["psi"] == pytest.approx(age.psi, rel=1e-12)
    assert stored["claimant_age"]["breached"] is True
    assert stored["claimant_age"]["reference_start"] == dt.date(2023, 1, 1)
    assert json.loads(stored["claim_type_mix"]["detail"])["levels"] == ["BodilyInjury", "PropertyDamage"]


def test_drift_report_with_an_empty_current_month_compares_nothing(warehouse):
    _load_book(warehouse)
    report = drift_report_at(warehouse, dt.date(2024, 3, 31), "as_recorded", psi_threshold=0.2, min_sample=1)
    assert all(f.psi is None and f.current_count == 0 for f in report.features)
    age = next(f for f in report.features if f.feature == "claimant_age")
    # no snapshot at March 2024 either: both windows empty, never compared
    assert age.note == "not enough data (reference n=0, current n=0 < drift_min_sample=1)"
    decision = drift.decide_retrain(report, 0.2)
    assert not decision.retrain
    assert f"claimant_age not compared: {age.note}" in decision.reasons


def test_the_drift_stage_skips_sparse_features_by_the_setting_and_logs_them(warehouse, monkeypatch, caplog):
    _load_book(warehouse)  # 80 claims reported in V's month: below the default minimum of 100
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse.url.render_as_string(hide_password=False))
    monkeypatch.delenv("RESERVING_DRIFT_MIN_SAMPLE", raising=False)
    facts = RunFacts.create(V, "run-sparse")  # the first settings load sets up Airflow's logging: new root handlers
    stage_log = logging.getLogger(input.__name__)
    stage_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=input.__name__):
            decided = input.drift(facts)
    finally:
        stage_log.removeHandler(caplog.handler)
    skipped = "claimant_age not compared: not enough data (current n=80 < drift_min_sample=100)"
    assert skipped in decided["reasons"]
    assert decided["reasons"][-1] == "no champion yet: the first model must be trained"  # the only reason to train
    assert skipped in caplog.text
    stored = drift_store.drift_metrics(warehouse, V, "as_recorded").set_index("feature")
    assert stored.loc["claimant_age", "psi"] is None or math.isnan(stored.loc["claimant_age", "psi"])
    assert not stored["breached"].any()  # claimant_age breached at a minimum of 50 (the test above)


# --- minimum sample ------------------------------------------------------------------------------------------------

MIN_SAMPLE = Settings.model_fields["drift_min_sample"].default


def _claims(reference_ages, current_ages) -> pd.DataFrame:
    """Claims alike in all but claimant age: the reference reported through 2023 (12 months before V), cycling the
    months from January, the current ones in V's month (January 2024)."""
    reported = [dt.date(2023, 1 + i % 12, 15) for i in range(len(reference_ages))]
    reported += [dt.date(2024, 1, 15)] * len(current_ages)
    return pd.DataFrame(
        {
            "report_date": reported,
            "claimant_age": [*reference_ages, *current_ages],
            "report_delay_days": 5,
            "initial_incurred": 1000.0,
            "claim_type": "PropertyDamage",
            "line_of_business": "Motor",
            "region": "North",
        }
    )


def _by_feature(report: drift.DriftReport) -> dict[str, drift.FeatureDrift]:
    return {f.feature: f for f in report.features}


def test_a_sparse_month_is_not_compared_and_the_same_shift_with_enough_claims_breaches():
    assert MIN_SAMPLE == 100
    rng = np.random.default_rng(5)
    reference = rng.normal(45, 12, 1_200).round().tolist()
    sparse = rng.normal(65, 12, 8).round().tolist()  # claimants 20 years older, 8 claims reported
    enough = rng.normal(65, 12, 200).round().tolist()  # the same shift, 200 claims

    unguarded = _by_feature(drift.drift_report(_claims(reference, sparse), V, "as_recorded", 0.2, min_sample=1))
    assert unguarded["claimant_age"].psi == pytest.approx(drift.psi_numeric(reference, sparse), abs=1e-12)
    assert unguarded["claimant_age"].psi > 5  # what a handful of claims gave before the guard: 5.98

    guarded = _by_feature(drift.drift_report(_claims(reference, sparse), V, "as_recorded", 0.2, MIN_SAMPLE))
    age = guarded["claimant_age"]
    assert (age.reference_count, age.current_count) == (1_200, 8)
    assert (age.psi, age.ks_statistic, age.ks_pvalue, age.breached) == (None, None, None, False)
    assert age.note == "not enough data (current n=8 < drift_min_sample=100)"
    for name in ("report_delay", "claim_type_mix", "line_mix", "region_mix"):  # V's month: the same 8 claims
        assert guarded[name].psi is None and guarded[name].note == age.note
    # severity is judged on December 2023 (100 claims) against January to November (1,100): compared, unshifted
    assert (guarded["severity"].current_count, guarded["severity"].psi) == (100, 0.0)

    full = _by_feature(drift.drift_report(_claims(reference, enough), V, "as_recorded", 0.2, MIN_SAMPLE))
    age = full["claimant_age"]
    assert age.note is None and age.current_count == 200 and age.breached
    assert age.psi == pytest.approx(drift.psi_numeric(reference, enough), abs=1e-12)
    assert age.psi > 3  # 3.27 on these draws
    assert age.ks_pvalue < 1e-30


def test_the_minimum_sample_on_a_hand_made_shift():
    reference = list(range(1, 101))  # 100 claims, exactly the minimum: deciles 10.9, 20.8, ..., 90.1
    shifted = [85, 95] * 50  # 100 claims, half in (80.2, 90.1], half above 90.1
    eps = drift.DEFAULT_EPS
    # reference shares 0.1 in each of the 10 bins; current 0.5, 0.5 in the top two, eps in the other eight
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (eps - 0.1) * math.log(eps / 0.1)
    assert expected == pytest.approx(0.8 * math.log(5) + 0.7992 * math.log(1000), abs=1e-12)  # 6.8082

    at_minimum = _by_feature(drift.drift_report(_claims(reference, shifted), V, "as_recorded", 0.2, 100))
    assert at_minimum["claimant_age"].psi == pytest.approx(expected, abs=1e-9)
    assert at_minimum["claimant_age"].breached
    assert at_minimum["claimant_age"].detail["edges"] == pytest.approx([10.9 + 9.9 * k for k in range(9)])

    # one claim fewer in either window: not compared
    one_short = _by_feature(drift.drift_report(_claims(reference, shifted[:99]), V, "as_recorded", 0.2, 100))
    assert one_short["claimant_age"].note == "not enough data (current n=99 < drift_min_sample=100)"
    short_ref = _by_feature(drift.drift_report(_claims(reference[:99], shifted[:99]), V, "as_recorded", 0.2, 100))
    assert short_ref["claimant_age"].note == "not enough data (reference n=99, current n=99 < drift_min_sample=100)"

    # 8 claims with the same shares give the same PSI: the statistic cannot tell a shift from 8 claims' noise
    eight = _by_feature(drift.drift_report(_claims(reference, [85, 95] * 4), V, "as_recorded", 0.2, min_sample=1))
    assert eight["claimant_age"].psi == pytest.approx(expected, abs=1e-9)


def test_features_below_the_minimum_never_trigger_a_retrain_on_their_own():
    # 150 claims in V's month, claimant age known on 8 of them, all very old: the only feature that would breach
    reference = list(range(1, 101)) * 12
    current = [85, 95] * 4 + [None] * 142
    claims = _claims(reference, current)
    report = drift.drift_report(claims, V, "as_recorded", 0.2, MIN_SAMPLE)
    features = _by_feature(report)
    assert (features["claimant_age"].current_count, features["claimant_age"].psi) == (8, None)
    assert all(f.psi == 0.0 for name, f in features.items() if name != "claimant_age")  # compared, unshifted
    assert report.breaches == []

    decision = drift.decide_retrain(report, 0.2)
    assert not decision.retrain
    assert decision.reasons == (
        "no PSI above 0.2 (largest: report_delay 0.0000)",
        "claimant_age not compared: not enough data (current n=8 < drift_min_sample=100)",
        "actual-vs-expected not evaluated",
    )
    # without the guard the same claims retrain on claimant age alone (PSI 6.8082)
    unguarded = drift.decide_retrain(drift.drift_report(claims, V, "as_recorded", 0.2, min_sample=1), 0.2)
    assert unguarded.retrain and unguarded.reasons == ("PSI of claimant_age is 6.8082 > 0.2",)
    # a retrain for another reason still names what was skipped
    forced = drift.decide_retrain(report, 0.2, force_retrain=True)
    assert forced.retrain and forced.reasons == (
        "force_retrain was set for this run",
        "claimant_age not compared: not enough data (current n=8 < drift_min_sample=100)",
    )

import datetime as dt
import json

import pandas as pd
import pytest
from sqlalchemy import select, text

from include.reserving import quality, schema
from include.reserving.config import Settings
from include.reserving.warehouse.core import insert_rows, make_engine

V = dt.date(2024, 1, 31)
SETTINGS = Settings(amount_min=-1_000_000.0, amount_max=1_000_000.0, volume_tolerance=0.5)


def _claims():
    return pd.DataFrame(
        [
            ("C1", "P1", "Motor", "BodilyInjury", dt.date(2023, 11, 2), dt.date(2023, 11, 10), 34, "North"),
            ("C2", "P2", "Motor", "PropertyDamage", dt.date(2023, 12, 1), dt.date(2023, 12, 3), 51, "South"),
            ("C3", "P3", "Property", "PropertyDamage", dt.date(2024, 1, 5), dt.date(2024, 1, 20), 77, "East"),
            ("C4", "P4", "Liability", "BodilyInjury", dt.date(2024, 1, 25), dt.date(2024, 2, 10), 40, "West"),
        ],
        columns=[
            "claim_id",
            "policy_id",
            "line_of_business",
            "claim_type",
            "accident_date",
            "report_date",
            "claimant_age",
            "region",
        ],
    )


def _transactions():
    rows = [
        ("T1", "C1", dt.date(2023, 11, 10), dt.datetime(2023, 11, 10, 9), 0.0, 5000.0, "open"),
        ("T2", "C1", dt.date(2023, 12, 15), dt.datetime(2023, 12, 16, 9), 1200.0, -1200.0, "open"),
        ("T3", "C2", dt.date(2023, 12, 3), dt.datetime(2023, 12, 3, 17), 0.0, 800.0, "open"),
        ("T4", "C2", dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 23, 59), 800.0, -800.0, "closed"),
        ("T5", "C3", dt.date(2024, 1, 20), dt.datetime(2024, 1, 22, 8), 0.0, 20000.0, "open"),
        # recorded after V: not in the as-recorded extract of V (point in time), in the restated one
        ("T6", "C3", dt.date(2024, 1, 29), dt.datetime(2024, 2, 3, 8), 300.0, 0.0, "open"),
        # claim C4 is reported after V: its transactions are dated and recorded after V
        ("T7", "C4", dt.date(2024, 2, 10), dt.datetime(2024, 2, 10, 10), 0.0, 9000.0, "open"),
    ]
    cols = ["transaction_id", "claim_id", "transaction_date", "recorded_at", "paid_amount", "case_reserve_change"]
    return pd.DataFrame(rows, columns=[*cols, "status"])


def _snapshot(claims: pd.DataFrame, valuation_date=V, basis="as_recorded"):
    reported = claims[claims["report_date"] <= valuation_date].copy()
    reported["report_delay_days"] = [
        (r - a).days for a, r in zip(reported.accident_date, reported.report_date, strict=True)
    ]
    return reported.drop(columns=["policy_id"]).assign(
        valuation_date=valuation_date,
        basis=basis,
        paid_to_date=0.0,
        incurred_to_date=1000.0,
        initial_incurred=1000.0,
        is_closed=False,
    )


def _load(engine, claims=None, transactions=None, snapshot=None):
    claims = _claims() if claims is None else claims
    transactions = _transactions() if transactions is None else transactions
    snapshot = _snapshot(claims) if snapshot is None else snapshot
    for table, frame in (
        (schema.claims, claims),
        (schema.claim_transactions, transactions),
        (schema.snapshot_claims, snapshot),
    ):
        if len(frame):
            insert_rows(engine, table, frame)


def _gate(engine, tmp_path, basis="as_recorded", previous_row_count=None, settings=SETTINGS):
    url = engine.url.render_as_string(hide_password=False)
    return quality.run_quality_gate(url, V, basis, previous_row_count, settings, tmp_path / "artifacts")


def test_clean_extract_passes_and_keeps_artifacts(warehouse, tmp_path):
    _load(warehouse)
    report = _gate(warehouse, tmp_path, previous_row_count=6)
    assert report.success, report.summary()
    quality.raise_for_failures(report)  # no exception
    assert report.row_count == 5  # T1-T5: T6 and T7 were recorded after V
    assert report.claim_count == 3
    results = json.loads((tmp_path / "artifacts" / "validation_results.json").read_text())
    assert results["success"] is True and len(results["validations"]) == 4
    index = tmp_path / "artifacts" / "data_docs" / "index.html"
    assert index.exists() and "reserving_snapshot_claims" in index.read_text()


# --- defects -------------------------------------------------------------------------------------------------------


def _set(frame, key_col, key, col, value):
    frame.loc[frame[key_col] == key, col] = value


def _negative_age(claims, txns):
    _set(claims, "claim_id", "C1", "claimant_age", -3)


def _age_over_120(claims, txns):
    _set(claims, "claim_id", "C2", "claimant_age", 130)


def _null_amount(claims, txns):
    _set(txns, "transaction_id", "T3", "paid_amount", None)


def _unknown_type(claims, txns):
    _set(claims, "claim_id", "C3", "claim_type", "Unknown")


def _duplicate_transaction_id(claims, txns):
    txns.loc[len(txns)] = ("T2", "C2", dt.date(2024, 1, 10), dt.datetime(2024, 1, 10, 12), 50.0, 0.0, "open")


def _duplicate_row(claims, txns):  # a double-posted payment: same claim, date and amount, new id
    txns.loc[len(txns)] = ("T2b", "C1", dt.date(2023, 12, 15), dt.datetime(2023, 12, 18, 9), 1200.0, -1200.0, "open")


def _transaction_after_valuation(claims, txns):  # dated after V but already recorded by V
    txns.loc[len(txns)] = ("T8", "C2", dt.date(2024, 2, 5), dt.datetime(2024, 1, 30, 9), 10.0, 0.0, "open")


def _accident_after_report(claims, txns):
    _set(claims, "claim_id", "C2", "accident_date", dt.date(2023, 12, 5))


def _amount_out_of_bounds(claims, txns):
    _set(txns, "transaction_id", "T5", "case_reserve_change", 5_000_000.0)


# defect -> (check key, bad rows, an example value the message must show)
DEFECTS = {
    "negative_age": (_negative_age, "snapshot_claims.claimant_age.between", 1, "-3"),
    "age_over_120": (_age_over_120, "snapshot_claims.claimant_age.between", 1, "130"),
    "null_amount": (_null_amount, "transactions_extract.paid_amount.not_null", 1, "None"),
    "unknown_claim_type": (_unknown_type, "snapshot_claims.claim_type.allowed", 1, "'Unknown'"),
    "duplicate_transaction_id": (_duplicate_transaction_id, "transactions_extract.transaction_id.unique", 2, "'T2'"),
    "duplicate_claim_date_amount": (_duplicate_row, "transactions_extract.claim_date_amount.unique", 2, "'C1'"),
    "transaction_after_valuation": (
        _transaction_after_valuation,
        "transactions_extract.transaction_date.not_after_valuation",
        1,
        "2024-02-05",
    ),
    "accident_after_report": (
        _accident_after_report,
        "snapshot_claims.report_date.not_before_accident",
        1,
        "2023-12-05",
    ),
    "amount_out_of_bounds": (_amount_out_of_bounds, "transactions_extract.case_reserve_change.bounds", 1, "5000000"),
}


def _defective_book(*names):
    claims, txns = _claims(), _transactions()
    for name in names:
        DEFECTS[name][0](claims, txns)
    return claims, txns


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_the_gate_and_is_named_with_its_count(sqlite_url, tmp_path, defect):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    claims, txns = _defective_book(defect)
    _load(engine, claims, txns)
    report = _gate(engine, tmp_path)
    _, key, count, example = DEFECTS[defect]
    assert [c.key for c in report.failures] == [key], report.summary()
    assert report.failures[0].unexpected_count == count
    with pytest.raises(quality.QualityGateError) as raised:
        quality.raise_for_failures(report)
    line = next(line for line in str(raised.value).splitlines() if key in line)
    assert f": {count} bad rows" in line and example in line, line
    assert raised.value.report is report


def test_catalogue_of_defects_in_one_book(warehouse, tmp_path):
    """Every defect at once, on SQLite and PostgreSQL: each check fails with exactly its own rows."""
    claims, txns = _defective_book(*DEFECTS)
    _load(warehouse, claims, txns)
    report = _gate(warehouse, tmp_path)
    expected: dict[str, int] = {}
    for _, key, count, _ in DEFECTS.values():
        expected[key] = expected.get(key, 0) + count
    assert {c.key: c.unexpected_count for c in report.failures} == expected, report.summary()
    ages = next(c for c in report.failures if c.key == "snapshot_claims.claimant_age.between")
    assert sorted(ages.examples) == [-3, 130]
    message = report.summary()
    for key, count in expected.items():
        assert f"{key} " in message and f": {count} bad rows" in message


def test_non_finite_amount_fails_the_bounds_check(warehouse, tmp_path):
    _load(warehouse)
    # PostgreSQL numeric holds NaN; SQLite stores NaN as NULL, so it gets infinity (9e999 overflows to inf).
    bad = "'NaN'" if warehouse.dialect.name == "postgresql" else "9e999"
    with warehouse.begin() as conn:
        conn.execute(text(f"UPDATE claim_transactions SET paid_amount = {bad} WHERE transaction_id = 'T4'"))
    report = _gate(warehouse, tmp_path)
    assert [(c.key, c.unexpected_count) for c in report.failures] == [("transactions_extract.paid_amount.bounds", 1)]
    assert report.failures[0].examples in (["nan"], ["inf"])


def test_empty_extract_gives_a_clear_message(warehouse, tmp_path):
    _load(warehouse, transactions=_transactions().iloc[0:0], snapshot=_snapshot(_claims()).iloc[0:0])
    report = _gate(warehouse, tmp_path, previous_row_count=5)
    assert report.row_count == 0 and report.claim_count == 0
    with pytest.raises(quality.QualityGateError) as raised:
        quality.raise_for_failures(report)
    message = str(raised.value)
    assert "transactions_extract.row_count.nonzero" in message
    assert "observed 0 rows (the extract is EMPTY)" in message
    assert "snapshot_claims.row_count.nonzero" in message
    assert "transactions_extract.row_count.volume" in message
    assert "Traceback" not in message


def test_missing_column_gives_a_clear_message(warehouse, tmp_path):
    _load(warehouse)
    with warehouse.begin() as conn:
        conn.execute(text("ALTER TABLE claim_transactions DROP COLUMN paid_amount"))
    report = _gate(warehouse, tmp_path)
    failed = {c.key: c for c in report.failures}
    assert failed["claim_transactions.columns"].examples == ["paid_amount"]
    assert "MISSING columns ['paid_amount']" in failed["claim_transactions.columns"].explain()
    for key in (
        "claim_transactions.paid_amount.type",
        "transactions_extract.paid_amount.not_null",
        "transactions_extract.paid_amount.bounds",
        "transactions_extract.claim_date_amount.unique",
    ):
        assert "paid_amount is missing" in failed[key].error, failed[key]
    assert set(failed) == {
        "claim_transactions.columns",
        "claim_transactions.paid_amount.type",
        "transactions_extract.paid_amount.not_null",
        "transactions_extract.paid_amount.bounds",
        "transactions_extract.claim_date_amount.unique",
    }
    assert report.row_count == 5  # the rest of the extract was still judged


def test_volume_anomaly_against_the_previous_valuation(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    _load(engine)
    assert _gate(engine, tmp_path, previous_row_count=10).success  # 5 is within 50% of 10
    report = _gate(engine, tmp_path, previous_row_count=11)  # needs at least 5.5
    assert [c.key for c in report.failures] == ["transactions_extract.row_count.volume"]
    assert "between 6 and 16" in report.failures[0].explain() and "observed 5 rows" in report.failures[0].explain()


def test_restated_basis_reads_latest_knowledge(warehouse, tmp_path):
    claims = _claims()
    _load(warehouse, claims, snapshot=_snapshot(claims, basis="restated"))
    url = warehouse.url.render_as_string(hide_password=False)
    report = quality.run_quality_gate(url, V, "restated", None, SETTINGS, tmp_path / "restated")
    assert report.success, report.summary()
    assert report.row_count == 6  # T6, recorded after V, is known now; T7 is dated after V
    missing_snapshot = _gate(warehouse, tmp_path)  # no as-recorded snapshot was written for V
    assert [c.key for c in missing_snapshot.failures] == ["snapshot_claims.row_count.nonzero"]


def test_results_are_stored_and_replaced_on_rerun(warehouse, tmp_path):
    claims, txns = _defective_book("negative_age")
    _load(warehouse, claims, txns)
    report = _gate(warehouse, tmp_path)
    report.run_id = "run-1"
    n = quality.store_quality_results(warehouse, report)
    report.run_id = "run-2"
    assert quality.store_quality_results(warehouse, report) == n == len(report.checks)
    t = schema.quality_results
    with warehouse.connect() as conn:
        rows = conn.execute(select(t).where(t.c.valuation_date == V, t.c.basis == "as_recorded")).mappings().all()
    assert len(rows) == n and {r["run_id"] for r in rows} == {"run-2"}
    failed = [r for r in rows if not r["success"]]
    assert [(r["check_key"], r["unexpected_count"], json.loads(r["examples"])) for r in failed] == [
        ("snapshot_claims.claimant_age.between", 1, [-3])
    ]
    assert all(r["gate_success"] is False and r["suite_version"] == quality.SUITE_VERSION for r in rows)


def test_alert_hook_gets_the_message_before_the_run_stops(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    claims, txns = _defective_book("unknown_claim_type")
    _load(engine, claims, txns)
    report = _gate(engine, tmp_path)
    alerts = []
    with pytest.raises(quality.QualityGateError):
        quality.raise_for_failures(report, alert=lambda r, message: alerts.append((r, message)))
    assert alerts == [(report, report.summary())]


def test_suite_is_defined_in_code_with_stable_keys():
    checks = quality.build_checks(V, "as_recorded", Settings(extra_claim_types=("Legal",)), previous_row_count=100)
    keys = [c.key for c in checks]
    assert len(keys) == len(set(keys))
    allowed = next(c for c in checks if c.key == "snapshot_claims.claim_type.allowed")
    assert allowed.expectation.value_set == ["BodilyInjury", "Legal", "PropertyDamage"]
    volume = next(c for c in checks if c.key == "transactions_extract.row_count.volume")
    assert (volume.expectation.min_value, volume.expectation.max_value) == (50, 150)
    assert "transactions_extract.row_count.volume" not in [
        c.key for c in quality.build_checks(V, "as_recorded", Settings())
    ]


# --- the generator's defect knobs, end to end (synth -> ingest -> gate) --------------------------------------------

# Late enough that every claim is reported and every row recorded by V: each injected defect is in the extract.
LATE_V = dt.date(2060, 12, 31)
# Defects knob -> (check key, bad rows GX counts): a duplicated id or double posting makes both rows bad.
SYNTH_DEFECTS = {
    "bad_ages": ("snapshot_claims.claimant_age.between", 1),
    "null_paid": ("transactions_extract.paid_amount.not_null", 1),
    "unknown_types": ("snapshot_claims.claim_type.allowed", 1),
    "duplicate_ids": ("transactions_extract.transaction_id.unique", 2),
    "future_dated": ("transactions_extract.transaction_date.not_after_valuation", 1),
    "accident_after_report": ("snapshot_claims.report_date.not_before_accident", 1),
    "duplicate_rows": ("transactions_extract.claim_date_amount.unique", 2),
}


def _synth_gate(engine, tmp_path, defects):
    from devtools import synth
    from devtools.book import load_book
    from include.reserving import ingest

    spec = synth.BookSpec(claims=400, start="2020-01", end="2021-12", seed=11, defects=defects)
    load_book(engine, synth.generate_book(spec), reset=True)
    ingest.ingest(engine, LATE_V, "as_recorded")
    url = engine.url.render_as_string(hide_password=False)
    return quality.run_quality_gate(url, LATE_V, "as_recorded", None, Settings(), tmp_path / "synth")


def test_generator_defect_catalogue(warehouse, tmp_path):
    """A clean synthetic book passes; with every defect knob set, each check fails with exactly the injected rows."""
    from devtools import synth

    clean = _synth_gate(warehouse, tmp_path, synth.Defects())
    assert clean.success, clean.summary()

    n = {"bad_ages": 4, "null_paid": 3, "unknown_types": 2, "duplicate_ids": 3, "future_dated": 2}
    n |= {"accident_after_report": 3, "duplicate_rows": 2}
    report = _synth_gate(warehouse, tmp_path, synth.Defects(**n, valuation_date=LATE_V))
    expected = {key: per_row * n[knob] for knob, (key, per_row) in SYNTH_DEFECTS.items()}
    assert {c.key: c.unexpected_count for c in report.failures} == expected, report.summary()
    with pytest.raises(quality.QualityGateError) as raised:
        quality.raise_for_failures(report)
    for key, count in expected.items():
        assert f"{key} " in str(raised.value) and f": {count} bad rows" in str(raised.value)


# --- volume baseline -----------------------------------------------------------------------------------------------


def test_previous_row_count_reads_the_previous_month_ends_stored_result(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    _load(engine)
    assert quality.previous_row_count(engine, dt.date(2024, 2, 29), "as_recorded") is None  # never validated
    report = _gate(engine, tmp_path)
    row_count = next(c for c in report.checks if c.key == quality.ROW_COUNT_CHECK)
    assert report.row_count == row_count.element_count == 5
    quality.store_quality_results(engine, report)
    assert quality.previous_row_count(engine, dt.date(2024, 2, 29), "as_recorded") == 5  # the month after V
    assert quality.previous_row_count(engine, dt.date(2024, 3, 31), "as_recorded") is None  # V is two months back
    assert quality.previous_row_count(engine, dt.date(2024, 2, 29), "restated") is None  # another basis
    assert quality.previous_row_count(engine, V, "as_recorded") is None  # V itself is not its own baseline
    empty = _gate(engine, tmp_path, previous_row_count=None)
    next(c for c in empty.checks if c.key == quality.ROW_COUNT_CHECK).element_count = 0
    quality.store_quality_results(engine, empty)
    assert quality.previous_row_count(engine, dt.date(2024, 2, 29), "as_recorded") is None  # an empty month: none


# --- uniqueness after a clean month ---------------------------------------------------------------------------------

V2 = dt.date(2024, 2, 29)
UNIQUE_KEYS = ("transactions_extract.transaction_id.unique", "transactions_extract.claim_date_amount.unique")


def _next_month(engine, tmp_path, new_rows, settings=SETTINGS):
    """Store V's clean gate, add ``new_rows`` and V2's snapshot, gate V2; the two uniqueness checks of V2."""
    first = _gate(engine, tmp_path)
    assert first.success, first.summary()
    quality.store_quality_results(engine, first)
    cols = ["transaction_id", "claim_id", "transaction_date", "recorded_at", "paid_amount", "case_reserve_change"]
    insert_rows(engine, schema.claim_transactions, pd.DataFrame(new_rows, columns=[*cols, "status"]))
    insert_rows(engine, schema.snapshot_claims, _snapshot(_claims(), V2))
    url = engine.url.render_as_string(hide_password=False)
    report = quality.run_quality_gate(url, V2, "as_recorded", None, settings, tmp_path / "v2")
    return report, {c.key: c for c in report.checks if c.key in UNIQUE_KEYS}


FEB = dt.datetime(2024, 2, 5, 9)


def test_new_rows_duplicating_rows_of_a_clean_month_fail_the_gate(warehouse, tmp_path):
    _load(warehouse)
    report, unique = _next_month(
        warehouse,
        tmp_path,
        [
            ("T1", "C2", dt.date(2024, 2, 5), FEB, 10.0, 0.0, "open"),  # T1 was recorded in November
            ("T9", "C1", dt.date(2023, 12, 15), FEB, 1200.0, -1200.0, "open"),  # T2 posted again
            ("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open"),  # a clean new row
        ],
    )
    assert sorted(c.key for c in report.failures) == sorted(UNIQUE_KEYS)
    for check in unique.values():
        assert "rows recorded after 2024-01-31" in check.description  # the narrowed scope, said in the result
        assert check.unexpected_count == 2  # both copies of the one duplicated group
    assert unique["transactions_extract.transaction_id.unique"].examples == [{"transaction_id": "T1", "copies": 2}]
    assert unique["transactions_extract.claim_date_amount.unique"].examples[0]["claim_id"] == "C1"


def test_a_clean_new_month_passes_and_rewritten_history_is_checked_in_full(warehouse, tmp_path):
    _load(warehouse)
    clean, unique = _next_month(warehouse, tmp_path, [("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open")])
    assert clean.success, clean.summary()
    assert all("rows recorded after 2024-01-31" in c.description for c in unique.values())
    # a row back-dated into January arrives after January's gate, duplicating T3: January's count no longer holds
    late = pd.DataFrame(
        [("T3", "C2", dt.date(2024, 1, 10), dt.datetime(2024, 1, 10, 9), 5.0, 0.0, None)],
        columns=[*_transactions().columns],
    )
    insert_rows(warehouse, schema.claim_transactions, late)
    url = warehouse.url.render_as_string(hide_password=False)
    report = quality.run_quality_gate(url, V2, "as_recorded", None, SETTINGS, tmp_path / "again")
    failed = {c.key: c for c in report.failures}
    assert list(failed) == ["transactions_extract.transaction_id.unique"]
    assert failed["transactions_extract.transaction_id.unique"].description == "no duplicate transaction ids"


def test_incremental_uniqueness_can_be_switched_off(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    schema.create_all(engine)
    _load(engine)
    full = Settings(amount_min=-1_000_000.0, amount_max=1_000_000.0, incremental_uniqueness=False)
    report, unique = _next_month(engine, tmp_path, [("T10", "C3", dt.date(2024, 2, 5), FEB, 50.0, 0.0, "open")], full)
    assert report.success and all("recorded after" not in c.description for c in unique.values())
    assert quality.uniqueness_checked_through(engine, V2, "restated") is None  # latest knowledge: always in full
    assert quality.uniqueness_checked_through(engine, V2, "as_recorded") == V


def test_query_checks_count_and_show_bad_rows_in_one_pass():
    duplicates = quality.duplicates_query(["claim_id", "transaction_date"])
    assert "GROUP BY claim_id, transaction_date HAVING count(*) > 1" in duplicates
    assert "OVER (PARTITION" not in duplicates and duplicates.count("{batch}") == 1
    checks = {c.key: c for c in quality.build_checks(V, "as_recorded", SETTINGS)}
    unique = checks["transactions_extract.transaction_id.unique"].expectation
    assert isinstance(unique, quality.ExpectNoBadRows) and unique.column_list == ["transaction_id"]
    assert quality.ExpectNoBadRows.metric_dependencies == ("unexpected_rows_query.table",)  # no second count query

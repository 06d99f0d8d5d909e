"""A hand-set book for the gate's tests: four claims, seven transactions valued as at V=2024-01-31, and helpers to
load it (with defects) and run the gate on it."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from devtools.book import CLAIM_COLUMNS, TRANSACTION_COLUMNS
from include.reserving import schema
from include.reserving.config import Settings
from include.reserving.dates import previous_month_end
from include.reserving.quality.decisions import PreviousGate
from include.reserving.quality.runner import run_quality_gate
from include.reserving.quality.suite import SUITE_VERSION
from include.reserving.warehouse.core import insert_rows

V = dt.date(2024, 1, 31)
SETTINGS = Settings(amount_min=-1_000_000.0, amount_max=1_000_000.0, volume_tolerance=0.5)


def claims():
    return pd.DataFrame(
        [
            ("C1", "P1", "Motor", "BodilyInjury", dt.date(2023, 11, 2), dt.date(2023, 11, 10), 34, "North"),
            ("C2", "P2", "Motor", "PropertyDamage", dt.date(2023, 12, 1), dt.date(2023, 12, 3), 51, "South"),
            ("C3", "P3", "Property", "PropertyDamage", dt.date(2024, 1, 5), dt.date(2024, 1, 20), 77, "East"),
            ("C4", "P4", "Liability", "BodilyInjury", dt.date(2024, 1, 25), dt.date(2024, 2, 10), 40, "West"),
        ],
        columns=CLAIM_COLUMNS,
    )


def transactions():
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
    return pd.DataFrame(rows, columns=TRANSACTION_COLUMNS)


def snapshot(claims: pd.DataFrame, valuation_date=V, basis="as_recorded"):
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


def load(engine, claims_frame=None, transactions_frame=None, snapshot_frame=None):
    claims_frame = claims() if claims_frame is None else claims_frame
    transactions_frame = transactions() if transactions_frame is None else transactions_frame
    snapshot_frame = snapshot(claims_frame) if snapshot_frame is None else snapshot_frame
    for table, frame in (
        (schema.claims, claims_frame),
        (schema.claim_transactions, transactions_frame),
        (schema.snapshot_claims, snapshot_frame),
    ):
        if len(frame):
            insert_rows(engine, table, frame)


def baseline(row_count: int) -> PreviousGate:
    """V's previous month end as stored with a failed gate: a volume baseline, never a scope for uniqueness."""
    return PreviousGate(previous_month_end(V), False, SUITE_VERSION, row_count)


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def gate(engine, tmp_path, basis="as_recorded", previous_row_count=None, settings=SETTINGS, folder="artifacts"):
    """The gate as at V on ``engine``, its artifacts under ``tmp_path / folder``."""
    previous = None if previous_row_count is None else baseline(previous_row_count)
    return run_quality_gate(url_of(engine), V, basis, settings, tmp_path / folder, previous=previous)


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


def defective_book(*names):
    """The book with the named DEFECTS: (claims, transactions)."""
    book_claims, txns = claims(), transactions()
    for name in names:
        DEFECTS[name][0](book_claims, txns)
    return book_claims, txns

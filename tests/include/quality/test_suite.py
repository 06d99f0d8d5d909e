"""The suite as a table: stable keys, descriptions and arguments for V, without Great Expectations or a warehouse."""

import datetime as dt

from include.reserving.config import Settings
from include.reserving.quality.queries import duplicates_query
from include.reserving.quality.suite import (
    ASSETS,
    CHECKS,
    ROW_COUNT_CHECK,
    SUITE_VERSION,
    VOLUME_CHECK,
    build_checks,
)
from tests.include.quality.book import SETTINGS, V

# Suite v2 as stored in quality_results (keys and descriptions for V, a baseline of 100 and a clean December):
# stored results and next month's baseline are keyed by these; changing one means a new SUITE_VERSION.
SUITE_V2 = [
    ("claims.columns", "claims has the required columns"),
    ("claims.claim_id.type", "claims.claim_id is of type string"),
    ("claims.line_of_business.type", "claims.line_of_business is of type string"),
    ("claims.claim_type.type", "claims.claim_type is of type string"),
    ("claims.accident_date.type", "claims.accident_date is of type date"),
    ("claims.report_date.type", "claims.report_date is of type date"),
    ("claims.claimant_age.type", "claims.claimant_age is of type integer"),
    ("claims.region.type", "claims.region is of type string"),
    ("claim_transactions.columns", "claim_transactions has the required columns"),
    ("claim_transactions.transaction_id.type", "claim_transactions.transaction_id is of type string"),
    ("claim_transactions.claim_id.type", "claim_transactions.claim_id is of type string"),
    ("claim_transactions.transaction_date.type", "claim_transactions.transaction_date is of type date"),
    ("claim_transactions.recorded_at.type", "claim_transactions.recorded_at is of type timestamp"),
    ("claim_transactions.paid_amount.type", "claim_transactions.paid_amount is of type number"),
    ("claim_transactions.case_reserve_change.type", "claim_transactions.case_reserve_change is of type number"),
    ("transactions_extract.row_count.nonzero", "the transaction extract as at V is not empty"),
    (
        "transactions_extract.row_count.volume",
        "transaction count within 50% of the previous valuation's 100 (between 50 and 150)",
    ),
    ("transactions_extract.transaction_id.not_null", "transaction_id is not null"),
    ("transactions_extract.claim_id.not_null", "claim_id is not null"),
    ("transactions_extract.transaction_date.not_null", "transaction_date is not null"),
    ("transactions_extract.paid_amount.not_null", "paid_amount is not null"),
    ("transactions_extract.case_reserve_change.not_null", "case_reserve_change is not null"),
    ("transactions_extract.report_date.not_null", "the transaction's claim exists in claims with a report date"),
    ("transactions_extract.paid_amount.bounds", "paid_amount is finite and between -1,000,000.00 and 1,000,000.00"),
    (
        "transactions_extract.case_reserve_change.bounds",
        "case_reserve_change is finite and between -1,000,000.00 and 1,000,000.00",
    ),
    (
        "transactions_extract.transaction_id.unique",
        "no duplicate transaction ids (rows recorded after 2023-12-31, whose gate passed, against every row as at V)",
    ),
    (
        "transactions_extract.claim_date_amount.unique",
        "no duplicate (claim, transaction date, paid amount) rows "
        "(rows recorded after 2023-12-31, whose gate passed, against every row as at V)",
    ),
    (
        "transactions_extract.transaction_date.not_after_valuation",
        "transaction date on or before V=2024-01-31 (recorded by V but dated after it)",
    ),
    ("transactions_extract.transaction_date.not_before_report", "transaction date on or after the claim's report date"),
    ("snapshot_claims.row_count.nonzero", "the claim snapshot for V=2024-01-31 (as_recorded) is not empty"),
    ("snapshot_claims.claim_id.not_null", "claim_id is not null"),
    ("snapshot_claims.line_of_business.not_null", "line_of_business is not null"),
    ("snapshot_claims.claim_type.not_null", "claim_type is not null"),
    ("snapshot_claims.accident_date.not_null", "accident_date is not null"),
    ("snapshot_claims.report_date.not_null", "report_date is not null"),
    ("snapshot_claims.claim_type.allowed", "claim type is one of ['BodilyInjury', 'PropertyDamage']"),
    ("snapshot_claims.claimant_age.between", "claimant age between 0 and 120"),
    ("snapshot_claims.report_date.not_before_accident", "report date on or after the accident date"),
    ("snapshot_claims.report_date.not_after_valuation", "report date on or before V=2024-01-31"),
]


ROW_LEVEL = (
    *(f"{column}.not_null" for column in ("transaction_id", "claim_id", "transaction_date", "paid_amount")),
    "case_reserve_change.not_null",
    "report_date.not_null",
    "paid_amount.bounds",
    "case_reserve_change.bounds",
    "transaction_date.not_after_valuation",
    "transaction_date.not_before_report",
)


def test_suite_version_2_keys_and_descriptions_are_unchanged():
    assert SUITE_VERSION == "2"
    checks = build_checks(V, "as_recorded", SETTINGS, baseline=100, checked_through=dt.date(2023, 12, 31))
    # after a clean month the row-level checks judge the rows recorded since, and say so
    scope = " (rows recorded after 2023-12-31; the rows before passed its gate)"
    row_level = {f"transactions_extract.{name}" for name in ROW_LEVEL}
    assert [(c.key, c.description) for c in checks] == [(k, d + scope if k in row_level else d) for k, d in SUITE_V2]
    unscoped = build_checks(V, "as_recorded", SETTINGS, baseline=100)
    assert [c.description for c in unscoped if c.key in row_level] == [d for k, d in SUITE_V2 if k in row_level]


def test_suite_is_defined_in_code_with_stable_keys():
    checks = build_checks(V, "as_recorded", Settings(extra_claim_types=("Legal",)), baseline=100)
    keys = [c.key for c in checks]
    assert len(keys) == len(set(keys))
    allowed = next(c for c in checks if c.key == "snapshot_claims.claim_type.allowed")
    assert allowed.kwargs["value_set"] == ["BodilyInjury", "Legal", "PropertyDamage"]
    volume = next(c for c in checks if c.key == VOLUME_CHECK)
    assert (volume.kwargs["min_value"], volume.kwargs["max_value"]) == (50, 150)
    assert VOLUME_CHECK not in [c.key for c in build_checks(V, "as_recorded", Settings())]


def test_every_key_in_the_table_is_unique_and_names_its_asset():
    keys = [c.key for c in CHECKS]
    assert len(keys) == len(set(keys)) == 39
    assert all(c.key.startswith(f"{c.asset}.") for c in CHECKS)
    assert ASSETS == ("claims", "claim_transactions", "transactions_extract", "snapshot_claims")


def test_the_volume_check_appears_only_with_a_baseline_and_rounds_its_bounds_inwards():
    assert VOLUME_CHECK not in [c.key for c in build_checks(V, "as_recorded", SETTINGS)]
    (volume,) = [c for c in build_checks(V, "as_recorded", SETTINGS, baseline=11) if c.key == VOLUME_CHECK]
    assert (volume.kwargs["min_value"], volume.kwargs["max_value"]) == (6, 16)  # 5.5 and 16.5
    assert volume.description == "transaction count within 50% of the previous valuation's 11 (between 6 and 16)"
    keys = [c.key for c in build_checks(V, "as_recorded", SETTINGS, baseline=11)]
    assert keys.index(VOLUME_CHECK) == keys.index(ROW_COUNT_CHECK) + 1


def test_the_run_values_are_filled_in():
    restated = {c.key: c for c in build_checks(V, "restated", SETTINGS)}
    after_v = restated["transactions_extract.transaction_date.not_after_valuation"]
    assert after_v.description == "transaction date on or before V=2024-01-31"  # restated: later rows are no defect
    assert after_v.kwargs == {"column": "transaction_date", "max_value": V}
    assert restated["snapshot_claims.row_count.nonzero"].description.endswith("(restated) is not empty")
    bounds = restated["transactions_extract.paid_amount.bounds"].kwargs
    assert (bounds["min_value"], bounds["max_value"]) == (-1_000_000.0, 1_000_000.0)
    assert not any("{" in c.description for c in restated.values())


def test_uniqueness_is_scoped_to_new_rows_after_a_clean_month():
    full = {c.key: c for c in build_checks(V, "as_recorded", SETTINGS)}
    scoped = {c.key: c for c in build_checks(V, "as_recorded", SETTINGS, checked_through=dt.date(2023, 12, 31))}
    key = "transactions_extract.transaction_id.unique"
    assert full[key].kwargs["unexpected_rows_query"] == duplicates_query(["transaction_id"])
    assert scoped[key].kwargs["unexpected_rows_query"] == duplicates_query(["transaction_id"], dt.datetime(2024, 1, 1))
    assert full[key].description == "no duplicate transaction ids"
    assert "rows recorded after 2023-12-31" in scoped[key].description


def test_a_check_names_the_columns_it_reads():
    checks = {c.key: c for c in build_checks(V, "as_recorded", SETTINGS)}
    assert checks["transactions_extract.paid_amount.not_null"].column == "paid_amount"
    assert checks["transactions_extract.claim_date_amount.unique"].columns == [
        "claim_id",
        "transaction_date",
        "paid_amount",
    ]
    assert checks[ROW_COUNT_CHECK].column is None

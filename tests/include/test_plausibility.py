"""Month-level plausibility on a real synthetic book: 24 clean month ends (with the generator's legitimate drift)
raise no alarm, and each defect kind fails by name on SQLite and PostgreSQL.

One book per database for the module (8,000 claims, accident months 2019-01..2024-12, covariate drift from 2022-07,
development drift from 2022-10: faster settlement, 25% dearer claims). Each defect is applied inside a transaction
that is rolled back, and plausibility is computed on that transaction's connection, so the book stays clean.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pandas as pd
import pytest
from sqlalchemy import text

from devtools import synth
from devtools.book import load_book
from include.reserving import dates, schema
from include.reserving import plausibility as checks_module
from include.reserving.config import Settings
from include.reserving.plausibility import PlausibilityError, robust_band
from include.reserving.stages import RunFacts
from include.reserving.stages import input as input_stage
from include.reserving.warehouse import history
from include.reserving.warehouse import plausibility as store
from include.reserving.warehouse.core import make_engine
from tests.conftest import PG_ADMIN_URL, _pg_admin_engine

SPEC = synth.BookSpec(
    claims=8_000,
    start="2019-01",
    end="2024-12",
    seed=5,
    covariate_drift=synth.CovariateDrift("2022-07", younger_by=10, bi_shift=0.2),
    development_drift=synth.DevelopmentDrift("2022-10", payment_speedup=1.3, severity_factor=1.25),
)
CLEAN_MONTHS = [dates.add_months(dt.date(2022, 1, 31), m) for m in range(24)]  # 2022-01 .. 2023-12
V = dt.date(2023, 6, 30)
MONTH_START = dt.datetime(2023, 6, 1)
AFTER_V = dt.datetime(2023, 7, 1)
SETTINGS = Settings()


@pytest.fixture(scope="module")
def book():
    return synth.generate_book(SPEC)


@pytest.fixture(scope="module")
def sqlite_book(book, tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('plausibility') / 'warehouse.db'}")
    load_book(engine, book)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_book(book):
    admin = _pg_admin_engine()
    name = f"reserving_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        load_book(engine, book)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request):
    return request.getfixturevalue(f"{request.param}_book")


def evaluate(bind, valuation_date=V, basis="as_recorded", settings=SETTINGS, known_lines=()):
    aggregates = history.monthly_aggregates(bind, valuation_date, basis)
    return checks_module.evaluate(*aggregates, valuation_date, settings, known_lines=known_lines)


# --- the clean book -------------------------------------------------------------------------------------------------


def test_clean_book_raises_no_alarm_for_24_month_ends(sqlite_book):
    """Including the drift months (2022-07 on): not one failed check, and every volume check was judged."""
    for valuation_date in CLEAN_MONTHS:
        checks = evaluate(sqlite_book, valuation_date)
        assert not checks_module.failures(checks), checks_module.summary(checks, valuation_date, "as_recorded")
        assert not [c for c in checks if c.passed is None], valuation_date
        # 3 lines x (2 line-set + 7 volume + 1 case-raise + 2 positive + 2 defect checks) + the stall check
        assert len(checks) == 43


def test_clean_month_on_the_restated_basis_passes(engine):
    checks = evaluate(engine, V, basis="restated")
    assert not checks_module.failures(checks), checks_module.summary(checks, V, "restated")


def test_stage_stores_every_check_and_replaces_the_partition(sqlite_book, monkeypatch):
    schema.create_all(sqlite_book)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", f"sqlite:///{sqlite_book.url.database}")
    facts = RunFacts.create(V, "run-1")
    assert input_stage.plausibility(facts) == {"checks": 43, "skipped": 0}
    input_stage.plausibility(facts)
    stored = store.results(sqlite_book, V, "as_recorded")
    assert len(stored) == 43 and stored["passed"].all()
    paid = stored[(stored["segment"] == "Motor") & (stored["check"] == "paid")].iloc[0]
    assert paid["lower"] < paid["observed"] < paid["upper"]


# --- defects: each fails by name ------------------------------------------------------------------------------------

MOTOR = "(SELECT claim_id FROM claims WHERE line_of_business = 'Motor')"
LIABILITY = "(SELECT claim_id FROM claims WHERE line_of_business = 'Liability')"
IN_MONTH = "recorded_at >= :start AND recorded_at < :after"
TXN_COLUMNS = "claim_id, transaction_date, recorded_at, paid_amount, case_reserve_change, status"
CLAIM_COLUMNS = "policy_id, line_of_business, claim_type, accident_date, report_date, claimant_age, region"


def _copies(kind: str, count: int = 9) -> list[str]:
    """``count`` copies of the month's rows (transactions) or claims with new ids: 10x the month."""
    if kind == "transactions":
        return [
            f"INSERT INTO claim_transactions (transaction_id, {TXN_COLUMNS}) SELECT transaction_id || '-X{i}', "
            f"{TXN_COLUMNS} FROM claim_transactions WHERE {IN_MONTH} AND transaction_id NOT LIKE '%-X%'"
            for i in range(count)
        ]
    return [
        f"INSERT INTO claims (claim_id, {CLAIM_COLUMNS}) SELECT claim_id || '-X{i}', {CLAIM_COLUMNS} FROM claims "
        "WHERE report_date >= :start_day AND report_date <= :v AND claim_id NOT LIKE '%-X%'"
        for i in range(count)
    ]


def _nonfinite(dialect: str, value: str) -> str:
    if dialect == "postgresql":
        return f"'{value}'::float"
    return {"Infinity": "9e999", "-Infinity": "-9e999"}[value]  # SQLite stores NaN as NULL (NOT NULL column)


def _inflate_case_reserves(factor: float) -> list[str]:
    """The month's positive case-reserve changes of one line multiplied by ``factor``."""
    return [
        f"UPDATE claim_transactions SET case_reserve_change = case_reserve_change * {factor} "
        f"WHERE {IN_MONTH} AND case_reserve_change > 0 AND claim_id IN {LIABILITY}"
    ]


DEFECTS = {
    "case_reserves_x3_one_line": (_inflate_case_reserves(3), {("Liability", "case_reserve_raise")}),
    "amounts_x100_one_line": (
        [
            f"UPDATE claim_transactions SET paid_amount = paid_amount * 100, "
            f"case_reserve_change = case_reserve_change * 100 WHERE {IN_MONTH} AND claim_id IN {MOTOR}"
        ],
        {("Motor", "typical_paid"), ("Motor", "paid")},
    ),
    "transactions_x10": (_copies("transactions"), {("Motor", "transactions"), ("Property", "transactions")}),
    "new_claims_x10": (_copies("claims"), {("Motor", "new_claims")}),
    "line_missing": (
        [
            f"DELETE FROM claim_transactions WHERE {IN_MONTH} AND claim_id IN "
            "(SELECT claim_id FROM claims WHERE line_of_business = 'Property')",
            "DELETE FROM claim_transactions WHERE claim_id IN (SELECT claim_id FROM claims WHERE "
            "line_of_business = 'Property' AND report_date >= :start_day)",
            "DELETE FROM claims WHERE line_of_business = 'Property' AND report_date >= :start_day",
        ],
        {("Property", "line_missing")},
    ),
    "stalled_extract": (
        [f"DELETE FROM claim_transactions WHERE {IN_MONTH}"],
        {("ALL", "extract_stalled")},
    ),
    "premium_negated": (
        ["UPDATE earned_exposure SET earned_premium = -earned_premium WHERE month = :start_day"],
        {("Motor", "earned_premium_positive"), ("Liability", "earned_premium_positive")},
    ),
    "exposure_infinite": (
        ["UPDATE earned_exposure SET exposure_units = {inf} WHERE month = :start_day AND line_of_business = 'Motor'"],
        {("Motor", "exposure_positive")},
    ),
    "every_line_renamed": (
        ["UPDATE claims SET line_of_business = 'X-' || line_of_business"],
        {("Motor", "line_missing"), ("X-Motor", "earned_premium_positive"), ("X-Motor", "exposure_positive")},
    ),
    "recorded_before_transaction_date": (
        [
            "UPDATE claim_transactions SET recorded_at = :early WHERE transaction_id IN (SELECT transaction_id "
            f"FROM claim_transactions WHERE {IN_MONTH} AND transaction_date >= :mid AND claim_id IN {MOTOR})"
        ],
        {("Motor", "recorded_before_dated")},
    ),
    "status_upper_cased": (
        ["UPDATE claim_transactions SET status = UPPER(status)"],
        {("Motor", "status_values"), ("Property", "status_values"), ("Liability", "status_values")},
    ),
}
PARAMS = {
    "start": MONTH_START,
    "after": AFTER_V,
    "start_day": MONTH_START.date(),
    "v": V,
    "early": dt.datetime(2023, 6, 10, 8),
    "mid": dt.date(2023, 6, 15),
}


def checks_with_defect(engine, statements, known_lines=()):
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            for statement in statements:
                statement = statement.replace("{inf}", _nonfinite(engine.dialect.name, "Infinity"))
                names = [name for name in PARAMS if f":{name}" in statement]
                conn.execute(text(statement), {name: PARAMS[name] for name in names})
            return evaluate(conn, known_lines=known_lines)
        finally:
            transaction.rollback()


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_by_name(engine, defect):
    statements, expected = DEFECTS[defect]
    checks = checks_with_defect(engine, statements)
    failed = {(c.segment, c.check) for c in checks_module.failures(checks)}
    assert expected <= failed, (defect, sorted(failed))
    with pytest.raises(PlausibilityError) as raised:
        checks_module.raise_for_failures(checks, V, "as_recorded")
    message = str(raised.value)
    for segment, check in expected:
        assert f"{segment}: {check} observed " in message, message


def test_a_line_whose_whole_history_vanished_is_missed_by_the_lines_last_month_ingested(sqlite_book):
    """Property gone from claims, transactions and exposure alike: only last month's ingest still knows it."""
    statements = [
        "DELETE FROM claim_transactions WHERE claim_id IN (SELECT claim_id FROM claims WHERE "
        "line_of_business = 'Property')",
        "DELETE FROM claims WHERE line_of_business = 'Property'",
        "DELETE FROM earned_exposure WHERE line_of_business = 'Property'",
    ]
    assert not checks_module.failures(checks_with_defect(sqlite_book, statements))
    known = ["Liability", "Motor", "Property"]
    failed = checks_module.failures(checks_with_defect(sqlite_book, statements, known_lines=known))
    assert {(c.segment, c.check) for c in failed} == {
        ("Property", "line_missing"),
        ("Property", "earned_premium_positive"),
        ("Property", "exposure_positive"),
    }


def test_nan_exposure_fails_by_name(postgres_book):
    """PostgreSQL holds NaN in a float column (SQLite stores it as NULL, which the NOT NULL column refuses)."""
    statement = "UPDATE earned_exposure SET exposure_units = 'NaN'::float WHERE month = :start_day"
    checks = checks_with_defect(postgres_book, [statement])
    failed = {(c.segment, c.check): c for c in checks_module.failures(checks)}
    assert {("Motor", "exposure_positive"), ("Property", "exposure_positive")} <= set(failed)
    assert math.isnan(failed["Motor", "exposure_positive"].observed)
    assert "Motor: exposure_positive observed NaN outside [0, inf]" in failed["Motor", "exposure_positive"].explain()


def test_amounts_in_cents_are_caught_by_their_size(sqlite_book):
    statements, _ = DEFECTS["amounts_x100_one_line"]
    checks = {(c.segment, c.check): c for c in checks_with_defect(sqlite_book, statements)}
    clean = {(c.segment, c.check): c for c in evaluate(sqlite_book)}
    size = checks["Motor", "typical_paid"]
    assert size.observed == pytest.approx(100 * clean["Motor", "typical_paid"].observed, rel=1e-6)
    assert size.observed > 5 * size.upper  # far outside, not at the edge
    assert checks["Property", "typical_paid"].passed  # the other lines are untouched


@pytest.mark.parametrize(("factor", "also"), [(3, set()), (6, {("Liability", "case_movement")})], ids=["x3", "x6"])
def test_inflated_case_reserves_are_caught_claim_by_claim(sqlite_book, factor, also):
    """Each claim's raise over its own previous reserve scales by the factor, so the month's median does, against an
    unchanged band (same history, same claims). At x3 no other check sees it: the line's gross case movement is a
    sum that a heavy month moves as much (its band is x/÷ 4 wide)."""
    checks = {(c.segment, c.check): c for c in checks_with_defect(sqlite_book, _inflate_case_reserves(factor))}
    clean = {(c.segment, c.check): c for c in evaluate(sqlite_book)}
    inflated, before = checks["Liability", "case_reserve_raise"], clean["Liability", "case_reserve_raise"]
    assert before.passed and before.lower < before.observed < before.upper
    assert inflated.observed == pytest.approx(factor * before.observed, rel=1e-9)
    assert (inflated.lower, inflated.upper) == pytest.approx((before.lower, before.upper), rel=1e-12)
    assert inflated.observed > 1.2 * inflated.upper  # beyond the edge, not at it
    assert {(c.segment, c.check) for c in checks_module.failures(checks.values())} == {
        ("Liability", "case_reserve_raise"),
        *also,
    }
    assert "case reserves look inflated" in inflated.explain()


# A line of hand-made claims in the book's month (June 2023): T1..T5 had 100 of case reserve at the end of May and
# were raised by 10..50 in June (T1 also paid 50 and released 50: its raise stays 10). T6 opened in June, T7 was
# closed in May and reopened in June, T8 was only lowered: none counts. T9's May-dated raise of 60 was recorded in
# June: June's on the as-recorded basis, May's (when T9 had no reserve yet at the month before) on the restated.
HAND_MADE = [
    "INSERT INTO claims (claim_id, policy_id, line_of_business, claim_type, accident_date, report_date, "
    "claimant_age, region) VALUES "
    + ", ".join(
        f"('T{i}', 'P{i}', 'Test', 'PropertyDamage', '2023-05-01', '2023-05-02', 40, 'North')" for i in range(1, 10)
    ),
    "INSERT INTO claim_transactions (transaction_id, claim_id, transaction_date, recorded_at, paid_amount, "
    "case_reserve_change, status) VALUES "
    + ", ".join(
        [f"('T{i}-0', 'T{i}', '2023-05-02', '2023-05-02 10:00:00', 0, 100, 'open')" for i in (1, 2, 3, 4, 5, 7, 8, 9)]
        + [f"('T{i}-1', 'T{i}', '2023-06-10', '2023-06-10 10:00:00', 0, {10 * i}, 'open')" for i in range(1, 6)]
        + [
            "('T1-2', 'T1', '2023-06-20', '2023-06-20 10:00:00', 50, -50, 'open')",
            "('T6-0', 'T6', '2023-06-05', '2023-06-05 10:00:00', 0, 100, 'open')",
            "('T7-1', 'T7', '2023-05-20', '2023-05-20 10:00:00', 100, -100, 'closed')",
            "('T7-2', 'T7', '2023-06-15', '2023-06-15 10:00:00', 0, 80, 'reopened')",
            "('T8-1', 'T8', '2023-06-15', '2023-06-15 10:00:00', 0, -30, 'open')",
            "('T9-1', 'T9', '2023-05-25', '2023-06-02 10:00:00', 0, 60, 'open')",
        ]
    ),
]


def test_case_raises_per_claim_are_aggregated_in_the_database(engine):
    """Count and quartiles of raise / previous reserve per (line, month), on both databases and both bases."""
    june = dates.month_index(V)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            for statement in HAND_MADE:
                conn.execute(text(statement))
            frames = {basis: history.monthly_aggregates(conn, V, basis)[0] for basis in ("as_recorded", "restated")}
        finally:
            transaction.rollback()
    columns = ["raise_claims", "raise_q1", "raise_median", "raise_q3"]
    for basis, expected in (("as_recorded", [6, 0.2, 0.35, 0.5]), ("restated", [5, 0.2, 0.3, 0.4])):
        txn = frames[basis]
        row = txn[(txn["segment"] == "Test") & (txn["month"] == june)][columns].astype(float)
        assert row.iloc[0].tolist() == pytest.approx(expected, rel=1e-9), basis
    may = frames["as_recorded"]
    assert may[(may["segment"] == "Test") & (may["month"] == june - 1)]["raise_claims"].isna().all()


def _raise_history(months: int, claims: int = 40) -> pd.DataFrame:
    """Months whose raises have quartiles 0.1, 0.3, 0.5 on the log(1 + raise) scale."""
    return pd.DataFrame(
        {
            "raise_claims": [float(claims)] * months,
            "raise_q1": [math.expm1(0.1)] * months,
            "raise_median": [math.expm1(0.3)] * months,
            "raise_q3": [math.expm1(0.5)] * months,
        }
    )


def test_case_raise_band_is_the_median_standard_error_of_the_months_claims():
    """centre 0.3; sigma = 0.4 / 1.349; half = 5 x sqrt(pi / 2) x sigma / sqrt(100) = 0.185814 (log(1 + raise))."""
    centre, half = checks_module.raise_band(_raise_history(12), 100, width=5.0)
    assert centre == pytest.approx(0.3) and half == pytest.approx(0.185814, rel=1e-5)
    month = pd.Series({"raise_claims": 100.0, "raise_median": 0.35})
    check = checks_module.case_raise_check("Liability", month, _raise_history(12), SETTINGS)
    assert (check.lower, check.upper) == pytest.approx((12.0961, 62.5497), rel=1e-5)  # % of previous reserve
    assert check.passed and check.observed == pytest.approx(35.0)
    tripled = checks_module.case_raise_check(
        "Liability", pd.Series({"raise_claims": 100.0, "raise_median": 1.05}), _raise_history(12), SETTINGS
    )
    assert tripled.passed is False and tripled.observed == pytest.approx(105.0)
    # fewer claims, a wider band: at 25 claims the half-width doubles, and the lower bound stops at 0
    few = checks_module.case_raise_check(
        "Liability", pd.Series({"raise_claims": 25.0, "raise_median": 0.35}), _raise_history(12), SETTINGS
    )
    assert (few.lower, few.upper) == pytest.approx((0.0, 95.7421), rel=1e-5)


def test_case_raise_is_skipped_with_too_few_raised_claims_or_months():
    history = _raise_history(12)
    history.loc[:6, "raise_claims"] = 9.0  # seven months under plausibility_case_raise_min_claims: not history
    month = pd.Series({"raise_claims": 40.0, "raise_median": 0.35})
    check = checks_module.case_raise_check("Property", month, history, SETTINGS)
    assert check.passed is None and check.lower is None
    assert (
        check.detail
        == "skipped: 5 months of history with at least 10 raised claims, fewer than plausibility_min_history=6"
    )
    check = checks_module.case_raise_check(
        "Property", pd.Series({"raise_claims": 9.0, "raise_median": 0.35}), _raise_history(12), SETTINGS
    )
    assert check.passed is None and check.observed == pytest.approx(35.0)
    assert "9 claims open at the previous month end were raised" in check.detail
    assert checks_module.case_raise_check("Property", None, _raise_history(12), SETTINGS).passed is None


def test_an_admitted_new_line_with_no_history_is_skipped_not_failed(sqlite_book):
    """A new line in its first month: admitted by the setting, its volume checks skipped and recorded as such."""
    statements = [
        "INSERT INTO claims (claim_id, policy_id, line_of_business, claim_type, accident_date, report_date, "
        "claimant_age, region) SELECT claim_id || '-M', policy_id, 'Marine', claim_type, accident_date, report_date, "
        "claimant_age, region FROM claims WHERE line_of_business = 'Property' AND report_date >= :start_day",
        "INSERT INTO earned_exposure (line_of_business, month, earned_premium, exposure_units) "
        "VALUES ('Marine', :start_day, 1000.0, 10.0)",
    ]
    settings = Settings(admitted_new_lines=("Marine",))
    with sqlite_book.connect() as conn:
        transaction = conn.begin()
        try:
            for statement in statements:
                conn.execute(text(statement), {"start_day": MONTH_START.date()})
            checks = evaluate(conn, settings=settings)
            not_admitted = evaluate(conn)
        finally:
            transaction.rollback()
    marine = {c.check: c for c in checks if c.segment == "Marine"}
    assert not checks_module.failures(checks), checks_module.summary(checks, V, "as_recorded")
    assert marine["line_new"].passed and marine["line_new"].detail == "admitted by admitted_new_lines"
    assert marine["transactions"].passed is None and "skipped: 0 months of history" in marine["transactions"].detail
    assert {(c.segment, c.check) for c in checks_module.failures(not_admitted)} == {("Marine", "line_new")}


def test_robust_band_has_a_relative_floor_and_ignores_an_extreme_month():
    lower, upper = robust_band([100.0] * 12, width=10, relative_floor=0.5)
    assert lower == pytest.approx(100 / 1.5, rel=1e-3) and upper == pytest.approx(150, rel=1e-3)
    lower, upper = robust_band([100.0] * 11 + [1e9], width=10, relative_floor=0.5)
    assert upper == pytest.approx(150, rel=1e-3)


def test_the_slack_alert_lists_every_failed_check(sqlite_book):
    from include.reserving.notify import failure_message
    from tests.include.test_notify import _context

    checks = checks_with_defect(sqlite_book, DEFECTS["status_upper_cased"][0])
    with pytest.raises(PlausibilityError) as raised:
        checks_module.raise_for_failures(checks, V, "as_recorded")
    first, *rest = failure_message(_context(raised.value)).splitlines()
    assert (
        "Error: PlausibilityError: plausibility of the month ending 2023-06-30 (as_recorded): 40 passed, 3 failed"
        in (first)
    )
    assert [line.split(" observed ")[0] for line in rest[1:]] == [
        f"- {line}: status_values" for line in ("Liability", "Motor", "Property")
    ]
    assert "e.g. ['CLOSED'" in rest[2]  # the upper-cased value, by name

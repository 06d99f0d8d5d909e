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
        # 3 lines x (2 line-set + 7 volume + 2 positive + 2 defect checks) + the stall check
        assert len(checks) == 40


def test_clean_month_on_the_restated_basis_passes(engine):
    checks = evaluate(engine, V, basis="restated")
    assert not checks_module.failures(checks), checks_module.summary(checks, V, "restated")


def test_stage_stores_every_check_and_replaces_the_partition(sqlite_book, monkeypatch):
    schema.create_all(sqlite_book)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", f"sqlite:///{sqlite_book.url.database}")
    facts = RunFacts.create(V, "run-1")
    assert input_stage.plausibility(facts) == {"checks": 40, "skipped": 0}
    input_stage.plausibility(facts)
    stored = store.results(sqlite_book, V, "as_recorded")
    assert len(stored) == 40 and stored["passed"].all()
    paid = stored[(stored["segment"] == "Motor") & (stored["check"] == "paid")].iloc[0]
    assert paid["lower"] < paid["observed"] < paid["upper"]


# --- defects: each fails by name ------------------------------------------------------------------------------------

MOTOR = "(SELECT claim_id FROM claims WHERE line_of_business = 'Motor')"
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


DEFECTS = {
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
        "Error: PlausibilityError: plausibility of the month ending 2023-06-30 (as_recorded): 37 passed, 3 failed"
        in (first)
    )
    assert [line.split(" observed ")[0] for line in rest[1:]] == [
        f"- {line}: status_values" for line in ("Liability", "Motor", "Property")
    ]
    assert "e.g. ['CLOSED'" in rest[2]  # the upper-cased value, by name

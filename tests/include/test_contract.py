"""The data contract on SQLite and PostgreSQL: a clean hand-made book passes; each kind of breach is named by
table, column, expected and found, with examples; several breaches are all listed; ingest comes after the check.

The source tables are created here with plain DDL and no constraints, as a hostile extract may be (a view, a table
without a primary key, amounts declared as text), on one database per backend for the whole module.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import column, insert, table, text

from include.reserving import contract as c
from include.reserving.notify import failure_message
from include.reserving.stages import RunFacts, input
from include.reserving.warehouse.core import make_engine
from tests.conftest import PG_ADMIN_URL, _pg_admin_engine
from tests.include.quality.book import V, claims, transactions

DDL = {
    c.Family.TEXT: "VARCHAR(40)",
    c.Family.INTEGER: "INTEGER",
    c.Family.NUMERIC: "NUMERIC(18,2)",
    c.Family.FLOAT: "DOUBLE PRECISION",
    c.Family.DATE: "DATE",
    c.Family.TIMESTAMP: "TIMESTAMP",
}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path_factory):
    """One empty database per backend for the module; each test rebuilds the source tables in it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'warehouse.db'}"
        yield url
        return
    admin = _pg_admin_engine()
    name = f"reserving_c_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _iso(value):
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return None if value != value else value  # NaN -> NULL


def _rows(frame):
    return [{k: _iso(v) for k, v in row.items()} for row in frame.to_dict("records")]


def clean_book():
    """The quality tests' four claims and seven transactions, exposure for two months, control totals for V."""
    exposure = [
        {"line_of_business": lob, "month": f"2024-01-0{m}" if m == 1 else "2023-12-01", **amounts}
        for lob in ("Motor", "Property", "Liability")
        for m, amounts in (
            (1, {"earned_premium": 1000.0, "exposure_units": 10.0}),
            (2, {"earned_premium": 900.0, "exposure_units": 9.0}),
        )
    ]
    control = [
        {"line_of_business": "Motor", "month": "2024-01-01", "paid_amount": 800.0, "case_reserve_movement": -800.0},
    ]
    return {
        "claims": _rows(claims()),
        "claim_transactions": _rows(transactions()),
        "earned_exposure": exposure,
        "finance_control_totals": control,
    }


def build(url, book=None, types=None, rename=None, drop=()):
    """Recreate the source tables without constraints: ``types`` {(table, column): DDL type}, ``rename``
    {(table, column): new name}, ``drop`` tables or (table, column) pairs left out."""
    book = book or clean_book()
    types, rename = types or {}, rename or {}
    engine = make_engine(url)
    with engine.begin() as conn:
        for spec in c.TABLES:
            conn.execute(text(f'DROP TABLE IF EXISTS "{spec.name}"'))
            if spec.name in drop:
                continue
            cols = [
                (rename.get((spec.name, col.name), col.name), types.get((spec.name, col.name), DDL[col.family]))
                for col in spec.columns
                if (spec.name, col.name) not in drop
            ]
            conn.execute(text(f'CREATE TABLE "{spec.name}" (' + ", ".join(f'"{n}" {t}' for n, t in cols) + ")"))
            names = {old: rename.get((spec.name, old), old) for old in [col.name for col in spec.columns]}
            rows = [
                {names[k]: v for k, v in row.items() if (spec.name, k) not in drop} for row in book.get(spec.name, [])
            ]
            if rows:
                conn.execute(insert(table(spec.name, *[column(n) for n, _ in cols])), rows)
    engine.dispose()


def check(url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    return input.contract(RunFacts.create(V, "contract-test"))


def breaches(url, monkeypatch) -> list[c.Breach]:
    with pytest.raises(c.ContractViolation) as caught:
        check(url, monkeypatch)
    return caught.value.report.breaches


def is_pg(url):
    return url.startswith("postgresql")


def test_clean_book_passes(db, monkeypatch):
    build(db)
    assert check(db, monkeypatch) == {
        "tables": ["claim_transactions", "claims", "earned_exposure", "finance_control_totals"],
        "violations": 0,
    }


def test_control_totals_are_optional(db, monkeypatch):
    build(db, drop={"finance_control_totals"})
    assert check(db, monkeypatch)["tables"] == ["claim_transactions", "claims", "earned_exposure"]


def test_missing_table(db, monkeypatch):
    build(db, drop={"earned_exposure"})
    [b] = breaches(db, monkeypatch)
    assert (b.rule, b.table, b.column, b.found) == ("table", "earned_exposure", None, "no such table or view")


def test_missing_and_renamed_columns(db, monkeypatch):
    build(db, rename={("claims", "accident_date"): "acc_date"}, drop={("claim_transactions", "status")})
    found = {(b.rule, b.table, b.column): b for b in breaches(db, monkeypatch)}
    assert set(found) == {("column", "claims", "accident_date"), ("column", "claim_transactions", "status")}
    renamed = found["column", "claims", "accident_date"].explain()
    assert (
        "expected a column accident_date (date); found none (columns the contract does not know: acc_date)" in renamed
    )
    assert "rename the column" in renamed


def _one(book, name, key_col, key, col, value):
    for row in book[name]:
        if row[key_col] == key:
            row[col] = value


def test_amounts_as_text(db, monkeypatch):
    book = clean_book()
    _one(book, "claim_transactions", "transaction_id", "T2", "paid_amount", "1,200.00")
    build(db, book, types={("claim_transactions", "paid_amount"): "TEXT"})
    [b] = breaches(db, monkeypatch)
    assert (b.table, b.column) == ("claim_transactions", "paid_amount")
    if is_pg(db):  # PostgreSQL: the declared type is the breach, no value is read
        assert (b.rule, b.expected, b.found) == ("type", "type family numeric", "declared type text")
    else:  # SQLite: numeric-looking text would be converted on insert into a NUMERIC column, text stays text
        assert (b.rule, b.count, b.found) == ("values", 7, "7 values that are not")
        assert b.examples[:2] == (
            {"transaction_id": "T1", "claim_id": "C1", "paid_amount": "0.0"},
            {"transaction_id": "T2", "claim_id": "C1", "paid_amount": "1,200.00"},
        )


def test_dates_as_text_and_unparseable(db, monkeypatch):
    book = clean_book()
    _one(book, "claims", "claim_id", "C2", "accident_date", "01/12/2023")
    _one(book, "claims", "claim_id", "C3", "report_date", "2024-02-30")
    build(db, book, types={("claims", "accident_date"): "TEXT", ("claims", "report_date"): "TEXT"})
    found = {(b.table, b.column): b for b in breaches(db, monkeypatch)}
    assert set(found) == {("claims", "accident_date"), ("claims", "report_date")}
    if is_pg(db):
        assert {b.found for b in found.values()} == {"declared type text"}
    else:
        assert found["claims", "accident_date"].examples == ({"claim_id": "C2", "accident_date": "01/12/2023"},)
        assert found["claims", "report_date"].examples == ({"claim_id": "C3", "report_date": "2024-02-30"},)
        assert found["claims", "report_date"].expected == "dates written YYYY-MM-DD"


def test_sqlite_checks_values_of_declared_dates_and_timestamps(sqlite_url, monkeypatch):
    """SQLite only: PostgreSQL cannot store a malformed value in a date, timestamp or integer column."""
    db = sqlite_url
    book = clean_book()
    _one(book, "claim_transactions", "transaction_id", "T3", "transaction_date", "2023-12-3")
    _one(book, "claim_transactions", "transaction_id", "T4", "recorded_at", "yesterday")
    _one(book, "claims", "claim_id", "C1", "claimant_age", 34.5)
    build(db, book)
    found = {(b.table, b.column): (b.count, b.examples) for b in breaches(db, monkeypatch)}
    assert found == {
        ("claim_transactions", "transaction_date"): (
            1, ({"transaction_id": "T3", "claim_id": "C2", "transaction_date": "2023-12-3"},)),
        ("claim_transactions", "recorded_at"): (
            1, ({"transaction_id": "T4", "claim_id": "C2", "recorded_at": "yesterday"},)),
        ("claims", "claimant_age"): (1, ({"claim_id": "C1", "claimant_age": 34.5},)),
    }  # fmt: skip


def test_claim_with_two_accident_dates_two_lines_and_duplicate_ids(db, monkeypatch):
    book = clean_book()
    base = {r["claim_id"]: r for r in book["claims"]}
    book["claims"] += [
        {**base["C1"], "accident_date": "2023-11-03"},  # a second accident date
        {**base["C2"], "line_of_business": "Property"},  # a second line
        dict(base["C3"]),  # the same row twice
    ]
    build(db, book)
    found = {(b.rule, b.column): b for b in breaches(db, monkeypatch)}
    assert set(found) == {("unique", "claim_id"), ("one_per_claim", "accident_date"),
                          ("one_per_claim", "line_of_business")}  # fmt: skip
    duplicates = found["unique", "claim_id"]
    assert duplicates.count == 3 and duplicates.examples == (
        {"claim_id": "C1", "rows": 2}, {"claim_id": "C2", "rows": 2}, {"claim_id": "C3", "rows": 2})  # fmt: skip
    assert found["one_per_claim", "accident_date"].examples == (
        {"claim_id": "C1", "accident_date": ["2023-11-02", "2023-11-03"]},)  # fmt: skip
    assert found["one_per_claim", "line_of_business"].examples == (
        {"claim_id": "C2", "line_of_business": ["Motor", "Property"]},)  # fmt: skip


@pytest.mark.parametrize("col", ["claim_id", "line_of_business", "accident_date", "report_date"])
def test_null_keys_and_dates(db, monkeypatch, col):
    book = clean_book()
    _one(book, "claims", "claim_id", "C2", col, None)
    build(db, book)
    [b] = breaches(db, monkeypatch)
    assert (b.rule, b.table, b.column, b.count, b.found) == ("not_null", "claims", col, 1, "1 NULL values")


def test_amount_too_large_for_numeric_18_2_and_control_month(db, monkeypatch):
    book = clean_book()
    _one(book, "claim_transactions", "transaction_id", "T5", "case_reserve_change", 2.5e17)
    book["finance_control_totals"][0]["month"] = "2024-01-31"
    build(db, book, types={("claim_transactions", "case_reserve_change"): "NUMERIC"})
    found = {(b.rule, b.table, b.column): b for b in breaches(db, monkeypatch)}
    assert set(found) == {("range", "claim_transactions", "case_reserve_change"),
                          ("first_of_month", "finance_control_totals", "month")}  # fmt: skip
    assert found["range", "claim_transactions", "case_reserve_change"].examples == (
        {"transaction_id": "T5", "claim_id": "C3", "case_reserve_change": 2.5e17},)  # fmt: skip


def test_every_breach_is_listed_and_the_alert_shows_them(db, monkeypatch):
    book = clean_book()
    _one(book, "claims", "claim_id", "C4", "line_of_business", None)
    build(db, book, drop={"earned_exposure", ("claims", "region")})
    with pytest.raises(c.ContractViolation) as caught:
        check(db, monkeypatch)
    message = str(caught.value)
    assert message.splitlines()[0].endswith("3 violation(s); nothing was read. Fix the extract and re-run the run.")
    assert "VIOLATION earned_exposure: expected the table to exist" in message
    assert "VIOLATION claims.region: expected a column region (text)" in message
    null_line = "found 1 NULL values, e.g. [{'claim_id': 'C4', 'line_of_business': None}]"
    assert f"VIOLATION claims.line_of_business: expected no NULL values; {null_line}" in message
    alert = failure_message({"task": None, "exception": caught.value, "params": {"valuation_date": "2024-01-31"}})
    assert "Error: ContractViolation: source data contract" in alert
    assert "\nContract violations:\n- claims.region: expected a column region (text); found none" in alert
    assert alert.count("\n- ") == 3


def test_clean_synthetic_book_passes_and_reconciles(db, monkeypatch):
    """The generator's book (control totals included) meets the contract and reconciles, month after month."""
    from devtools.synth import BookSpec, write_book
    from include.reserving import schema

    build(db, drop={t.name for t in c.TABLES})
    schema.create_all(make_engine(db))
    write_book(db, BookSpec(claims=400, start="2022-01", end="2023-12", seed=3), progress=False)
    assert check(db, monkeypatch)["violations"] == 0
    for month_end in ("2022-03-31", "2023-06-30", "2023-12-31"):
        outcome = input.reconcile(RunFacts.create(month_end, "synthetic"))
        assert outcome == {"available": True, "lines": 3, "passed": True}, month_end


def test_the_contract_is_derived_from_the_schema():
    from include.reserving import schema

    assert [t.name for t in c.TABLES] == [t.name for t in schema.SOURCE_TABLES]
    claims_ = next(t for t in c.TABLES if t.name == "claims")
    assert claims_.unique_key == ("claim_id",) and not claims_.optional
    assert [(col.name, col.family, col.nullable) for col in claims_.columns][:5] == [
        ("claim_id", "text", False),
        ("policy_id", "text", False),
        ("line_of_business", "text", False),
        ("claim_type", "text", True),
        ("accident_date", "date", False),  # nullable in the schema, required by the contract
    ]
    txns = next(t for t in c.TABLES if t.name == "claim_transactions")
    assert txns.unique_key == () and txns.column("recorded_at").family == "timestamp"
    assert txns.column("paid_amount").is_amount and txns.column("paid_amount").family == "numeric"
    exposure = next(t for t in c.TABLES if t.name == "earned_exposure")
    assert exposure.unique_key == ("line_of_business", "month")
    assert exposure.column("exposure_units").family == "float" and not exposure.column("exposure_units").is_amount
    control = next(t for t in c.TABLES if t.name == "finance_control_totals")
    assert control.optional and control.unique_key == ("line_of_business", "month")

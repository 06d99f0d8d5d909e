"""A claims system of its own: another database (and, on PostgreSQL, another schema) with other table and column
names, mapped by the ``source_mapping`` setting. The contract check reads it by its names and says where a breach
is in it; landing copies its rows into the warehouse month by month, and the warehouse then holds exactly what a
direct load of the same book holds, as at every valuation."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from devtools.book import load_book
from devtools.synth import BookSpec, generate_book
from include.reserving import schema
from include.reserving.contract import ContractViolation
from include.reserving.domain import PublicationStatus
from include.reserving.sourcemap import SourceMapping, SourceMappingError
from include.reserving.stages import RunFacts, input
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine, read_frame
from tests.integration.monthly import run_month

V1, V2 = dt.date(2023, 6, 30), dt.date(2023, 12, 31)
SOURCE = {t.name: t for t in schema.SOURCE_TABLES}
# contract column -> the claims system's name (only where they differ)
RENAMES = {
    "claims": {"claim_id": "clm_no", "line_of_business": "lob", "accident_date": "loss_dt"},
    "claim_transactions": {
        "transaction_id": "txn_ref",
        "claim_id": "clm_no",
        "recorded_at": "entered_ts",
        "paid_amount": "paid",
    },
    "earned_exposure": {"line_of_business": "lob", "earned_premium": "premium"},
    "finance_control_totals": {"line_of_business": "lob"},
}
TABLES = {
    "claims": "clm_master",
    "claim_transactions": "clm_txn",
    "earned_exposure": "premium_earned",
    "finance_control_totals": "gl_totals",
}


@pytest.fixture(scope="module")
def book():
    return generate_book(BookSpec(claims=300, start="2022-01", end="2023-12", seed=3))


def mapping_for(source_schema: str | None) -> dict:
    return {
        name: {"table": TABLES[name], "columns": RENAMES[name], **({"schema": source_schema} if source_schema else {})}
        for name in TABLES
    }


def build_source(url: str, book, source_schema: str | None) -> None:
    """The book in a claims system's own names: loaded, copied under the new names, the contract's tables dropped."""
    engine = make_engine(url)
    load_book(engine, book)
    prefix = f"{source_schema}." if source_schema else ""
    with engine.begin() as conn:
        if source_schema:
            conn.execute(text(f"CREATE SCHEMA {source_schema}"))
        for name, new in TABLES.items():
            cols = ", ".join(f"{c.name} AS {RENAMES[name].get(c.name, c.name)}" for c in SOURCE[name].columns)
            conn.execute(text(f"CREATE TABLE {prefix}{new} AS SELECT {cols} FROM {name}"))
        for name in ("claim_transactions", "claims", "earned_exposure", "finance_control_totals"):
            conn.execute(text(f"DROP TABLE {name}"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def claims_system(request, book, tmp_path, monkeypatch):
    """(source url, warehouse url, mapping): the claims system and an empty warehouse, on one backend."""
    if request.param == "sqlite":
        source_url, warehouse_url = f"sqlite:///{tmp_path / 'claims.db'}", f"sqlite:///{tmp_path / 'warehouse.db'}"
        source_schema = None
    else:
        source_url, warehouse_url = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_url_2")
        source_schema = "claimsys"
    build_source(source_url, book, source_schema)
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMS_SOURCE", source_url)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return source_url, warehouse_url, mapping_for(source_schema)


def facts(valuation_date, mapping, run="landing"):
    return RunFacts.create(valuation_date, run, source_mapping=mapping)


def _table(url: str, table) -> pd.DataFrame:
    frame = read_frame(make_engine(url), select(table))
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_mapping_setting_names_what_the_contract_lacks():
    with pytest.raises(SourceMappingError, match=r"claims: \['claim_no'\] are not contract columns of claims"):
        SourceMapping.parse({"claims": {"columns": {"claim_no": "x"}}})
    with pytest.raises(SourceMappingError, match="'policies' is not a contract table"):
        SourceMapping.parse({"policies": {"table": "p"}})
    with pytest.raises(SourceMappingError, match="two contract columns map to one source column"):
        SourceMapping.parse({"claims": {"columns": {"claim_id": "region"}}})
    assert SourceMapping.parse({"claims": {"table": "claims"}}).identity


def test_contract_check_reads_the_claims_system_by_its_names(claims_system):
    source_url, _, mapping = claims_system
    assert input.contract(facts(V2, mapping))["violations"] == 0
    prefix = f"{mapping['claims']['schema']}." if "schema" in mapping["claims"] else ""
    with make_engine(source_url).begin() as conn:
        conn.execute(
            text(
                f"UPDATE {prefix}clm_master SET lob = NULL WHERE clm_no = (SELECT min(clm_no) FROM {prefix}clm_master)"
            )
        )
        conn.execute(text(f"ALTER TABLE {prefix}premium_earned RENAME COLUMN exposure_units TO units"))
    with pytest.raises(ContractViolation) as failed:
        input.contract(facts(V2, mapping))
    message = str(failed.value)
    assert (
        f"claims (source {prefix}clm_master).line_of_business (source lob): expected no NULL values; found 1" in message
    )
    assert (
        f"earned_exposure (source {prefix}premium_earned).exposure_units: expected a column exposure_units" in message
    )
    assert "columns the contract does not know: units" in message


def test_landing_month_by_month_equals_a_direct_load(claims_system, book, tmp_path):
    _, warehouse_url, mapping = claims_system
    first = input.land(facts(V1, mapping))
    assert first["landed"] and first["transactions"] > 0
    second = input.land(facts(V2, mapping))
    again = input.land(facts(V2, mapping, run="landing-rerun"))
    assert (again["transactions"], again["claims"]) == (0, 0)  # a re-run lands nothing twice

    recorded = book.transactions[book.transactions["recorded_at"] < pd.Timestamp(V2 + dt.timedelta(days=1))]
    assert first["transactions"] + second["transactions"] == len(recorded)
    landed = _table(warehouse_url, schema.claim_transactions)
    expected = recorded[landed.columns].sort_values(list(landed.columns)).reset_index(drop=True)
    assert landed["transaction_id"].tolist() == expected["transaction_id"].tolist()
    assert landed["paid_amount"].sum() == pytest.approx(expected["paid_amount"].sum(), abs=0.005)
    claims = _table(warehouse_url, schema.claims)
    reported = book.claims.loc[book.claims["report_date"] <= pd.Timestamp(V2), "claim_id"]
    assert sorted(claims["claim_id"]) == sorted(set(reported) | set(recorded["claim_id"]))
    assert first["claims"] + second["claims"] == len(claims)
    exposure = _table(warehouse_url, schema.earned_exposure)
    assert len(exposure) == len(book.exposure)
    assert exposure["earned_premium"].sum() == pytest.approx(book.exposure["earned_premium"].sum(), abs=0.005)

    # the cells the pipeline reserves from, as at both valuations, equal a direct load's to the cent
    direct_url = f"sqlite:///{tmp_path / 'direct.db'}"
    load_book(make_engine(direct_url), book)
    for valuation in (V1, V2):
        input.ingest(facts(valuation, mapping))
        landed_cells = load_cells(make_engine(warehouse_url), valuation, "as_recorded")
        direct = RunFacts.create(valuation, "direct", warehouse_conn_id="direct_db")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AIRFLOW_CONN_DIRECT_DB", direct_url)
            input.ingest(direct)
        direct_cells = load_cells(make_engine(direct_url), valuation, "as_recorded")
        pd.testing.assert_frame_equal(landed_cells, direct_cells)


@pytest.mark.postgres
def test_a_month_runs_end_to_end_from_a_mapped_claims_system(book, tmp_path, monkeypatch, pg_url, pg_url_2):
    build_source(pg_url, book, "claimsys")
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMS_SOURCE", pg_url.replace("postgresql+psycopg2://", "postgresql://"))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", pg_url_2)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RESERVING_SOURCE_MAPPING", json.dumps(mapping_for("claimsys")))
    # every task of the month in DAG order; no model approved yet, so the chain-ladder fallback reserves it
    published = run_month(RunFacts.create(V2, "mapped-e2e"))
    assert published["status"] == PublicationStatus.PRELIMINARY
    with make_engine(pg_url_2).connect() as conn:
        lines = conn.execute(select(func.count(func.distinct(schema.reserve_results.c.segment)))).scalar()
    assert lines == 3

"""Any SQLAlchemy PostgreSQL URL works for every entry point: the schema and loader CLIs given ``--db URL`` (a plain
``postgresql://`` gets psycopg 3 from SQLAlchemy 2.1, whose cursor has no ``copy_expert``) and the stages reaching the
warehouse through the ``reserving_db`` Airflow connection written as the same URL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from devtools import prism, synth
from include.reserving import schema
from include.reserving.config import connection_url
from include.reserving.dates import end_of_day
from include.reserving.stages import RunFacts
from include.reserving.stages import input as stages
from include.reserving.warehouse.core import make_engine

pytestmark = pytest.mark.postgres

V = dt.date(2023, 12, 31)
BOOK = synth.BookSpec(claims=600, start="2021-01", end="2023-12", seed=5)
BOOK_ARGS = ["--claims", "600", "--start", "2021-01", "--end", "2023-12", "--seed", "5", "--quiet"]
# URL scheme -> driver of the loaders' engine (the URL as given) and of the stages' engine (through the connection,
# where a URL naming no driver gets psycopg2)
SCHEMES = {
    "postgresql": ("psycopg", "psycopg2"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2"),
    "postgresql+psycopg": ("psycopg", "psycopg"),
}


@pytest.fixture(scope="module")
def expected() -> dict:
    """The month's extract worked out from the generated rows: claims reported by V, rows dated and recorded by V."""
    book = synth.generate_book(BOOK)
    txn = book.transactions
    known = txn[(txn["transaction_date"] <= pd.Timestamp(V)) & (txn["recorded_at"] <= pd.Timestamp(end_of_day(V)))]
    return {
        "claim_count": int((book.claims["report_date"] <= pd.Timestamp(V)).sum()),
        "transaction_count": len(known),
        "paid_total": round(float(known["paid_amount"].sum()), 2),
    }


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_the_month_runs_through_any_postgres_url(pg_url, scheme, expected, tmp_path, monkeypatch):
    # with a driver option in the query: it reaches the driver both ways (through the connection: as an extra)
    url = make_url(pg_url).set(drivername=scheme, query={"application_name": "any_url"})
    url = url.render_as_string(hide_password=False)
    loader_driver, stage_driver = SCHEMES[scheme]
    assert make_engine(url).dialect.driver == loader_driver
    schema.main(["--db", url])
    summary = synth.main([*BOOK_ARGS, "--db", url])
    assert summary.claims == 600

    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    facts = RunFacts.create(V, "manual__postgres_url")
    assert make_url(connection_url("reserving_db")).drivername == f"postgresql+{stage_driver}"
    with facts.engine().connect() as conn:
        assert conn.dialect.driver == stage_driver
        assert conn.execute(text("SHOW application_name")).scalar_one() == "any_url"
    assert stages.contract(facts)["violations"] == 0
    assert stages.reconcile(facts)["passed"]
    ingested = stages.ingest(facts)
    assert {k: ingested[k] for k in expected} == expected
    assert stages.validate(facts)["row_count"] == expected["transaction_count"]
    assert stages.drift(facts)["retrain"]  # no champion yet


def test_prism_loads_through_a_plain_postgresql_url(pg_url):
    url = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    schema.main(["--db", url])
    prism.main(["--db", url])

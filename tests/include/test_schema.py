import pytest
from sqlalchemy import inspect

from include.reserving import schema
from include.reserving.warehouse.core import make_engine


def test_create_all_is_idempotent_and_complete(warehouse):
    schema.create_all(warehouse)  # second time: nothing changes, nothing fails
    names = set(inspect(warehouse).get_table_names())
    assert set(schema.metadata.tables) <= names


@pytest.mark.postgres
def test_money_columns_are_exact_on_postgres(pg_url):
    """Every money column of every table is numeric(18,2) on PostgreSQL: amounts are stored to the cent."""
    engine = make_engine(pg_url)
    schema.create_all(engine)
    money = [(t.name, c.name) for t in schema.metadata.sorted_tables for c in t.columns if c.type is schema.Money]
    assert ("claim_transactions", "paid_amount") in money and ("reserve_results", "unpaid") in money
    inspector = inspect(engine)
    found = {(t, c): str(col["type"]) for t, c in money for col in inspector.get_columns(t) if col["name"] == c}
    engine.dispose()
    assert found == dict.fromkeys(money, "NUMERIC(18, 2)")


def test_connection_urls_from_airflow_connections(monkeypatch, tmp_path):
    from include.reserving.config import connection_url

    monkeypatch.setenv("AIRFLOW_CONN_WH_A", "postgresql+psycopg2://rs:s%40cret@db.example:5433/reserving")
    monkeypatch.setenv("AIRFLOW_CONN_WH_B", "postgres://rs@db.example/reserving")
    monkeypatch.setenv("AIRFLOW_CONN_WH_C", f"sqlite:///{tmp_path}/w.db")
    assert connection_url("wh_a") == "postgresql+psycopg2://rs:s%40cret@db.example:5433/reserving"
    assert connection_url("wh_b") == "postgresql+psycopg2://rs@db.example/reserving"
    assert connection_url("wh_c") == f"sqlite:///{tmp_path}/w.db"
    assert connection_url("undefined_conn", default="sqlite:///x.db") == "sqlite:///x.db"

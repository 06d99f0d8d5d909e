from sqlalchemy import inspect

from include.reserving import schema


def test_create_all_is_idempotent_and_complete(warehouse):
    schema.create_all(warehouse)  # second time: nothing changes, nothing fails
    names = set(inspect(warehouse).get_table_names())
    assert set(schema.metadata.tables) <= names


def test_money_columns_are_exact_on_postgres(warehouse):
    cols = {c["name"]: c for c in inspect(warehouse).get_columns("claim_transactions")}
    if warehouse.dialect.name == "postgresql":
        assert str(cols["paid_amount"]["type"]) == "NUMERIC(18, 2)"


def test_connection_urls_from_airflow_connections(monkeypatch, tmp_path):
    from include.reserving.config import connection_url

    monkeypatch.setenv("AIRFLOW_CONN_WH_A", "postgresql+psycopg2://rs:s%40cret@db.example:5433/reserving")
    monkeypatch.setenv("AIRFLOW_CONN_WH_B", "postgres://rs@db.example/reserving")
    monkeypatch.setenv("AIRFLOW_CONN_WH_C", f"sqlite:///{tmp_path}/w.db")
    assert connection_url("wh_a") == "postgresql+psycopg2://rs:s%40cret@db.example:5433/reserving"
    assert connection_url("wh_b") == "postgresql+psycopg2://rs@db.example/reserving"
    assert connection_url("wh_c") == f"sqlite:///{tmp_path}/w.db"
    assert connection_url("undefined_conn", default="sqlite:///x.db") == "sqlite:///x.db"

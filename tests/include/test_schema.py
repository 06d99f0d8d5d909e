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

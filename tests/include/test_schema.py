import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from include.reserving import schema
from include.reserving.warehouse.core import make_engine


def test_create_all_is_idempotent_and_complete(warehouse):
    assert schema.create_all(warehouse) == []  # second time: nothing changes, nothing fails, nothing to migrate
    names = set(inspect(warehouse).get_table_names())
    assert set(schema.metadata.tables) <= names


def test_a_warehouse_without_the_drift_window_index_gets_it_once(warehouse):
    """Drift reads V's claims by report date: a warehouse from before the index gets it from create_all, once."""
    with warehouse.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_snapshot_claims_report_date")
    assert schema.create_all(warehouse) == ["snapshot_claims: index on (valuation_date, basis, report_date) created"]
    assert schema.create_all(warehouse) == []
    index = {i["name"]: i for i in inspect(warehouse).get_indexes("snapshot_claims")}["ix_snapshot_claims_report_date"]
    assert index["column_names"] == ["valuation_date", "basis", "report_date"] and not index["unique"]


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


def test_connection_urls_keep_the_driver_and_the_driver_options(monkeypatch):
    from include.reserving.config import connection_url

    monkeypatch.setenv("AIRFLOW_CONN_WH_D", "postgresql+psycopg://rs@db.example/reserving?sslmode=require")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH_E",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "db",
                "schema": "r",
                "extra": {"connect_timeout": 5, "cursor": "dictcursor"},
            }
        ),
    )
    monkeypatch.setenv("AIRFLOW_CONN_WH_F", "postgresql+pg8000://rs@db.example/reserving")
    monkeypatch.setenv("AIRFLOW_CONN_WH_G", json.dumps({"conn_type": "postgres", "extra": {"options": ["-c"]}}))
    assert connection_url("wh_d") == "postgresql+psycopg://rs@db.example/reserving?sslmode=require"
    assert connection_url("wh_e") == "postgresql+psycopg2://db/r?connect_timeout=5"
    with pytest.raises(ValueError, match="connection 'wh_f' names the driver 'pg8000'; use postgresql://"):
        connection_url("wh_f")
    with pytest.raises(ValueError, match="connection 'wh_g': extra 'options' must be text or a number"):
        connection_url("wh_g")


# --- Migration of a warehouse built before issue 13: ``ibnr`` held ultimate - paid (the unpaid) -------------------

V = dt.date(2024, 1, 31)
PUBLISHED_AT = dt.datetime(2024, 2, 1, 6, 0)


def _old_reserve_tables() -> MetaData:
    """The reserve tables as the old DDL created them (copied from schema.py before the terms were split)."""
    old = MetaData()
    Table(
        "reserve_versions",
        old,
        Column("valuation_date", Date, primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("basis", String(16), nullable=False),
        Column("run_id", String(250), nullable=False),
        Column("model_version", String(80), nullable=False),
        Column("approval_ref", String(250)),
        Column("status", String(16), nullable=False),
        Column("is_current", Boolean, nullable=False),
        Column("ibnr_total", schema.Money, nullable=False),
        Column("published_at", DateTime, nullable=False),
    )

    def columns() -> list[Column]:
        return [
            Column("valuation_date", Date, nullable=False),
            Column("version", Integer, nullable=False),
            Column("segment", String(32), nullable=False),
            Column("origin", Date, nullable=False),
            Column("latest_paid", schema.Money, nullable=False),
            Column("latest_incurred", schema.Money),
            Column("ultimate", schema.Money, nullable=False),
            Column("ibnr", schema.Money, nullable=False),
            Column("std_err", schema.Money),
            Column("p75", schema.Money),
            Column("p95", schema.Money),
            Column("model_version", String(80), nullable=False),
            Column("approval_ref", String(250)),
        ]

    Table("reserve_results", old, *columns())
    Table("reserve_results_staging", old, Column("load_id", String(64), nullable=False), *columns())
    return old


# (version, origin month, latest_paid, latest_incurred, ultimate, old ibnr = ultimate - paid)
OLD_ROWS = [
    (1, 1, 1234.57, 2000.00, 2600.13, 1365.56),
    (1, 4, 500.00, 900.10, 850.05, 350.05),
    (2, 7, 10.00, None, 15.50, 5.50),  # incurred unknown
]
# after migration: (version, origin month, case_reserve, ibnr, unpaid), worked by hand:
# 2000.00 - 1234.57 = 765.43 and 2600.13 - 2000.00 = 600.13 (765.43 + 600.13 = 1365.56);
# 900.10 - 500.00 = 400.10 and 850.05 - 900.10 = -50.05 (400.10 - 50.05 = 350.05)
MIGRATED_ROWS = [(1, 1, 765.43, 600.13, 1365.56), (1, 4, 400.10, -50.05, 350.05), (2, 7, None, None, 5.50)]
# (version, unpaid_total, case_reserve_total, ibnr_total)
MIGRATED_VERSIONS = [(1, 1715.61, 1165.53, 550.08), (2, 5.50, None, None)]


def _build_old_warehouse(engine) -> None:
    old = _old_reserve_tables()
    old.create_all(engine)
    schema.reserve_movements.create(engine)  # unchanged table; its old step names are renamed
    with engine.begin() as conn:
        conn.execute(
            insert(old.tables["reserve_versions"]),
            [
                {
                    "valuation_date": V,
                    "version": version,
                    "basis": "as_recorded",
                    "run_id": f"run-{version}",
                    "model_version": "m1",
                    "status": "approved",
                    "is_current": version == 2,
                    "ibnr_total": total,
                    "published_at": PUBLISHED_AT,
                }
                for version, total in ((1, 1715.61), (2, 5.50))
            ],
        )
        rows = [
            {
                "valuation_date": V,
                "version": version,
                "segment": "Motor",
                "origin": dt.date(2023, month, 1),
                "latest_paid": paid,
                "latest_incurred": incurred,
                "ultimate": ultimate,
                "ibnr": unpaid,
                "std_err": 10.0,
                "model_version": "m1",
            }
            for version, month, paid, incurred, ultimate, unpaid in OLD_ROWS
        ]
        conn.execute(insert(old.tables["reserve_results"]), rows)
        conn.execute(insert(old.tables["reserve_results_staging"]), [{**rows[0], "load_id": "killed"}])
        conn.execute(
            insert(schema.reserve_movements),
            [
                {
                    "valuation_date": V,
                    "basis": "as_recorded",
                    "run_id": "run-1",
                    "segment": "Motor",
                    "step_order": n,
                    "step": step,
                    "kind": kind,
                    "amount": 1715.61,
                }
                for n, step, kind in (
                    (1, "previous unpaid (IBNR column)", "opening"),
                    (6, "this unpaid (IBNR column)", "closing"),
                )
            ],
        )


def _snapshot(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(select(t)).all())
            for t in (schema.reserve_results, schema.reserve_results_staging, schema.reserve_versions)
        } | {"steps": sorted(conn.execute(select(schema.reserve_movements.c.step)).scalars().all())}


def _cents(value) -> float | None:
    return None if value is None else round(float(value), 2)


def test_migration_splits_the_old_ibnr_into_case_reserves_ibnr_and_unpaid(warehouse_url):
    engine = make_engine(warehouse_url)
    _build_old_warehouse(engine)
    steps = schema.create_all(engine)
    assert "reserve_results.ibnr renamed unpaid (it held ultimate - paid)" in steps
    assert "reserve_versions.ibnr_total renamed unpaid_total (it held ultimate - paid)" in steps

    rs, rv = schema.reserve_results, schema.reserve_versions
    with engine.connect() as conn:
        rows = conn.execute(select(rs.c.version, rs.c.origin, rs.c.case_reserve, rs.c.ibnr, rs.c.unpaid)).all()
        totals = conn.execute(select(rv.c.version, rv.c.unpaid_total, rv.c.case_reserve_total, rv.c.ibnr_total)).all()
        staged = conn.execute(
            select(
                schema.reserve_results_staging.c.case_reserve,
                schema.reserve_results_staging.c.ibnr,
                schema.reserve_results_staging.c.unpaid,
            )
        ).all()
    migrated = sorted(
        (r.version, r.origin.month, _cents(r.case_reserve), _cents(r.ibnr), _cents(r.unpaid)) for r in rows
    )
    assert migrated == MIGRATED_ROWS
    for _, _, case, ibnr, unpaid in migrated:
        if case is not None:
            assert Decimal(f"{case:.2f}") + Decimal(f"{ibnr:.2f}") == Decimal(f"{unpaid:.2f}")
    assert sorted(tuple(_cents(v) if i else v for i, v in enumerate(t)) for t in totals) == MIGRATED_VERSIONS
    assert [tuple(_cents(v) for v in r) for r in staged] == [(765.43, 600.13, 1365.56)]
    # rows published before the methods were the model's ultimates: marked so, the other methods unknown
    with engine.connect() as conn:
        marks = conn.execute(select(rs.c.method, rs.c.model_ultimate, rs.c.ultimate, rs.c.paid_cl_ultimate)).all()
    assert {r.method for r in marks} == {"model"} and all(r.model_ultimate == r.ultimate for r in marks)
    assert all(r.paid_cl_ultimate is None for r in marks)
    assert f"reserve_results: {len(marks)} rows marked as the model's (method, model_ultimate)" in steps

    # a second run finds nothing to do and changes nothing
    before = _snapshot(engine)
    assert before["steps"] == ["previous unpaid", "this unpaid"]
    assert schema.create_all(engine) == []
    assert _snapshot(engine) == before

    # the migrated warehouse takes new publications and reads them back with every column
    from include.reserving.warehouse.reserves import current_reserves, publish_reserves

    current = current_reserves(engine, V)
    assert current[["case_reserve", "ibnr", "unpaid"]].iloc[0].isna().tolist() == [True, True, False]
    published = publish_reserves(
        engine, V, "run-3", current.drop(columns=["valuation_date", "version", "model_version", "approval_ref"]), "m2"
    )
    assert (published.version, published.unpaid_total, published.ibnr_total) == (3, 5.50, None)
    engine.dispose()


def test_migration_keys_approvals_by_run(warehouse_url):
    """An approvals table with the old unique key (V, version): its rows stay, and a later run may record a decision
    of its own on a version an earlier run decided (issue 14)."""
    engine = make_engine(warehouse_url)
    old = MetaData()
    Table(
        "approvals",
        old,
        *(column._copy() for column in schema.approvals.columns if column.name != "segment"),
        Index("ux_approvals_key", "valuation_date", "model_version", unique=True),
    )
    old.create_all(engine)
    row = {
        "valuation_date": V,
        "model_version": "m1",
        "decision": "reject",
        "decided_by": "bob",
        "decided_at": PUBLISHED_AT,
        "variable_key": "reserving_approval__2023-12-31",
    }
    with engine.begin() as conn:
        conn.execute(insert(old.tables["approvals"]).values(**row, run_id="run-1"))
    assert schema.create_all(engine) == [
        "approvals.segment added",
        "approvals: unique key ux_approvals_key dropped",
        "approvals: unique key (valuation_date, model_version, run_id, segment) created",
    ]
    assert schema.create_all(engine) == []
    # a decision per run and line (issue 15): the old row (segment NULL) stays
    line = {**row, "segment": "Motor"}
    with engine.begin() as conn:
        conn.execute(insert(schema.approvals).values(**{**line, "decision": "approve"}, run_id="run-2"))
        conn.execute(insert(schema.approvals).values(**{**line, "segment": "Liability"}, run_id="run-2"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(schema.approvals).values(**line, run_id="run-2"))
    with engine.connect() as conn:
        decided = conn.execute(
            select(schema.approvals.c.run_id, schema.approvals.c.segment, schema.approvals.c.decision)
        ).all()
    assert sorted(decided, key=str) == [
        ("run-1", None, "reject"),
        ("run-2", "Liability", "reject"),
        ("run-2", "Motor", "approve"),
    ]


def test_migration_makes_the_single_champion_every_lines_champion(warehouse_url):
    """A warehouse with one champion for the book (issue 15): the champion becomes every line's (the lines of the
    triangle cells), each history row is copied to every line, the old decision is kept as the book's ('ALL'); then
    a line's champion changes on its own."""
    from include.reserving.warehouse import registry
    from tests.conftest import model_entry

    engine = make_engine(warehouse_url)
    old = MetaData()
    Table(
        "model_registry",
        old,
        *(column._copy() for column in schema.model_registry.columns),
        Index(
            "ux_model_registry_one_champion",
            "status",
            unique=True,
            sqlite_where=text("status = 'champion'"),
            postgresql_where=text("status = 'champion'"),
        ),
    )
    Table("champion_history", old, *(c._copy() for c in schema.champion_history.columns if c.name != "segment"))
    Table("promotion_decisions", old, *(c._copy() for c in schema.promotion_decisions.columns if c.name != "segment"))
    schema.triangle_cells.to_metadata(old)
    old.create_all(engine)
    first, second = (model_entry("chain_ladder", V, {"n": n}) for n in (1, 2))
    for entry in (first, second):
        registry.register(engine, entry)  # the registry's columns did not change
    cell = {"valuation_date": V, "basis": "as_recorded", "origin": dt.date(2023, 1, 1), "development": 12}
    cell |= {"paid": 1.0, "incurred": 1.0, "reported_count": 1, "closed_count": 0}
    with engine.begin() as conn:
        conn.execute(
            update(schema.model_registry)
            .where(schema.model_registry.c.model_version == first.model_version)
            .values(status="retired")
        )
        conn.execute(
            update(schema.model_registry)
            .where(schema.model_registry.c.model_version == second.model_version)
            .values(status="champion")
        )
        conn.execute(insert(old.tables["triangle_cells"]), [{**cell, "segment": s} for s in ("Motor", "Liability")])
        history = {"action": "promoted", "changed_at": PUBLISHED_AT, "approved_by": "ada", "previous_version": None}
        conn.execute(
            insert(old.tables["champion_history"]),
            [
                {**history, "valuation_date": dt.date(2023, 12, 31), "model_version": first.model_version},
                {
                    **history,
                    "valuation_date": V,
                    "model_version": second.model_version,
                    "previous_version": first.model_version,
                },
            ],
        )
        conn.execute(
            insert(old.tables["promotion_decisions"]).values(
                valuation_date=V,
                champion_version=first.model_version,
                challenger_version=second.model_version,
                delta=0.01,
                decision="promote",
                reason="challenger better",
            )
        )
    steps = schema.create_all(engine)
    assert steps == [
        "model_registry: the one-champion index dropped (line_champions holds one per line)",
        "champion_history.segment added",
        f"line_champions: {second.model_version} is the champion of 2 lines",
        "champion_history: 2 rows copied to each of 2 lines",
        "promotion_decisions: keyed by (valuation_date, segment); 1 old rows kept as 'ALL'",
    ]
    assert schema.create_all(engine) == []
    champions = registry.champions(engine)
    assert {line: e.model_version for line, e in champions.items()} == {
        "Liability": second.model_version,
        "Motor": second.model_version,
    }
    for line in ("Liability", "Motor"):
        assert registry.champion_history(engine, line)[["model_version", "previous_version"]].fillna(
            "-"
        ).values.tolist() == [
            [first.model_version, "-"],
            [second.model_version, first.model_version],
        ]
    assert [(r.segment, r.decision) for r in registry.decisions_at(engine, V)] == [("ALL", "promote")]
    # one line moves on its own: the old champion stays Liability's
    registry.set_champion(engine, first.model_version, V, "promoted", ["Motor"], approved_by="bob")
    assert registry.champion_of(engine, "Liability").model_version == second.model_version
    assert (
        registry.get(engine, second.model_version).status
        == registry.get(engine, first.model_version).status
        == "champion"
    )
    engine.dispose()

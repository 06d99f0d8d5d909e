"""End-to-end: the real monthly DAG in dag.test() stops at the contract check or the reconciliation, before ingest
reads anything, and the one Slack alert names what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, text

from devtools.synth import BookSpec, write_book
from include.reserving import schema
from include.reserving.warehouse.core import make_engine

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)
DAMAGE = {
    # SQLite keeps text that is no number or date in a numeric or date column: ingest would die in pandas
    "contract": (
        "UPDATE claim_transactions SET paid_amount = '12,50' WHERE transaction_id = "
        "(SELECT min(transaction_id) FROM claim_transactions)",
        "UPDATE claims SET accident_date = '31/12/2023' WHERE claim_id = (SELECT min(claim_id) FROM claims)",
    ),
    "reconcile": (
        "UPDATE finance_control_totals SET paid_amount = paid_amount + 500 "
        "WHERE line_of_business = 'Motor' AND month = '2023-12-01'",
    ),
}


@pytest.mark.parametrize("stage", sorted(DAMAGE))
def test_a_breach_stops_the_run_before_ingest(pipeline_dag, tmp_path, slack_receiver, monkeypatch, stage):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url)
    schema.create_all(engine)
    write_book(url, BookSpec(claims=800, start="2021-01", end="2023-12", seed=5), progress=False)
    with engine.begin() as conn:
        for statement in DAMAGE[stage]:
            conn.execute(text(statement))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))

    run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    assert run.state == "failed"
    failed = run.get_task_instance(f"input.{stage}")
    assert (failed.state, failed.try_number) == ("failed", 1)
    assert run.get_task_instance("input.ingest").state == "upstream_failed"
    with engine.connect() as conn:
        assert conn.execute(select(schema.snapshot_claims)).first() is None  # nothing was read
    (message,) = [body["text"] for _, body in slack_receiver.received]
    head = f"Task 'input.{stage}' failed in monthly_reserving_pipeline for valuation 2023-12-31 (try 1 of 1). Error: "
    if stage == "contract":
        assert message.startswith(head + "ContractViolation: source data contract")
        assert "\nContract violations:\n- claims.accident_date: expected dates written YYYY-MM-DD; found 1" in message
        assert "'accident_date': '31/12/2023'" in message
        assert "- claim_transactions.paid_amount: expected numbers (not text); found 1 values" in message
    else:
        assert message.startswith(head + "ReconciliationError: reconciliation of 2023-12")
        assert "\nNot reconciled:\n- Motor paid: extract " in message and "difference -500.00" in message
        with engine.connect() as conn:
            stored = conn.execute(select(schema.reconciliation_results)).fetchall()
        assert len(stored) == 6 and sum(not r.passed for r in stored) == 1

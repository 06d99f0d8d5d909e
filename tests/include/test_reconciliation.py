"""Reconciliation to the finance control totals: the pure comparison, and the stage on SQLite and PostgreSQL over the
quality tests' hand-made book (its January 2024, as recorded by V: Motor paid 800.00 and case -800.00 from T4,
Property paid 0.00 and case 20,000.00 from T5; T6 is recorded after V and T7 dated after it)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import text

from include.reserving import schema
from include.reserving.notify import failure_message
from include.reserving.reconciliation import ReconciliationError, reconcile
from include.reserving.stages import RunFacts, input
from include.reserving.warehouse import reconciliation as store
from include.reserving.warehouse.core import insert_rows
from tests.include.quality.book import V, claims, transactions, url_of

FEBRUARY = dt.date(2024, 2, 1)


def _totals(rows):
    return pd.DataFrame(rows, columns=["segment", "paid", "case_reserve_movement"])


def test_reconcile_within_and_beyond_tolerance_and_missing_lines():
    extract = _totals([("Motor", 1000.00, 250.00), ("Property", 10_000.00, 50_000.00), ("Marine", 5.00, 0.00)])
    control = _totals([("Motor", 1000.99, 250.00), ("Property", 10_000.00, 50_060.00), ("Liability", 70.00, 30.00)])
    result = reconcile(V, extract, control, abs_tolerance=1.00, rel_tolerance=0.001)
    rows = {(r.segment, r.measure): r for r in result.rows}
    assert len(rows) == 8
    motor = rows["Motor", "paid"]
    assert (motor.difference, motor.tolerance, motor.passed) == (-0.99, 1.00, True)
    property_case = rows["Property", "case_reserve_movement"]  # tolerance 0.1% of 50,060.00 = 50.06 < 60.00
    assert (property_case.difference, property_case.tolerance, property_case.passed) == (-60.00, 50.06, False)
    assert rows["Liability", "paid"].explain() == "Liability paid: line Liability is missing from the extract"
    assert (rows["Liability", "paid"].extract_value, rows["Liability", "paid"].control_value) == (None, 70.00)
    assert rows["Marine", "paid"].note == "line Marine is missing from the control totals"
    assert [f"{r.segment} {r.measure}" for r in result.failures] == [
        "Liability paid",
        "Liability case_reserve_movement",
        "Marine paid",
        "Marine case_reserve_movement",
        "Property case_reserve_movement",
    ]
    assert not result.success and result.lines == 4


def _facts(engine, monkeypatch, run_id="recon-test"):
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url_of(engine))
    return RunFacts.create(V, run_id)


def _control(engine, rows):
    with engine.begin() as conn:
        conn.execute(schema.finance_control_totals.delete())
    insert_rows(
        engine,
        schema.finance_control_totals,
        [
            dict(zip(["line_of_business", "month", "paid_amount", "case_reserve_movement"], r, strict=True))
            for r in rows
        ],
    )


def test_stage_reconciles_stores_and_fails_by_name(warehouse, monkeypatch):
    insert_rows(warehouse, schema.claims, claims())
    insert_rows(warehouse, schema.claim_transactions, transactions())
    facts = _facts(warehouse, monkeypatch)
    january = V.replace(day=1)

    # the general ledger agrees to the cent, and has other months too
    _control(warehouse, [("Motor", january, 800.00, -800.00), ("Property", january, 0.00, 20_000.00),
                         ("Motor", FEBRUARY, 99.00, 99.00)])  # fmt: skip
    assert input.reconcile(facts) == {"available": True, "lines": 2, "passed": True}
    stored = store.results_frame(warehouse, V, "as_recorded")
    assert stored[["segment", "measure", "extract_value", "control_value", "difference"]].values.tolist() == [
        ["Motor", "case_reserve_movement", -800.00, -800.00, 0.00],
        ["Motor", "paid", 800.00, 800.00, 0.00],
        ["Property", "case_reserve_movement", 20_000.00, 20_000.00, 0.00],
        ["Property", "paid", 0.00, 0.00, 0.00],
    ]
    assert stored["tolerance"].tolist() == [1.00, 1.00, 20.00, 1.00] and stored["passed"].all()

    # a restated run reconciles as recorded too: T6 (Property, paid 300.00, dated 2024-01-29, recorded after V)
    # was not in the ledger's January either
    restated = RunFacts.create(V, "recon-restated", restated=True)
    assert input.reconcile(restated) == {"available": True, "lines": 2, "passed": True}
    assert store.results_frame(warehouse, V, "restated")["extract_value"].tolist() == [-800.0, 800.0, 20_000.0, 0.0]

    # a line the ledger has and the extract lacks, and a case movement 100.00 off (tolerance 20.10)
    _control(warehouse, [("Motor", january, 800.00, -800.00), ("Property", january, 0.00, 20_100.00),
                         ("Liability", january, 10.00, 0.00)])  # fmt: skip
    with pytest.raises(ReconciliationError) as caught:
        input.reconcile(facts)
    message = str(caught.value)
    assert message.splitlines()[0].startswith("reconciliation of 2024-01 to the finance control totals: 3 of 6")
    assert "  NOT RECONCILED Liability paid: line Liability is missing from the extract" in message
    assert (
        "  NOT RECONCILED Property case_reserve_movement: extract 20,000.00 vs control 20,100.00, "
        "difference -100.00 (tolerance 20.10)" in message
    )
    alert = failure_message({"task": None, "exception": caught.value, "params": {"valuation_date": V.isoformat()}})
    assert "\nNot reconciled:\n- Liability paid: line Liability is missing from the extract" in alert
    stored = store.results_frame(warehouse, V, "as_recorded")  # the failed outcome replaced the passed one
    assert len(stored) == 6 and stored["passed"].sum() == 3

    # no control totals for the month, then no table at all: a pass with a stored note
    _control(warehouse, [("Motor", FEBRUARY, 99.00, 99.00)])
    assert input.reconcile(facts) == {"available": False, "lines": 0, "passed": True}
    [note] = store.results_frame(warehouse, V, "as_recorded").to_dict("records")
    assert (
        note["segment"] == "ALL"
        and note["passed"]
        and note["note"].startswith("not available: finance_control_totals has no rows for the month (2024-01)")
    )
    with warehouse.begin() as conn:
        conn.execute(text("DROP TABLE finance_control_totals"))
    assert input.reconcile(facts)["available"] is False
    assert "the table does not exist" in store.results_frame(warehouse, V, "as_recorded")["note"].iloc[0]

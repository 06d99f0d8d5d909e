"""The real monthly DAG in dag.test() with segments of line x region (setting segment_by): every task runs on the pairs
(the gate, plausibility per line, drift, one mapped reserve task per pair, the publication, the report), and the
month publishes one row set per pair whose paid and case reserves tie to the book's lines to the cent."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from include.reserving.stages import RunFacts, input
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine, read_frame
from include.reserving.warehouse.reserves import current_reserves, versions

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)


def test_a_month_by_line_and_region_runs_the_dag_with_a_champion_per_pair(
    pipeline_dag, pipeline_env, slack_receiver, monkeypatch
):
    monkeypatch.setenv("RESERVING_SEGMENT_BY", "line_of_business,region")
    # a quiet month (see test_dag_run.py's): the pairs' champion reserves them, no training
    monkeypatch.setenv("RESERVING_PSI_THRESHOLD", "50")
    monkeypatch.setenv("RESERVING_AVE_TOLERANCE", "50")
    november = RunFacts.create(dt.date(2023, 11, 30), "earlier-month")
    input.ingest(november)
    engine = make_engine(pipeline_env)
    cells = load_cells(engine, november.valuation_date)
    pairs = sorted(cells["segment"].unique())
    assert len(pairs) == 15 and all(" | " in s for s in pairs)
    champion = fit_and_register(engine, november, {"method": "chain_ladder", "params": {}}, cells)
    registry.set_champion(engine, champion.model_version, november.valuation_date, "promoted", pairs, approved_by="Ada")

    run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    assert run.state == "success"
    states = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, []).append(ti.state)
    assert states["input.plausibility"] == ["success"] and states["training.skip_training"] == ["success"]
    assert states["reserving.reserve_segment"] == ["success"] * 15  # one mapped task per pair
    assert states["reporting.report"] == ["success"]
    published = versions(engine, V)
    assert published["status"].tolist() == ["approved"]
    rows = current_reserves(engine, V)
    assert sorted(rows["segment"].unique()) == pairs
    # paid and case reserves per line: the pairs' rows sum to the transactions as recorded by V, to the cent
    book = read_frame(
        engine,
        text(
            "SELECT c.line_of_business AS line, ROUND(SUM(t.paid_amount), 2) AS paid, "
            "ROUND(SUM(t.case_reserve_change), 2) AS case_reserve FROM claim_transactions t "
            "JOIN claims c ON c.claim_id = t.claim_id WHERE t.transaction_date <= '2023-12-31' "
            "AND t.recorded_at < '2024-01-01' AND c.report_date <= '2023-12-31' GROUP BY c.line_of_business"
        ),
    ).set_index("line")
    by_line = rows.assign(line=rows["segment"].str.split(" | ", regex=False).str[0]).groupby("line")
    assert by_line["latest_paid"].sum().round(2).to_dict() == book["paid"].to_dict()
    assert by_line["case_reserve"].sum().round(2).to_dict() == book["case_reserve"].to_dict()
    assert slack_receiver.received == []

"""End-to-end: the real monthly DAG in dag.test() on a synthetic book, approved by an actuary from another thread
through a real api-server (as in the UI); the sensor reads who wrote the approval from Airflow's audit log."""

from __future__ import annotations

import datetime as dt
import email
import os
import threading
import time
from email import policy
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from include.reserving import artifacts, methods, schema
from include.reserving.approval import approval_key, approval_value
from include.reserving.cells import latest_diagonal
from include.reserving.config import load_settings
from include.reserving.models import load_model
from include.reserving.publish import reserve_rows, selected_ultimates
from include.reserving.warehouse import decisions, registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import current_reserves, ranges_of, versions

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)


def _approve_when_asked(url: str, api, stop: threading.Event, seen: dict) -> None:
    """The actuary ada: waits for the model card of V (its code), then approves in the UI (the REST API)."""
    engine = make_engine(url)
    pd_ = schema.promotion_decisions
    while not stop.is_set():
        with engine.connect() as conn:
            row = conn.execute(select(pd_).where(pd_.c.valuation_date == V)).first()
        issued = row and decisions.issued(engine, decisions.MODEL, V, row.challenger_version)
        if row is not None and row.decision == "promote" and issued:
            seen["challenger"] = row.challenger_version
            value = approval_value(row.challenger_version, "approve", "Test Actuary", "ok", issued.code)
            seen["status"] = api.set_variable("ada", approval_key(V), value)
            return
        time.sleep(0.5)


def test_first_month_trains_asks_for_approval_and_publishes(
    pipeline_dag, pipeline_env, smtp_server, slack_receiver, airflow_api, monkeypatch
):
    from airflow.models.variable import Variable
    from pypdf import PdfReader

    monkeypatch.setenv("RESERVING_SMTP_CONN_ID", "reserving_smtp_test")
    monkeypatch.setenv("RESERVING_APPROVERS", "ada")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_AIRFLOW_API", airflow_api.conn_uri("auditor"))
    Variable.delete(approval_key(V))  # the Airflow home outlives a test

    stop, seen = threading.Event(), {}
    actuary = threading.Thread(target=_approve_when_asked, args=(pipeline_env, airflow_api, stop, seen), daemon=True)
    actuary.start()
    try:
        run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    finally:
        stop.set()
        actuary.join(timeout=10)
        Variable.delete(approval_key(V))
    assert run.state == "success"

    engine = make_engine(pipeline_env)
    champion = registry.champion(engine)
    assert champion is not None and champion.model_version == seen["challenger"]
    assert registry.approvals(engine)[["decision", "decided_by"]].values.tolist() == [["approve", "ada"]]
    table = versions(engine, V)
    assert table[["version", "is_current", "status", "run_id"]].values.tolist() == [[1, True, "approved", run.run_id]]

    # published: the ultimate selected per origin by the methods' rule, the champion's ultimates among them, to the cent
    cells = load_cells(engine, V)
    model = load_model(champion.artifact_uri)
    book = methods.reserve_book(cells, load_settings(), model_ultimates=model.ultimates(cells))
    expected = reserve_rows(selected_ultimates(book.origins), latest_diagonal(cells))
    published = current_reserves(engine, V)
    for column in ("ultimate", "case_reserve", "ibnr", "unpaid", "model_ultimate", "paid_cl_ultimate", "bf_ultimate"):
        assert published[column].tolist() == expected[column].tolist(), column
    assert published["method"].tolist() == book.origins["selected_method"].tolist()
    assert set(published["method"]) <= {"paid_cl", "bf"}  # the default rule: paid CL where mature, else BF
    assert (
        published["model_ultimate"].tolist()
        == reserve_rows(model.ultimates(cells), latest_diagonal(cells))["ultimate"].tolist()
    )
    # the version's ranges: one row per line and the total, around the published unpaid to the cent
    ranges = ranges_of(engine, V, 1)
    lines = published.groupby("segment")["unpaid"].sum().round(2)
    assert ranges["segment"].tolist() == [*lines.index, "Total"]
    assert ranges["unpaid"].tolist() == [*lines.tolist(), round(published["unpaid"].sum(), 2)]
    assert ranges["std_err"].iloc[-1] == pytest.approx((ranges["std_err"].iloc[:-1] ** 2).sum() ** 0.5, abs=0.01)
    assert (ranges["p95"] > ranges["p75"]).all()
    for total, column in (("unpaid_total", "unpaid"), ("case_reserve_total", "case_reserve"), ("ibnr_total", "ibnr")):
        assert round(published[column].sum(), 2) == table[total].iloc[0]
    # every published row: unpaid = case reserves + IBNR, to the cent
    assert ((published["case_reserve"] + published["ibnr"] - published["unpaid"]).abs() < 0.005).all()
    assert published["latest_paid"].sum() == pytest.approx(latest_diagonal(cells)["paid"].sum(), abs=0.005)

    # the model card went out before the approval, the report after publication; attachments are the files
    subjects = [email.message_from_bytes(raw, policy=policy.default)["Subject"] for _, _, raw in smtp_server.messages]
    assert subjects == [
        f"Approval needed: model {champion.model_version} for valuation 2023-12-31",
        "Reserve report as at 2023-12-31 (APPROVED)",
    ]
    assert all(to == ["chief.actuary@example.com"] for _, to, _ in smtp_server.messages)
    report_mail = email.message_from_bytes(smtp_server.messages[1][2], policy=policy.default)
    (attachment,) = [part for part in report_mail.iter_attachments()]
    report_path = next(Path(os.environ["RESERVING_ARTIFACT_ROOT"]).rglob("reserve_report_2023-12-31.pdf"))
    assert attachment.get_payload(decode=True) == report_path.read_bytes()
    text = "\n".join(page.extract_text() for page in PdfReader(report_path).pages)
    sums = published.groupby("segment")[["case_reserve", "ibnr", "unpaid"]].sum().round(2)
    for column in sums:
        assert f"{published[column].sum():,.2f}" in text
    for segment, line in sums.iterrows():
        assert segment in text and all(f"{v:,.2f}" in text for v in line)
        assert f"{segment}: methods and selection" in text
    # the ranges table: every line's and the total's P95; each line's methods page states the rule
    assert all(f"{v:,.2f}" in text for v in ranges["p95"])
    assert text.count("Selection rule:") == len(sums)
    assert f"{table['unpaid_total'].iloc[0]:,.2f} = case reserves" in report_mail.get_body().get_content()

    # Slack heard about the promotion, and nothing failed
    messages = [body["text"] for _, body in slack_receiver.received]
    assert len(messages) == 1 and "promoted to champion" in messages[0]
    with engine.connect() as conn:
        health = conn.execute(select(schema.pipeline_runs)).one()
    assert (health.run_id, health.state, health.valuation_date) == (run.run_id, "success", V)


@pytest.mark.parametrize("slack", ["up", "answers-500", "down"])
def test_bad_data_stops_the_run_and_pages_once(pipeline_dag, tmp_path, slack_receiver, monkeypatch, slack):
    """Injected defects: the gate fails (no retry), nothing downstream runs or publishes, one Slack message; a
    Slack outage changes nothing but the message."""
    from devtools.synth import BookSpec, Defects, write_book

    url = f"sqlite:///{tmp_path / 'bad.db'}"
    schema.create_all(make_engine(url))
    write_book(
        url,
        BookSpec(claims=1500, start="2021-01", end="2023-12", seed=5, defects=Defects(bad_ages=3, unknown_types=2)),
        progress=False,
    )
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))

    if slack == "answers-500":
        slack_receiver.status = 500
    elif slack == "down":
        slack_receiver.shutdown()
        slack_receiver.server_close()

    run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    assert run.state == "failed"
    engine = make_engine(url)
    assert versions(engine, V).empty and registry.champion(engine) is None
    ti = run.get_task_instance("input.validate")
    assert (ti.state, ti.try_number) == ("failed", 1)
    with engine.connect() as conn:
        health = conn.execute(select(schema.pipeline_runs)).one()
    assert (health.state, health.failed_task) == ("failed", "input.validate")
    if slack == "down":
        return
    (message,) = [body["text"] for _, body in slack_receiver.received]
    assert message.startswith(
        "Task 'input.validate' failed in monthly_reserving_pipeline for valuation 2023-12-31 "
        "(try 1 of 1). Error: QualityGateError"
    )
    assert "claimant_age" in message and "claim_type" in message
    # the alert links the gate's Data Docs in the Reserving view, which serves them from the run's quality folder
    link = message.splitlines()[-1]
    assert link.startswith("Data Docs: http") and link.endswith(f"/data-docs/2023-12-31/{quote(run.run_id, safe='')}/")
    docs = Path(artifacts.run_dir(str(tmp_path / "artifacts"), V, run.run_id), "quality", "data_docs", "index.html")
    assert docs.is_file()


def test_a_quiet_month_skips_training_and_reserves_with_the_champion(
    pipeline_dag, pipeline_env, slack_receiver, monkeypatch
):
    """With an approved champion and no drift, the branch skips training and governance; nobody is asked."""
    from include.reserving.stages import RunFacts, input
    from include.reserving.stages.training import fit_and_register

    # ~60 claims a month make PSI noisy: loose thresholds make this small book a quiet month (PSI itself is
    # calibrated on a 45,000-claim book in tests/include/test_drift_scenarios.py)
    monkeypatch.setenv("RESERVING_PSI_THRESHOLD", "50")
    monkeypatch.setenv("RESERVING_AVE_TOLERANCE", "50")

    facts = RunFacts.create(dt.date(2023, 11, 30), "earlier-month")
    input.ingest(facts)
    engine = make_engine(pipeline_env)
    champion = fit_and_register(
        engine, facts, {"method": "chain_ladder", "params": {}}, load_cells(engine, facts.valuation_date)
    )
    registry.set_champion(engine, champion.model_version, facts.valuation_date, "promoted", approved_by="Ada Actuary")

    run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))

    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["input.drift"] == "success" and states["training.skip_training"] == "success"
    for skipped in (
        "training.train",
        "training.evaluate",
        "governance.model_card",
        "governance.await_approval",
        "governance.apply_approval",
    ):
        assert states[skipped] == "skipped", skipped
    assert states["reserving.publish"] == "success" and states["reporting.report"] == "success"
    # the champion's spec refitted on December's data: routine, recorded, no approval
    history = registry.champion_history(engine)
    assert history.action.tolist() == ["promoted", "refitted"]
    assert registry.approvals(engine).empty
    published = versions(engine, V)
    assert published[["status", "model_version"]].values.tolist() == [["approved", history.model_version.iloc[-1]]]
    assert slack_receiver.received == []

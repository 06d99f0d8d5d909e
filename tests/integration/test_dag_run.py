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

import pandas as pd
import pytest
from sqlalchemy import select

from include.reserving import artifacts, governance, methods, schema
from include.reserving.approval import approval_key, approval_value
from include.reserving.cells import latest_diagonal
from include.reserving.config import load_settings
from include.reserving.ingest import cells_hash
from include.reserving.models import load_model
from include.reserving.publish import reserve_rows, selected_ultimates
from include.reserving.warehouse import decisions, registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import current_reserves, ranges_of, versions

pytestmark = pytest.mark.slow

V = dt.date(2023, 12, 31)


def _decide_when_asked(url: str, api, stop: threading.Event, seen: dict) -> None:
    """The actuary ada: waits for the model card of V (its code), then, in the UI (the REST API), approves every line
    on it but one, which she rejects: a line whose challenger is not the chain-ladder fallback's spec, so that what
    reserves it afterwards differs from its challenger."""
    engine = make_engine(url)
    pd_ = schema.promotion_decisions
    while not stop.is_set():
        with engine.connect() as conn:
            rows = conn.execute(select(pd_).where(pd_.c.valuation_date == V)).all()
        promote = {r.segment: r.challenger_version for r in rows if r.decision == "promote"}
        proposal = governance.proposal_id(V, promote)
        issued = proposal and decisions.issued(engine, decisions.MODEL, V, proposal)
        if issued:
            fallback = governance.spec_hash(governance.FALLBACK_SPEC)
            rejected = next(
                (
                    line
                    for line, v in sorted(promote.items())
                    if governance.spec_hash(registry.get(engine, v).spec) != fallback
                ),
                sorted(promote)[-1],
            )
            seen.update(promote=promote, proposal=proposal, rejected=rejected)
            value = approval_value(proposal, "approve", "Test Actuary", "ok", issued.code, lines={rejected: "reject"})
            seen["status"] = api.set_variable("ada", approval_key(V), value)
            return
        time.sleep(0.5)


def test_first_month_one_card_a_line_approved_another_rejected_each_line_published_by_its_model(
    pipeline_dag, pipeline_env, smtp_server, slack_receiver, airflow_api, monkeypatch
):
    """The first month trains a challenger per line; one model card asks about every line; the actuary approves all
    but one. Each approved line is published by its challenger (now its champion), the rejected line, without a
    champion, by the chain-ladder fallback (so the month is PRELIMINARY); the report and the e-mails say which model
    reserved which line."""
    from airflow.models.variable import Variable
    from pypdf import PdfReader

    monkeypatch.setenv("RESERVING_SMTP_CONN_ID", "reserving_smtp_test")
    monkeypatch.setenv("RESERVING_APPROVERS", "ada")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_AIRFLOW_API", airflow_api.conn_uri("auditor"))
    Variable.delete(approval_key(V))  # the Airflow home outlives a test

    stop, seen = threading.Event(), {}
    actuary = threading.Thread(target=_decide_when_asked, args=(pipeline_env, airflow_api, stop, seen), daemon=True)
    actuary.start()
    try:
        run = pipeline_dag.test(logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    finally:
        stop.set()
        actuary.join(timeout=10)
        Variable.delete(approval_key(V))
    assert run.state == "success"

    engine = make_engine(pipeline_env)
    cells = load_cells(engine, V)
    lines = sorted(cells["segment"].unique())
    promote, rejected = seen["promote"], seen["rejected"]
    assert sorted(promote) == lines and len(lines) > 1  # no champion anywhere: every line on the card
    approved = [line for line in lines if line != rejected]
    champions = {line: entry.model_version for line, entry in registry.champions(engine).items()}
    assert champions == {line: promote[line] for line in approved}  # the rejected line has none
    decided = registry.approvals(engine)
    assert decided[["segment", "model_version", "decision", "decided_by"]].values.tolist() == [
        [line, promote[line], "reject" if line == rejected else "approve", "ada"] for line in lines
    ]
    fallback = governance.model_version_id(governance.FALLBACK_SPEC, V, cells_hash(cells))
    models = {line: champions.get(line, fallback) for line in lines}
    assert models[rejected] != promote[rejected]
    table = versions(engine, V)
    label = models[lines[0]] if len(set(models.values())) == 1 else f"per line: {len(set(models.values()))} models"
    assert table[["version", "is_current", "status", "run_id", "model_version"]].values.tolist() == [
        [1, True, "preliminary", run.run_id, label]
    ]

    # published: each line by its own model; the ultimate selected per origin by the methods' rule, to the cent
    published = current_reserves(engine, V)
    assert published.groupby("segment")["model_version"].unique().map(list).to_dict() == {
        line: [models[line]] for line in lines
    }
    ids = decided.set_index("segment")["id"]
    refs = {line: None if pd.isna(r.iloc[0]) else r.iloc[0] for line, r in published.groupby("segment")["approval_ref"]}
    assert refs == {
        **{line: f"approvals.id={ids[line]} (ada)" for line in approved},
        rejected: None,
    }
    ultimates = pd.concat(
        [
            load_model(registry.get(engine, models[line]).artifact_uri).ultimates(cells).query("segment == @line")
            for line in lines
        ],
        ignore_index=True,
    )
    book = methods.reserve_book(cells, load_settings(), model_ultimates=ultimates)
    expected = reserve_rows(selected_ultimates(book.origins), latest_diagonal(cells))
    for column in ("ultimate", "case_reserve", "ibnr", "unpaid", "model_ultimate", "paid_cl_ultimate", "bf_ultimate"):
        assert published[column].tolist() == expected[column].tolist(), column
    assert published["method"].tolist() == book.origins["selected_method"].tolist()
    # the version's ranges: one row per line and the total, around the published unpaid to the cent
    ranges = ranges_of(engine, V, 1)
    by_line = published.groupby("segment")["unpaid"].sum().round(2)
    assert ranges["segment"].tolist() == [*by_line.index, "Total"]
    assert ranges["unpaid"].tolist() == [*by_line.tolist(), round(published["unpaid"].sum(), 2)]
    for total, column in (("unpaid_total", "unpaid"), ("case_reserve_total", "case_reserve"), ("ibnr_total", "ibnr")):
        assert round(published[column].sum(), 2) == table[total].iloc[0]
    assert ((published["case_reserve"] + published["ibnr"] - published["unpaid"]).abs() < 0.005).all()

    # the model card went out before the decision, naming every line; the report after publication
    subjects = [email.message_from_bytes(raw, policy=policy.default)["Subject"] for _, _, raw in smtp_server.messages]
    assert subjects == [
        f"Approval needed: model {seen['proposal']} for valuation 2023-12-31 ({len(lines)} lines: {', '.join(lines)})",
        "Reserve report as at 2023-12-31 (PRELIMINARY)",
    ]
    card_mail = email.message_from_bytes(smtp_server.messages[0][2], policy=policy.default)
    body = " ".join(card_mail.get_body(("html",)).get_content().split())
    assert "Each line of business has its own champion, and you decide each line on this card" in body
    for line in lines:
        assert f"{line}: challenger {promote[line]} against no champion yet" in body
    report_mail = email.message_from_bytes(smtp_server.messages[1][2], policy=policy.default)
    (attachment,) = [part for part in report_mail.iter_attachments()]
    report_path = next(Path(os.environ["RESERVING_ARTIFACT_ROOT"]).rglob("reserve_report_2023-12-31.pdf"))
    assert attachment.get_payload(decode=True) == report_path.read_bytes()
    text = "\n".join(page.extract_text() for page in PdfReader(report_path).pages)
    squeezed = " ".join(text.split())
    # the report says which model reserved which line, and the approval behind it (none for the fallback)
    assert "Line Reserved by model Approval behind it" in squeezed
    for line in lines:
        ref = "n/a" if line == rejected else f"approvals.id={ids[line]} (ada)"
        assert f"{line} {models[line]} {ref}" in squeezed, line
    sums = published.groupby("segment")[["case_reserve", "ibnr", "unpaid"]].sum().round(2)
    for segment, line in sums.iterrows():
        assert segment in text and all(f"{v:,.2f}" in text for v in line)
    assert f"{table['unpaid_total'].iloc[0]:,.2f} = case reserves" in report_mail.get_body().get_content()

    # Slack heard the decision on each line, and nothing failed
    messages = [body["text"] for _, body in slack_receiver.received]
    assert len(messages) == 1
    for line in approved:
        assert f"{line}: model {promote[line]} approved by ada and promoted to the line's champion" in messages[0]
    assert f"{rejected}: model {promote[rejected]} rejected by ada: no champion yet" in messages[0]
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
    assert versions(engine, V).empty and registry.champions(engine) == {}
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
    cells = load_cells(engine, facts.valuation_date)
    champion = fit_and_register(engine, facts, {"method": "chain_ladder", "params": {}}, cells)
    lines = sorted(cells["segment"].unique())
    registry.set_champion(engine, champion.model_version, facts.valuation_date, "promoted", lines, approved_by="Ada")

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
    assert history.action.tolist() == ["promoted"] * len(lines) + ["refitted"] * len(lines)
    assert registry.approvals(engine).empty
    published = versions(engine, V)
    assert published[["status", "model_version"]].values.tolist() == [["approved", history.model_version.iloc[-1]]]
    assert slack_receiver.received == []

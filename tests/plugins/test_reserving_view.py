"""The Reserving app against a SQLite warehouse: JSON equals what was published, bad input is refused clearly,
pending approvals carry the exact Variable, model cards are served only from under the artifact root, the page reads.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from include.reserving import approval, artifacts, governance, views, webapp
from include.reserving.presentation.emails import model_card_email
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.presentation.model_card import LINE_COLUMNS, Challenger, ModelCardData, card_markdown
from include.reserving.publish import reserve_rows
from include.reserving.stages import RunFacts
from include.reserving.stages.governance import apply_approval
from include.reserving.warehouse import registry, runs
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import publish_reserves
from tests.plugins.conftest import PENDING_RUN, PROJECT, V1, V2, _model_output, install_data_docs

ENDPOINTS = ["/", "/api/reserves", "/api/champion", "/api/approvals/pending"]
# the book's origins and their labels in the report, the page and the API (the quarterly origin grain)
QUARTERS = {
    dt.date(2023, 1, 1): "2023Q1",
    dt.date(2023, 4, 1): "2023Q2",
    dt.date(2023, 7, 1): "2023Q3",
    dt.date(2023, 10, 1): "2023Q4",
}


def _client(book, authenticated: bool = True) -> TestClient:
    app = webapp.create_app(make_engine(book.url), str(book.artifact_root))
    if authenticated:
        app.dependency_overrides[webapp.authenticated] = lambda: None
    return TestClient(app, root_path="/reserving")


def _cents(value: float) -> Decimal:
    return Decimal(f"{value:.2f}")


def test_reserves_json_equals_what_was_published(book):
    client = _client(book)
    result, rows = book.published[V2]
    body = client.get("/api/reserves").json()  # default: the latest valuation date
    assert (body["valuation_date"], body["version"], body["basis"]) == ("2024-02-29", 2, "restated")
    totals = ("unpaid_total", "case_reserve_total", "ibnr_total")
    assert [body[k] for k in totals] == [getattr(result, k) for k in totals]
    assert body["run_id"] == "scheduled__2024-03-01T00:00:00+00:00" and body["status"] == "approved"
    columns = ["latest_paid", "latest_incurred", "case_reserve", "ultimate", "ibnr", "unpaid", "std_err"]
    got = [(r["segment"], r["origin"], r["origin_start"], *[r[c] for c in columns]) for r in body["rows"]]
    want = [
        (r.segment, QUARTERS[r.origin], r.origin.isoformat(), *[getattr(r, c) for c in columns])
        for r in rows.sort_values(["segment", "origin"]).itertuples()
    ]
    assert got == want
    assert [r["origin"] for r in body["rows"]][:4] == ["2023Q1", "2023Q2", "2023Q3", "2023Q4"]  # as the PDF names them
    # Motor 2023Q1: paid 100,000.00, incurred 150,000.00, ultimate 100,004.00 x 1.1 = 110,004.40:
    # case reserves 50,000.00 + IBNR -39,995.60 = unpaid 10,004.40
    first = body["rows"][[r["segment"] for r in body["rows"]].index("Motor")]
    assert (first["case_reserve"], first["ibnr"], first["unpaid"]) == (50_000.0, -39_995.6, 10_004.4)
    lines = {line["segment"]: line for line in body["lines"]}
    for segment, line in lines.items():
        for column in columns[:-1]:
            assert _cents(line[column]) == sum(_cents(v) for v in rows.loc[rows.segment == segment, column])
        assert _cents(line["case_reserve"]) + _cents(line["ibnr"]) == _cents(line["unpaid"])  # each line ties
    for column in columns[:-1]:
        assert _cents(body["totals"][column]) == sum(_cents(line[column]) for line in lines.values())
    assert (body["totals"]["unpaid"], body["totals"]["ibnr"]) == (result.unpaid_total, result.ibnr_total)
    # every row names the method that set its ultimate and shows the others; the version's ranges come along
    assert [(r["method"], r["paid_cl_ultimate"], r["bf_ultimate"]) for r in body["rows"]] == [
        (r.method, r.paid_cl_ultimate, r.bf_ultimate) for r in rows.sort_values(["segment", "origin"]).itertuples()
    ]
    assert [(r["segment"], r["unpaid"], r["std_err"], r["p95"]) for r in body["ranges"]] == [
        ("Liability", 1_000.0, 30.0, 1_050.0),
        ("Motor", 300.0, 40.0, 367.0),
        ("Total", 1_300.0, 50.0, 1_383.0),
    ]

    january = client.get("/api/reserves", params={"valuation_date": "2024-01-31"}).json()
    assert (january["version"], january["unpaid_total"]) == (1, book.published[V1][0].unpaid_total)
    for column in ("case_reserve", "ibnr", "unpaid"):
        assert [r[column] for r in january["rows"]] == book.published[V1][1].sort_values(["segment", "origin"])[
            column
        ].tolist()


def test_origins_are_named_by_the_grain_the_snapshot_was_cut_at(book):
    """The grain recorded with the publication's snapshot (V, basis) names the origins; without one it is inferred."""
    from include.reserving.warehouse.cells import record_snapshot

    facts = {"development_grain": "3m", "claim_count": 1, "transaction_count": 1, "paid_total": 0.0, "cells_hash": ""}
    engine = make_engine(book.url)
    with engine.begin() as conn:
        # February's current version is restated; a monthly as-recorded snapshot of the same V does not name it
        record_snapshot(conn, {"valuation_date": V2, "basis": "as_recorded"}, origin_grain="1m", **facts)
        record_snapshot(conn, {"valuation_date": V1, "basis": "as_recorded"}, origin_grain="1m", **facts)
    client = _client(book)
    february = client.get("/api/reserves").json()
    assert [r["origin"] for r in february["rows"]][:4] == ["2023Q1", "2023Q2", "2023Q3", "2023Q4"]  # inferred
    january = client.get("/api/reserves", params={"valuation_date": "2024-01-31"}).json()
    assert [(r["origin"], r["origin_start"]) for r in january["rows"]][:4] == [
        ("2023-01", "2023-01-01"),
        ("2023-04", "2023-04-01"),
        ("2023-07", "2023-07-01"),
        ("2023-10", "2023-10-01"),
    ]
    assert "<td>Motor</td><td>2023Q1</td>" in client.get("/").text  # the page shows the latest (February)


@pytest.mark.parametrize(
    ("value", "status", "message"),
    [
        ("last-month", 400, "'last-month' is not a date: use YYYY-MM-DD"),
        ("2024-02-30", 400, "is not a date"),
        ("2024-01-30", 400, "2024-01-30 is not a month end: use a month end such as 2024-01-31"),
        ("2023-12-31", 404, "no reserves are published for valuation date 2023-12-31 (latest published: 2024-02-29)"),
    ],
)
def test_bad_valuation_dates_are_refused_with_a_clear_message(book, value, status, message):
    response = _client(book).get("/api/reserves", params={"valuation_date": value})
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_an_empty_warehouse_says_nothing_is_published(tmp_path):
    from include.reserving import schema

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    schema.create_all(make_engine(url))
    app = webapp.create_app(make_engine(url), str(tmp_path / "artifacts"))
    app.dependency_overrides[webapp.authenticated] = lambda: None
    client = TestClient(app)
    response = client.get("/api/reserves")
    assert response.status_code == 404 and response.json()["detail"] == "no reserves have been published yet"
    assert client.get("/api/champion").json() == {"champions": [], "history": []}
    assert client.get("/api/approvals/pending").json() == []
    page = client.get("/").text
    assert "no reserves have been published yet" in page and "No pipeline runs recorded yet" in page


def test_a_warehouse_without_tables_answers_503_with_what_to_do(tmp_path):
    app = webapp.create_app(make_engine(f"sqlite:///{tmp_path / 'new.db'}"), str(tmp_path))
    app.dependency_overrides[webapp.authenticated] = lambda: None
    for path in ENDPOINTS:
        response = TestClient(app).get(path)
        assert response.status_code == 503, path
        assert "python -m include.reserving.schema" in response.json()["detail"]


def test_champion_and_history(book):
    body = _client(book).get("/api/champion").json()
    assert [(c["segment"], c["model_version"], c["method"]) for c in body["champions"]] == [
        ("Liability", book.champion, "chain_ladder"),
        ("Motor", book.champion, "chain_ladder"),
    ]
    assert "artifact_uri" not in body["champions"][0] and "/artifacts/" not in json.dumps(body)  # no server path
    assert [(h["segment"], h["model_version"], h["action"], h["approved_by"]) for h in body["history"]] == [
        ("Liability", book.champion, "promoted", "ada"),
        ("Motor", book.champion, "promoted", "ada"),
    ]


def test_pending_approvals_name_the_exact_variable_and_disappear_once_decided(book):
    client = _client(book)
    (item,) = client.get("/api/approvals/pending").json()
    assert (item["valuation_date"], item["challenger_version"]) == ("2024-02-29", book.challenger)
    # one card, its lines: only Motor's challenger beat Motor's champion
    assert [(line["segment"], line["challenger_version"], line["champion_version"]) for line in item["lines"]] == [
        ("Motor", book.challenger, book.champion)
    ]
    assert item["variable_key"] == approval.approval_key(V2) == "reserving_approval__2024-02-29"
    assert item["approve_value"] == approval.approval_value(book.challenger, "approve")
    assert item["instruction"] == ApprovalInstruction(V2, book.challenger, None, ("Motor",)).text
    card = client.get(item["model_card_md"])
    assert card.status_code == 200 and card.text == book.card_md.read_text()
    pdf = client.get(item["model_card_pdf"])
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content == book.card_pdf.read_bytes()

    # another run's decision does not answer this run's question; this run's does
    key = item["variable_key"]
    registry.decide(make_engine(book.url), V2, book.challenger, "reject", key, "Motor", "bob", run_id="other")
    assert len(client.get("/api/approvals/pending").json()) == 1
    registry.decide(make_engine(book.url), V2, book.challenger, "reject", key, "Motor", "bob", run_id=PENDING_RUN)
    assert client.get("/api/approvals/pending").json() == []


def test_model_cards_are_served_only_from_under_the_artifact_root(book, tmp_path):
    client = _client(book)
    base = f"/model-cards/2024-02-29/{book.challenger}"
    assert client.get(f"{base}.exe").status_code == 404
    assert client.get(f"/model-cards/2024-02-29/{'..%2F' * 6}etc%2Fpasswd.md").status_code == 404
    assert client.get("/model-cards/2024-02-29/..%2F..%2F..%2F..%2Fwarehouse.md").status_code == 404
    assert client.get(f"/model-cards/2024-01-30/{book.challenger}.md").status_code == 400
    # a card that is a link to a file outside the root is refused even though the decision exists
    secret = tmp_path / "secret.md"
    secret.write_text("not a model card")
    book.card_md.unlink()
    book.card_md.symlink_to(secret)
    response = client.get(f"{base}.md")
    assert response.status_code == 404 and "outside the artifact root" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/model-cards/2024-02-29/%00.md", 400),
        ("/model-cards/2024-02-29/{challenger}%00.md", 400),
        ("/model-cards/2024-02-29/a%00..%00b.pdf", 400),
        ("/model-cards/2024-02-29/..md", 400),  # the version '.'
        ("/model-cards/2024-02-29/...md", 400),  # the version '..'
        ("/model-cards/2024-02-29/%2E%2E.pdf", 400),
        ("/model-cards/2024-02-29/{challenger}.md%00", 404),
        ("/model-cards/2024-02-29%00/{challenger}.md", 400),
        ("/model-cards/..%2F2024-02-29/{challenger}.md", 404),  # no such route
        ("/model-cards/29.02.2024/{challenger}.md", 400),
        ("/api/reserves?valuation_date=%00", 400),
        ("/api/reserves?valuation_date=29%2F02%2F2024", 400),
        ("/api/reserves?valuation_date=2024-02", 400),
        ("/api/reserves?valuation_date=..%2F..%2Fetc", 400),
    ],
)
def test_bad_paths_are_4xx_and_name_no_server_path(book, path, status):
    """A NUL byte, '..' or an unknown date format is the caller's mistake: 4xx with a reason, never a 500."""
    response = _client(book).get(path.format(challenger=book.challenger))
    assert response.status_code == status, response.text
    assert str(book.artifact_root) not in response.text and "detail" in response.json()


def test_a_card_of_a_decision_without_a_run_is_404_and_a_remote_root_is_not_named(book):
    engine = make_engine(book.url)
    registry.record_decisions(
        engine,
        V2,
        [governance.decide_promotion(V2, book.champion, -0.12, book.challenger, -0.08, 0.01, segment="Motor")],
    )
    response = _client(book).get(f"/model-cards/2024-02-29/{book.challenger}.md")
    assert response.status_code == 404 and "names no run" in response.json()["detail"]
    remote = webapp.create_app(engine, "s3://private-bucket/reserving")
    remote.dependency_overrides[webapp.authenticated] = lambda: None
    response = TestClient(remote).get(f"/model-cards/2024-02-29/{book.challenger}.md")
    assert response.status_code == 404 and "private-bucket" not in response.text


def test_page_shows_reserves_champion_approvals_and_health(book):
    page = _client(book).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    result, rows = book.published[V2]
    assert "Valuation date <b>2024-02-29</b> · version 2 (current)" in html
    for total in (result.unpaid_total, result.case_reserve_total, result.ibnr_total):
        assert f"{total:,.2f}" in html
    assert '<th>Line</th><th>Origin</th><th class="num">Latest paid</th><th class="num">Latest incurred</th>' in html
    assert '<th class="num">Case reserves</th><th class="num">Ultimate</th><th class="num">IBNR</th>' in html
    motor = rows[rows.segment == "Motor"]
    for column in ("case_reserve", "ibnr", "unpaid"):
        assert f"{round(motor[column].sum(), 2):,.2f}" in html
    assert f"{motor['ultimate'].iloc[0]:,.2f}" in html
    assert "<td>Motor</td><td>2023Q1</td>" in html and "2023-01-01" not in html  # origins named as in the PDF
    assert "reserving_approval__2024-02-29" in html
    assert str(escape(approval.approval_value(book.challenger, "approve"))) in html  # autoescaped, in full
    assert f'href="http://testserver/reserving/model-cards/2024-02-29/{book.challenger}.pdf"' in html
    assert book.champion in html and ">ada<" in html
    # which model reserved which line, and each line's champion
    assert "<th>Line</th><th>Reserved by model</th>" in html and "<td>Motor</td><td><code>m-cl</code></td>" in html
    assert f"<tr><td>Motor</td><td><code>{book.champion}</code></td><td>chain_ladder</td>" in html
    assert "quality.validate" in html and "failed" in html


def test_page_escapes_markup_in_a_segment_or_model_version(book):
    """Names come from data: a <script> in a segment or a model version shows as text, never runs."""
    script = '<script>alert("x")</script>'
    engine = make_engine(book.url)
    rows = reserve_rows(*_model_output(1.2))
    rows["segment"] = rows["segment"].replace({"Motor": f"Motor {script}"})
    publish_reserves(engine, dt.date(2024, 3, 31), "manual__odd", rows, f"m-{script}")
    odd = governance.decide_promotion(V2, book.champion, -0.12, f"xgb-{script}", -0.08, 0.01, segment="Motor")
    registry.record_decisions(engine, V2, [odd], run_id=PENDING_RUN)
    page = _client(book).get("/").text
    assert "<script>" not in page
    assert f"Motor {escape(script)} total" in page and f"<code>m-{escape(script)}</code>" in page
    assert f"model card <code>xgb-{escape(script)}</code>" in page


def test_page_card_email_and_timeout_alert_carry_one_instruction(book, monkeypatch):
    """The page, the model card, its e-mail and the timeout alert show the text of one ApprovalInstruction."""
    instruction = ApprovalInstruction(V2, book.challenger, None, ("Motor",))
    page = _client(book).get("/").text
    motor = {"segment": "Motor", "challenger_version": book.challenger, "champion_version": book.champion}
    mail = model_card_email(V2, book.challenger, lines=[{**motor, "has_champion": True}]).body
    lines = pd.DataFrame([{**motor, "decision": "promote", "reason": "challenger better"}])
    card = card_markdown(
        ModelCardData(
            model_version=book.challenger,
            challengers=(
                Challenger(
                    model_version=book.challenger,
                    spec={"method": "xgboost_development"},
                    code_sha="abc",
                    lines=("Motor",),
                ),
            ),
            valuation_date=V2,
            data_row_count=8,
            data_hash="sha256:0",
            segments=("Liability", "Motor"),
            lines=lines.reindex(columns=LINE_COLUMNS),
        )
    )
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", book.url)
    alerts = []
    apply_approval(
        RunFacts.create(V2, PENDING_RUN),
        {"challenger_version": book.challenger, "promote": {"Motor": book.challenger}},
        {"decision": "timeout"},
        alerts.append,
    )
    (timeout,) = alerts
    for html in (page, mail):
        assert str(escape(instruction.sentence)) in html
        assert all(f"<pre>{escape(text)}</pre>" in html for _, text in instruction.steps)
    assert instruction.sentence in card
    assert all(f"```\n{text}\n```" in card for _, text in instruction.steps)
    assert timeout.endswith(instruction.text)
    assert timeout.startswith(
        f"Decisions for 2024-02-29 on {book.challenger}: Motor: approval of model {book.challenger} timed out: its "
        "champion kept."
    )


def test_every_route_refuses_a_caller_without_a_token(book):
    client = _client(book, authenticated=False)
    for path in [*ENDPOINTS, f"/model-cards/2024-02-29/{book.challenger}.md"]:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}
    browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 401 and "Log in to Airflow" in browser.text


def test_plugin_registers_the_app_and_the_nav_view():
    sys.path.insert(0, str(PROJECT / "plugins"))
    try:
        from reserving_plugin import ReservingPlugin
    finally:
        sys.path.remove(str(PROJECT / "plugins"))
    (app,) = ReservingPlugin.fastapi_apps
    assert app["url_prefix"] == "/reserving"
    (view,) = ReservingPlugin.external_views
    assert (view["name"], view["href"], view["destination"]) == ("Reserving", "/reserving/", "nav")


def test_parse_valuation_date():
    from include.reserving.dates import parse_valuation_date

    assert parse_valuation_date("2024-02-29") == dt.date(2024, 2, 29)
    with pytest.raises(ValueError, match="2023-02-28"):
        parse_valuation_date("2023-02-27")


# --- issue 16: the valuation picker, ranges and movements, every execution's health, Data Docs, the warehouse -------


def test_the_page_shows_the_valuation_asked_for_and_lists_the_published_ones(book):
    client = _client(book)
    latest = client.get("/").text
    assert '<option value="2024-02-29" selected>2024-02-29</option><option value="2024-01-31">' in latest
    page = client.get("/", params={"valuation_date": "2024-01-31"})
    html = page.text
    january = book.published[V1][0]
    assert page.status_code == 200 and "Valuation date <b>2024-01-31</b> · version 1 (current)" in html
    assert '<tr class="total"><td>All lines</td><td></td><td class="num">725,000.00</td>' in html  # paid as in February
    assert f'<td class="num">{january.unpaid_total:,.2f}</td>' in html
    assert "No ranges were stored with this version" in html and "No analysis of change was recorded" in html
    assert '<option value="2024-01-31" selected>' in html
    assert 'JSON: <a href="http://testserver/reserving/api/reserves?valuation_date=2024-01-31">' in html
    # the history: every version, newest first; February's first version is on record, no longer current
    assert [
        (h["valuation_date"], h["version"], h["is_current"]) for h in views.publication_history(make_engine(book.url))
    ] == [
        ("2024-02-29", 2, True),
        ("2024-02-29", 1, False),
        ("2024-01-31", 1, True),
    ]
    assert "<td>approved (current)</td>" in html and "<td>manual__first</td>" not in html  # runs are <code>
    assert 'href="http://testserver/reserving/?valuation_date=2024-01-31">2024-01-31</a>' in html


@pytest.mark.parametrize(
    ("value", "status", "message"),
    [
        ("2023-12-31", 404, "no reserves are published for valuation date 2023-12-31 (latest published: 2024-02-29)"),
        ("2024-01-30", 400, "valuation_date 2024-01-30 is not a month end: use a month end such as 2024-01-31"),
        ("Jan 2024", 400, "valuation_date &#39;Jan 2024&#39; is not a date: use YYYY-MM-DD, e.g. 2024-01-31"),
    ],
)
def test_the_page_refuses_a_valuation_it_cannot_show_with_a_page_saying_why(book, value, status, message):
    page = _client(book).get("/", params={"valuation_date": value})
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    assert f'<p class="bad">{message}.</p>' in page.text
    assert '<option value="2024-02-29">' in page.text  # the picker offers what can be shown


def test_ranges_and_the_analysis_of_change_of_the_shown_valuation(book):
    from tests.plugins.conftest import MOVEMENTS

    client = _client(book)
    body = client.get("/api/reserves").json()
    ordered = MOVEMENTS.sort_values(["segment", "step_order"])  # line by line in step order, as stored
    stored = ordered.astype(object).where(ordered.notna(), None).to_dict("records")
    assert [{k: m[k] for k in stored[0]} for m in body["movements"]] == stored
    assert {m["basis"] for m in body["movements"]} == {"restated"}
    html = client.get("/").text
    # each line ties (1,000 - 200 + 50 + 0 + 130 = 980; 500 - 100 + 0 + 20 - 10 = 410); all lines add up
    assert (
        '<td>this unpaid</td><td class="num">980.00</td><td class="num">410.00</td><td class="num">1,390.00</td>'
        in html
    )
    assert (
        '<td>actual emergence (paid in the month)</td><td class="num">-200.00</td><td class="num">-100.00</td>' in html
    )
    assert (
        '<td>memo: actual / expected emergence</td><td class="num">0.80</td><td class="num">1.25</td>'
        '<td class="num"></td>' in html
    )
    assert '<td>unpaid at 2024-01-31</td><td class="num">1,000.00</td><td class="num">500.00</td>' in html
    assert '<p class="meta">Liability, Motor: the unpaid published at 2024-01-31 times the share' in html
    assert (
        '<tr class="total"><td>All lines</td><td>independent lines</td><td></td><td class="num">1,300.00</td>'
        '<td class="num">50.00</td><td class="num">0.0385</td><td class="num">1,333.00</td>'
        '<td class="num">1,383.00</td>'
    ) in html


def test_every_execution_of_a_run_keeps_its_health_row(book):
    """The pending run failed its gate, was cleared and succeeded: both executions show; recording the success
    again (a retried callback) replaces only its own row."""
    engine = make_engine(book.url)
    runs.record_run(
        engine, PENDING_RUN, "monthly_reserving_pipeline", V2, "success",
        dt.datetime(2024, 3, 1, 2), dt.datetime(2024, 3, 1, 2, 15), None, clear_number=1,
    )  # fmt: skip
    health = [(r["run_id"], r["clear_number"], r["state"], r["failed_task"]) for r in views.pipeline_health(engine)]
    assert health == [
        (PENDING_RUN, 1, "success", None),
        (PENDING_RUN, 0, "failed", "input.validate"),
        ("manual__first", 0, "failed", "quality.validate"),
        ("scheduled__2024-02-01T00:00:00+00:00", 0, "success", None),
    ]
    html = _client(book).get("/").text
    assert '<td><span class="bad">failed</span></td><td>2024-03-01T01:00:00</td>' in html
    assert (
        '<td>input.validate</td><td><code>scheduled__2024-03-01T00:00:00+00:00</code></td><td class="num">1</td>'
        in html
    )
    assert '<td><code>scheduled__2024-03-01T00:00:00+00:00</code></td><td class="num">2</td>' in html


def test_the_view_follows_the_reserving_db_connection_between_requests(book, tmp_path, monkeypatch):
    """Without an engine given, every request resolves reserving_db: pointed elsewhere, the next request reads there."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    engine = make_engine(other)
    from include.reserving import schema

    schema.create_all(engine)
    publish_reserves(engine, dt.date(2024, 3, 31), "manual__march", reserve_rows(*_model_output(1.3)), "m-cl")
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(book.artifact_root))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", book.url)
    app = webapp.create_app()
    app.dependency_overrides[webapp.authenticated] = lambda: None
    client = TestClient(app)
    assert client.get("/api/reserves").json()["valuation_date"] == "2024-02-29"
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", other)
    assert client.get("/api/reserves").json()["valuation_date"] == "2024-03-31"
    assert client.get("/api/approvals/pending").json() == []
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", book.url)
    assert len(client.get("/api/approvals/pending").json()) == 1


@pytest.fixture
def docs_book(book, gate_artifacts):
    """The book with a real gate run's Data Docs in the pending run's folder."""
    install_data_docs(book, gate_artifacts)
    return book


DOCS = f"/data-docs/2024-02-29/{quote(PENDING_RUN, safe='')}"


def test_data_docs_index_lists_each_validation_with_its_outcome(docs_book, gate_artifacts):
    client = _client(docs_book)
    response = client.get(f"{DOCS}/")
    assert response.status_code == 200
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    results = json.loads((gate_artifacts / "validation_results.json").read_text())
    suites = {v["suite_name"]: v for v in results["validations"] + results["failure_examples"]}
    rows = re.findall(
        r"<tr><td>(\w+)</td><td>(.*?)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", response.text
    )
    # the failed ones first: the snapshot's suite (the negative age) and its failure-examples pass
    assert [(name, "failed" in outcome, int(failed)) for name, outcome, _, failed in rows[:2]] == [
        ("reserving_snapshot_claims_v2", True, 1),
        ("reserving_snapshot_claims_v2_failure_examples", True, 1),
    ]
    assert sorted(name for name, *_ in rows) == sorted(suites)
    for name, _, evaluated, failed in rows:
        stats = suites[name]["statistics"]
        assert (int(evaluated), int(failed)) == (stats["evaluated_expectations"], stats["unsuccessful_expectations"])
    assert client.get(f"{DOCS}/index.html").text == response.text  # GX's own index needs CDN scripts: ours instead
    # the health row of the run links it; runs without Data Docs do not
    page = client.get("/").text
    assert page.count(f'href="http://testserver/reserving/data-docs/2024-02-29/{PENDING_RUN}/"') == 2
    assert page.count(">Data Docs</a>") == 2


def test_data_docs_pages_are_self_contained(docs_book):
    client = _client(docs_book)
    docs = Path(artifacts.run_dir(str(docs_book.artifact_root), V2, PENDING_RUN), "quality", "data_docs")
    (original,) = (docs / "validations").glob("reserving_snapshot_claims_v2/*/*/*.html")
    gx = original.read_text()
    assert "https://maxcdn.bootstrapcdn.com" in gx and "<script" in gx  # what GX renders
    response = client.get(f"{DOCS}/{original.relative_to(docs).as_posix()}")
    html = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in response.headers
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//[^"'>]*\.(?:css|js|png)""", html)
    assert not re.search(r"url\(\s*['\"]?https?:", html)
    assert 'id="reserving-data-docs"' in html and "claimant_age" in html and "-3" in html  # the content stays
    favicon = client.get(f"{DOCS}/static/images/favicon.ico")
    assert favicon.status_code == 200 and favicon.content == (docs / "static/images/favicon.ico").read_bytes()


DOCS_REFUSALS = [
    ("/data-docs/2024-02-29/no-such-run/", 404, "no Data Docs for run 'no-such-run' at valuation date 2024-02-29"),
    ("/data-docs/2024-02-30/{run}/", 400, "is not a date"),
    ("/data-docs/2024-02-29/%2E%2E/", 400, "is not an Airflow run id"),
    ("/data-docs/2024-02-29/a%00b/", 400, "is not an Airflow run id"),
    ("/data-docs/2024-02-29/{run}/..%2F..%2Foutside.html", 404, "outside the run's Data Docs"),
    ("/data-docs/2024-02-29/{run}/..%2F..%2Freserves.db", 404, "not 'reserves.db'"),
    ("/data-docs/2024-02-29/{run}/linked.html", 404, "outside the run's Data Docs"),  # a symlink out
    ("/data-docs/2024-02-29/{run}/x%00.html", 400, "NUL"),
    ("/data-docs/2024-02-29/{run}/missing.html", 404, "no page 'missing.html'"),
]


def test_data_docs_serve_nothing_outside_the_run_folder(docs_book, tmp_path):
    run = Path(artifacts.run_dir(str(docs_book.artifact_root), V2, PENDING_RUN))
    (run / "outside.html").write_text("<p>not Data Docs</p>")
    (run / "reserves.db").write_text("secret")
    secret = tmp_path / "secret.html"
    secret.write_text("<p>secret</p>")
    (run / "quality" / "data_docs" / "linked.html").symlink_to(secret)
    client = _client(docs_book)
    for path, status, says in DOCS_REFUSALS:
        response = client.get(path.format(run=quote(PENDING_RUN, safe="")))
        assert response.status_code == status, (path, response.text)
        assert "secret" not in response.text and str(docs_book.artifact_root) not in response.text
        assert says in response.json()["detail"], (path, response.text)


def test_data_docs_need_a_session_and_a_local_root(docs_book):
    anonymous = _client(docs_book, authenticated=False)
    for path in (f"{DOCS}/", f"{DOCS}/static/images/favicon.ico"):
        assert anonymous.get(path).status_code == 401
    assert "Log in to Airflow" in anonymous.get(f"{DOCS}/", headers={"Accept": "text/html"}).text
    remote = webapp.create_app(make_engine(docs_book.url), "s3://private-bucket/reserving")
    remote.dependency_overrides[webapp.authenticated] = lambda: None
    response = TestClient(remote).get(f"{DOCS}/")
    assert response.status_code == 404 and "private-bucket" not in response.text


def test_the_gate_alert_links_data_docs_the_view_serves(docs_book, monkeypatch):
    from include.reserving.notify import failure_message
    from include.reserving.quality.report import CheckResult, QualityGateError, QualityReport

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    check = CheckResult(
        "snapshot_claims.claimant_age.between", "snapshot_claims", "expect_column_values_to_be_between",
        "claimant_age", "claimant age between 0 and 120", False, 1, 3, [-3],
    )  # fmt: skip
    run = artifacts.run_dir(str(docs_book.artifact_root), V2, PENDING_RUN)
    report = QualityReport(V2, "restated", "2", [check], 5, 3, artifact_uri=f"{run}/quality", run_id=PENDING_RUN)
    context = {"dag_run": None, "params": {"valuation_date": "2024-02-29"}, "exception": QualityGateError("x", report)}
    link = failure_message(context).splitlines()[-1]
    assert link == (
        "Data Docs: https://airflow.example.com/reserving/data-docs/2024-02-29/"
        "scheduled__2024-03-01T00%3A00%3A00%2B00%3A00/"
    )
    served = _client(docs_book).get(link.removeprefix("Data Docs: https://airflow.example.com/reserving"))
    assert served.status_code == 200 and "reserving_snapshot_claims_v2" in served.text
    report.artifact_uri = "s3://bucket/runs/2024-02-29/x/quality"  # the view cannot serve a remote root
    assert "Data Docs:" not in failure_message(context)


def test_a_broken_connection_or_settings_variable_is_a_503_saying_which(book, monkeypatch):
    app = webapp.create_app()
    app.dependency_overrides[webapp.authenticated] = lambda: None
    client = TestClient(app)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", "http://warehouse.example.com")
    response = client.get("/api/reserves")
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "the Reserving view cannot find its warehouse: "
        "connection 'reserving_db' has type 'http'; use postgres or sqlite"
    )
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", book.url)
    monkeypatch.setenv("AIRFLOW_VAR_RESERVING_SETTINGS", "{not json")
    response = client.get("/api/reserves")
    assert response.status_code == 503 and "Variable reserving_settings cannot be used: it is not JSON" in response.text
    monkeypatch.delenv("AIRFLOW_VAR_RESERVING_SETTINGS")
    assert client.get("/api/reserves").status_code == 200  # fixed: the next request works, no restart

"""Run order: a stale book is not valued, a month is not published over a later current valuation (unless a
backfill, restatement or intended re-run), and a cleared ``validate`` judges the source as it is now.

Warehouse cases run on SQLite and PostgreSQL over one small synthetic book per backend (module-scoped).
"""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from devtools.synth import BookSpec, write_book
from include.reserving import schema
from include.reserving.dates import valuation_date_of_run
from include.reserving.publish import reserve_rows
from include.reserving.quality.report import QualityGateError
from include.reserving.run_order import RunOrderError, exemption, later_valuation_refusal
from include.reserving.stages import RunFacts, input
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import later_current_valuation, publish_reserves, versions
from tests.conftest import PG_ADMIN_URL, _pg_admin_engine

BOOK = BookSpec(claims=400, start="2022-01", end="2023-12", seed=5, control_totals=False)
V = dt.date(2023, 11, 30)
LATER = dt.date(2023, 12, 31)


def test_valuation_date_from_the_data_interval_or_the_param_and_a_run_without_either_fails_by_name():
    from include.reserving.dag_groups import run_facts

    end = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    assert valuation_date_of_run(end) == dt.date(2024, 2, 29)
    assert valuation_date_of_run(end, "2023-12-31") == dt.date(2023, 12, 31)  # the param wins
    assert valuation_date_of_run(None, "2024-12-31") == dt.date(2024, 12, 31)  # a manual run without logical date
    assert run_facts({"valuation_date": "2024-12-31"}, "manual__x", None).valuation_date == dt.date(2024, 12, 31)
    with pytest.raises(ValueError, match="no logical date, so no data interval .* the valuation_date param"):
        run_facts({"valuation_date": None}, "manual__x", None)
    with pytest.raises(ValueError, match="not a month end: use a month end such as 2024-12-31"):
        valuation_date_of_run(None, "2024-12-30")


def test_exemption_names_why_a_run_may_publish_under_a_later_month():
    assert exemption("backfill", False, False) == "a backfill"
    assert exemption("manual", True, False) == "a restatement (restated)"
    assert exemption("scheduled", False, True) == "an intentional re-run (rerun_earlier_month)"
    for run_type in ("manual", "scheduled", "asset_triggered", None):
        assert exemption(run_type, False, False) is None


def test_refusal_names_the_later_valuation_and_every_way_out():
    assert later_valuation_refusal(V, "as_recorded", None) is None
    message = later_valuation_refusal(V, "as_recorded", LATER)
    for words in (
        "refusing to value 2023-11-30 (as_recorded)",
        "a later valuation, 2023-12-31, is already current",
        "--from-date 2023-11-01 --to-date 2023-11-30",
        "restated",
        "rerun_earlier_month=true",
        "nothing was published",
    ):
        assert words in message, (words, message)


@pytest.fixture(scope="module")
def sqlite_book(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('run-order') / 'warehouse.db'}"
    schema.create_all(make_engine(url))
    write_book(url, BOOK, progress=False)
    return url


@pytest.fixture(scope="module")
def postgres_book():
    admin = _pg_admin_engine()
    name = f"reserving_ro_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    schema.create_all(make_engine(url))
    write_book(url, BOOK, progress=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def book_url(request, monkeypatch, tmp_path):
    url = request.getfixturevalue(f"{request.param}_book")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    engine = make_engine(url)
    with engine.begin() as conn:  # each case starts with nothing published
        for table in (schema.reserve_results, schema.reserve_ranges, schema.reserve_versions):
            conn.execute(table.delete())
    yield url
    engine.dispose()


def _publish(engine, valuation_date: dt.date, run_id: str, basis: str = "as_recorded", **kwargs):
    ultimates = pd.DataFrame(
        {"segment": ["Motor"], "origin": [dt.date(2023, 1, 1)], "latest": [100.0], "ultimate": [150.0]}
    ).assign(unpaid=50.0, std_err=1.0, p75=55.0, p95=60.0)
    latest = ultimates[["segment", "origin"]].assign(paid=100.0, incurred=120.0)
    return publish_reserves(
        engine, valuation_date, run_id, reserve_rows(ultimates, latest), "m-1", basis=basis, **kwargs
    )


def test_a_later_current_valuation_on_the_same_basis_refuses_the_run_and_the_publication(book_url):
    engine = make_engine(book_url)
    _publish(engine, LATER, "later")
    _publish(engine, dt.date(2024, 1, 31), "held", status="held")  # a held month is not current: it does not count
    assert later_current_valuation(engine, V, "as_recorded") == LATER
    assert later_current_valuation(engine, V, "restated") is None
    assert later_current_valuation(engine, LATER, "as_recorded") is None

    with pytest.raises(RunOrderError, match="a later valuation, 2023-12-31, is already current"):
        input.run_order(RunFacts.create(V, "manual-v"))
    # the publication re-checks under its lock: nothing of V is written, no staged row is left behind
    with pytest.raises(RunOrderError, match="rerun_earlier_month"):
        _publish(engine, V, "manual-v", refuse_over_later=True)
    assert versions(engine, V).empty
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.reserve_results_staging)).scalar_one() == 0

    # a backfill (or restatement, or the re-run param) may: it passes the check and publishes V as current
    assert input.run_order(RunFacts.create(V, "backfill-v"), exemption="a backfill")["later_current"] == "2023-12-31"
    assert input.run_order(RunFacts.create(V, "restated-v", restated=True))["later_current"] is None
    _publish(engine, V, "backfill-v")
    assert versions(engine, V)[["version", "is_current"]].values.tolist() == [[1, True]]
    engine.dispose()


def test_a_held_month_signed_off_after_a_later_month_became_current_stays_held_unless_exempt(book_url):
    """V published held; LATER then published current; the actuary signs V off: the sign-off is recorded, V is not
    made current over LATER (the run-order rule publication obeys), the month is not accepted, the report is
    skipped and the message says what happened and how to make it current. Exempt (a backfill, restatement or
    re-run), the next held version signed off becomes current."""
    from include.reserving.dag_groups import later_valuation_exemption
    from include.reserving.stages import reserving
    from include.reserving.warehouse.reserves import current_version, signoffs

    engine = make_engine(book_url)
    with engine.begin() as conn:
        conn.execute(schema.signoffs.delete())
    held = _publish(engine, V, "held-v", status="held")
    _publish(engine, LATER, "later")
    alerts = []
    published = {"version": held.version, "accepted_status": "approved", "lines": {}}
    outcome = {"decision": "approve", "by": "Ada Actuary", "comment": "explained"}
    facts = RunFacts.create(V, "held-v")
    refuse = later_valuation_exemption({}, SimpleNamespace(run_type="scheduled")) is None
    applied = reserving.apply_signoff(facts, published, outcome, alert=alerts.append, refuse_over_later=refuse)
    assert (applied["decision"], applied["current"]) == ("approve", False)
    assert versions(engine, V)[["version", "status", "is_current"]].values.tolist() == [[held.version, "held", False]]
    assert current_version(engine, V) is None and current_version(engine, LATER)["run_id"] == "later"
    assert signoffs(engine, V)[["publication_version", "decision", "decided_by"]].values.tolist() == [
        [held.version, "approve", "Ada Actuary"]
    ]
    message = alerts[0]
    for words in (
        f"Reserves for {V} version {held.version} signed off by Ada Actuary, but NOT made current",
        f"a later valuation, {LATER}, is already current on the same basis (as_recorded)",
        "They stay on record, held, with this sign-off; the current numbers are unchanged",
        "--from-date 2023-11-01 --to-date 2023-11-30",
        "rerun_earlier_month=true",
    ):
        assert words in message, words
    assert applied["message"] == message

    # a backfill of V (exempt): its held version, signed off, becomes current although LATER is current
    again = _publish(engine, V, "backfill-v", status="held")
    backfill = later_valuation_exemption({}, SimpleNamespace(run_type="backfill")) is None
    published = {"version": again.version, "accepted_status": "approved", "lines": {}}
    applied = reserving.apply_signoff(RunFacts.create(V, "backfill-v"), published, outcome, refuse_over_later=backfill)
    assert (applied["decision"], applied["current"]) == ("approve", True)
    assert current_version(engine, V)["version"] == again.version == held.version + 1
    assert "now current" in applied["message"]
    engine.dispose()


def test_a_month_with_activity_passes_and_a_month_after_the_book_is_refused_as_stale(book_url):
    engine = make_engine(book_url)
    t = schema.claim_transactions
    with engine.connect() as conn:  # the transactions recorded in V's month, counted by hand
        expected = conn.execute(
            select(func.count()).where(
                t.c.recorded_at >= dt.datetime(2023, 11, 1), t.c.recorded_at < dt.datetime(2023, 12, 1)
            )
        ).scalar_one()
    assert expected > 0
    assert input.run_order(RunFacts.create(V, "ok"))["month_rows"] == expected

    e = schema.earned_exposure
    with engine.connect() as conn:
        assert conn.execute(select(func.max(e.c.month))).scalar_one() == dt.date(2023, 12, 1)
    # the month unpausing the DAG values: the book ended long before (its claims still pay off and report late, so
    # transactions keep arriving; its earned exposure tells)
    stale = dt.date(2026, 11, 30)
    with pytest.raises(RunOrderError) as raised:
        input.run_order(RunFacts.create(stale, "scheduled__2026-11-01"))
    message = str(raised.value)
    assert message.startswith("refusing to value 2026-11-30 (as_recorded): the book shows no activity in the month")
    assert "no earned_exposure row for the month: the book's earned exposure ends with 2023-12" in message
    assert "trigger a run with the param valuation_date" in message
    # a book in run-off earns no premium: there, the missing exposure is no refusal (its claims still pay off)
    in_run_off = input.run_order(RunFacts.create(stale, "run-off", book_in_run_off=True, plausibility_stall_days=31))
    assert in_run_off["exposure_rows"] == 0 and in_run_off["month_rows"] > 0

    # a stalled feed inside the book: plausibility's extract_stalled rule, applied before ingest
    with pytest.raises(RunOrderError, match=r"extract_stalled .*\(plausibility_stall_days=0\)"):
        input.run_order(RunFacts.create(V, "stalled", plausibility_stall_days=0))
    engine.dispose()


def test_a_cleared_validate_reingests_and_judges_the_fixed_source(book_url):
    """A bad claimant age reaches V's snapshot; fixed in the source, the gate on that snapshot still fails (what a
    ``validate`` cleared on its own did before), and with ``reingest`` (what it does now) it passes."""
    engine = make_engine(book_url)
    c = schema.claims
    with engine.connect() as conn:
        claim_id, age = conn.execute(
            select(c.c.claim_id, c.c.claimant_age).where(c.c.report_date <= V).order_by(c.c.claim_id).limit(1)
        ).one()
    facts = RunFacts.create(V, f"validate-{uuid.uuid4().hex[:6]}")
    with engine.begin() as conn:
        conn.execute(c.update().where(c.c.claim_id == claim_id).values(claimant_age=500))
    try:
        input.ingest(facts)
    finally:
        with engine.begin() as conn:
            conn.execute(c.update().where(c.c.claim_id == claim_id).values(claimant_age=age))
    with pytest.raises(QualityGateError, match="claimant_age"):
        input.validate(facts)  # the snapshot still holds the bad age
    assert input.validate(facts, reingest=True)["checks"] > 0
    s = schema.snapshot_claims
    with engine.connect() as conn:
        assert (
            conn.execute(select(s.c.claimant_age).where(s.c.valuation_date == V, s.c.claim_id == claim_id)).scalar_one()
            == age
        )
    engine.dispose()

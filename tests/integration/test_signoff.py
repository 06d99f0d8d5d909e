"""The reserve-movement hold in real Airflow runs (dag.test()): held numbers signed off from a second process and
made current; held numbers rejected, leaving the previous month's publication and the champion as they were.

A harness DAG (tests/integration/dags/signoff_harness.py) holds the reserving, signoff and reporting groups of the
monthly DAG. The warehouse is prepared with November 2023 published by an approved chain-ladder champion and
December ingested; a tiny hold_movement_tolerance (environment, as an operator's setting) forces the hold. The
sensor reads who wrote the sign-off from Airflow's audit log through a real api-server on the tests' metadata DB:
here the CLI's writes count (setting approval_cli_counts) and the OS user running the tests is an approver.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import subprocess
import sys
import threading
import time

import pytest

from include.reserving import movement
from include.reserving.approval import NUMBERS_SIGNOFF
from include.reserving.stages import RunFacts, input, reserving
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import decisions, registry, reserves
from include.reserving.warehouse.cells import load_cells

pytestmark = pytest.mark.slow

PREVIOUS_V, V = dt.date(2023, 11, 30), dt.date(2023, 12, 31)


@pytest.fixture
def held_month(pipeline_env, airflow_api, monkeypatch):
    """November published current by an approved champion; December ingested; the hold forced by the settings."""
    monkeypatch.setenv("RESERVING_APPROVERS", f"ada,{getpass.getuser()}")
    monkeypatch.setenv("RESERVING_APPROVAL_CLI_COUNTS", "true")
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_AIRFLOW_API", airflow_api.conn_uri("auditor"))
    facts = RunFacts.create(PREVIOUS_V, "november")
    input.ingest(facts)
    engine = facts.engine()
    cells = load_cells(engine, PREVIOUS_V)
    champion = fit_and_register(engine, facts, {"method": "chain_ladder", "params": {}}, cells)
    lines = sorted(cells["segment"].unique())
    registry.set_champion(engine, champion.model_version, PREVIOUS_V, "promoted", lines, approved_by="Founding Actuary")
    refitted = reserving.refit(facts)
    reserved = [reserving.reserve_segment(facts, refitted, s) for s in refitted["segments"]]
    analysis = reserving.analyse(facts, refitted, reserved)
    assert analysis["first_month"] and analysis["hold_reasons"] == []
    november = reserving.publish(facts, refitted, reserved, analysis)
    input.ingest(RunFacts.create(V, "prepare"))
    monkeypatch.setenv("RESERVING_HOLD_MOVEMENT_TOLERANCE", "0.000001")
    monkeypatch.setenv("RESERVING_HOLD_FLOOR", "0")
    _delete_signoff_variable()  # the Airflow home outlives a test: no decision may come from an earlier one
    yield engine, november, champion.model_version
    _delete_signoff_variable()


def _delete_signoff_variable() -> None:
    from airflow.models.variable import Variable

    Variable.delete(NUMBERS_SIGNOFF.key(V))


def _run(timeout: int):
    from tests.integration.dags.signoff_harness import harness

    return harness.test(
        logical_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        run_conf={"valuation_date": V.isoformat(), "signoff_timeout_seconds": timeout},
    )


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _held_code(engine) -> tuple[int, str] | None:
    """The held version and its sign-off code, once the run has issued them."""
    held = reserves.versions(engine, V)
    if held.empty or not (held["status"] == "held").any():
        return None
    version = int(held.loc[held["status"] == "held", "version"].iloc[0])
    issued = decisions.issued(engine, decisions.NUMBERS, V, version)
    return None if issued is None else (version, issued.code)


def _sign_off_from_another_process(engine, decision: str, by: str) -> tuple[threading.Thread, list[str]]:
    """Once the run has issued its held version's code, `airflow variables set` it from a separate process (the CLI).

    The CLI shares the SQLite metadata database with the running dag.test(); on a loaded machine it can meet
    "database is locked", so it is retried. Every step (and any exception) is logged and returned for the test to
    report: a signer that dies silently would leave only "timeout" to explain a failure."""
    log: list[str] = []
    started = time.monotonic()

    def note(message: str) -> None:
        log.append(f"{time.monotonic() - started:6.1f}s {message}")

    def sign_off():
        deadline = started + 420
        while time.monotonic() < deadline:
            try:
                held = _held_code(engine)
            except Exception as exc:  # a locked SQLite warehouse while the run writes: read again
                note(f"reading the held version failed: {exc!r}")
                time.sleep(0.5)
                continue
            if held is not None:
                version, code = held
                command = NUMBERS_SIGNOFF.command(V, version, decision, by, "movement explained", code)
                command[0:1] = [sys.executable, "-m", "airflow"]
                note(f"version {version} held: {' '.join(command[3:])}")
                try:
                    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
                except subprocess.TimeoutExpired as exc:
                    note(f"airflow variables set timed out: {exc}")
                    continue
                note(f"airflow variables set exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}")
                if done.returncode == 0:
                    return
            time.sleep(0.5)
        note("no sign-off was set before the signer's deadline")

    def guarded():
        try:
            sign_off()
        except BaseException as exc:
            note(f"the signer died: {exc!r}")

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread, log


def test_held_month_signed_off_from_a_second_process_becomes_current(held_month):
    engine, november, champion = held_month
    signer, log = _sign_off_from_another_process(engine, "approve", "Ada Actuary")
    run = _run(timeout=300)
    signer.join(timeout=5)
    states = _states(run)
    assert run.state == "success", (states, log)
    assert states["signoff.await_signoff"] == "success" and states["signoff.within_tolerance"] == "skipped"
    assert reserves.signoffs(engine, V)["decision"].tolist() == ["approve"], log
    assert states["reporting.report"] == "success"

    december = reserves.current_version(engine, V)
    assert (december["status"], december["is_current"], december["run_id"]) == ("approved", True, run.run_id)
    signoffs = reserves.signoffs(engine, V)
    assert signoffs[["publication_version", "decision", "decided_by"]].values.tolist() == [
        [december["version"], "approve", getpass.getuser()]  # the OS user the CLI ran as, not the typed name
    ]
    # accepted: December's refit is now the champion; November's publication is untouched
    assert {e.model_version for e in registry.champions(engine).values()} == {december["model_version"]}
    assert december["model_version"] != champion
    history = registry.champion_history(engine)
    assert history.iloc[-1][["valuation_date", "action"]].tolist() == [V, "refitted"]
    assert reserves.current_version(engine, PREVIOUS_V)["version"] == november["version"]
    # the analysis of change was stored for the run and ties to the cent to the current rows
    aoc = reserves.movements(engine, V, run.run_id)
    assert movement.ties(aoc)
    closing = aoc[aoc["kind"] == "closing"].set_index("segment")["amount"]
    current = reserves.current_reserves(engine, V).groupby("segment")["unpaid"].sum().round(2)
    assert closing.round(2).to_dict() == current.to_dict()
    previous = aoc[aoc["kind"] == "opening"].set_index("segment")["amount"]
    november_rows = reserves.current_reserves(engine, PREVIOUS_V).groupby("segment")["unpaid"].sum().round(2)
    assert previous.round(2).to_dict() == november_rows.to_dict()


@pytest.mark.parametrize("decision", ["reject", "timeout"])
def test_rejected_or_timed_out_month_stays_held_and_changes_nothing(held_month, airflow_api, decision):
    engine, november, champion = held_month
    rejecter = None
    if decision == "reject":  # ada rejects in the UI (the REST API) once the hold alert is out

        def reject():
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and (held := _held_code(engine)) is None:
                time.sleep(0.2)
            value = NUMBERS_SIGNOFF.value(held[0], "reject", "Bo Actuary", "Motor moved without explanation", held[1])
            airflow_api.set_variable("ada", NUMBERS_SIGNOFF.key(V), value)

        rejecter = threading.Thread(target=reject, daemon=True)
        rejecter.start()
    history_before = registry.champion_history(engine)
    run = _run(timeout=120 if decision == "reject" else 2)
    if rejecter is not None:
        rejecter.join(timeout=5)
    states = _states(run)
    assert run.state == "success", states
    assert states["signoff.apply_signoff"] == "success"
    assert states["reporting.report"] == "skipped" and states["reporting.email_report"] == "skipped"

    table = reserves.versions(engine, V)
    assert table[["version", "status", "is_current"]].values.tolist() == [[1, "held", False]]
    assert reserves.current_version(engine, V) is None
    who = "ada" if decision == "reject" else None  # the Airflow user, not the display name "Bo Actuary"
    assert reserves.signoffs(engine, V)[["decision", "decided_by"]].values.tolist() == [[decision, who]]
    # the previous month's publication and the champion are exactly as they were
    assert reserves.current_version(engine, PREVIOUS_V)["version"] == november["version"]
    assert {e.model_version for e in registry.champions(engine).values()} == {champion}
    assert registry.champion_history(engine).equals(history_before)

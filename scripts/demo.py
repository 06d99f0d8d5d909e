"""The main job on the embedded default: a synthetic book in a SQLite warehouse, one monthly run, its outputs.

Run through `make demo` (which sets up the virtualenv and the Airflow home first). Steps:
1. a fresh warehouse (data/warehouse.db) with a synthetic book, accident months 2019-01 .. 2024-12;
2. a local mail catcher (SMTP on 127.0.0.1; mails land in data/outbox as .eml files);
3. `airflow dags test monthly_reserving_pipeline 2025-01-01`: the run for December 2024, valued as at
   2024-12-31. It stops at the approval sensor: the demo prints the instruction and, from a second process,
   approves as Airflow user demo_actuary (the approvers setting) with `python -m include.reserving.approve
   --api-url ...`, through a local api-server whose audit log tells the sensor who wrote the approval;
4. prints where the outputs are, ending with the PDF reserve report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from sqlalchemy import select  # noqa: E402

from include.reserving import schema  # noqa: E402
from include.reserving.config import DATA_DIR, load_settings, warehouse_url  # noqa: E402
from include.reserving.dates import parse_valuation_date  # noqa: E402
from include.reserving.presentation.instruction import ApprovalInstruction  # noqa: E402
from include.reserving.warehouse.core import make_engine, redact  # noqa: E402

LOGICAL_DATE = "2025-01-01"
VALUATION_DATE = parse_valuation_date("2024-12-31")
CLAIMS = int(os.environ.get("DEMO_CLAIMS", "20000"))
APPROVER = "Demo Actuary"  # the display name; who approves is the Airflow user below
APPROVER_USER = "demo_actuary"


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def mail_catcher(outbox: Path):
    """A local SMTP server writing each message to ``outbox``; returns (controller, port)."""
    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd narrates every SMTP command at INFO

    class Outbox:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
            n = len(list(outbox.glob("*.eml"))) + 1
            (outbox / f"{n:02d}.eml").write_bytes(envelope.original_content)
            return "250 OK"

    outbox.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Outbox(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def wait_for_pending(url: str, run: subprocess.Popen, log_path: Path) -> tuple[str, str] | None:
    """Poll the warehouse until the model card asks for approval: (version, the card's code); None when the run
    ends or the promotion rule does not ask."""
    from include.reserving.governance import proposal_id
    from include.reserving.warehouse import decisions

    pd_ = schema.promotion_decisions
    engine = make_engine(url)
    while run.poll() is None:
        with engine.connect() as conn:  # one row per line, written together
            rows = conn.execute(select(pd_).where(pd_.c.valuation_date == VALUATION_DATE)).all()
        promote = {r.segment: r.challenger_version for r in rows if r.decision == "promote"}
        if rows and not promote:
            return None
        proposal = proposal_id(VALUATION_DATE, promote)
        issued = proposal and decisions.issued(engine, decisions.MODEL, VALUATION_DATE, proposal)
        if issued:
            return proposal, issued.code
        time.sleep(2)
    return None


def api_server(env: dict) -> tuple[subprocess.Popen, str, dict]:
    """A local api-server (127.0.0.1) with two users: demo_actuary (op) approves, auditor (viewer) is what the
    sensor reads Airflow's audit log as. Returns the process, its URL and the users' passwords."""
    import secrets

    home = Path(os.environ["AIRFLOW_HOME"])
    passwords = {APPROVER_USER: secrets.token_urlsafe(16), "auditor": secrets.token_urlsafe(16)}
    password_file = home / "demo-passwords.json"
    password_file.write_text(json.dumps(passwords))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server_env = {
        **env,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{APPROVER_USER}:op,auditor:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
    }
    log = (home / "demo-api-server.log").open("w")
    server = subprocess.Popen(
        ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(240):
        if server.poll() is not None:
            raise SystemExit(f"the api-server exited; log: {home / 'demo-api-server.log'}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                return server, base, passwords
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the api-server did not start; log: {home / 'demo-api-server.log'}")


def main() -> None:
    started = time.monotonic()
    for stale in (DATA_DIR / "warehouse.db", DATA_DIR / "artifacts", DATA_DIR / "outbox"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    settings = load_settings()
    url = warehouse_url(settings)
    step(f"warehouse: {redact(url)}")
    schema.create_all(make_engine(url))

    step(f"synthetic book: {CLAIMS} claims, accident months 2019-01 .. 2024-12")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.synth",
            "--claims",
            str(CLAIMS),
            "--start",
            "2019-01",
            "--end",
            "2024-12",
            "--seed",
            "7",
            "--db",
            url,
            "--reset",
        ],
        cwd=PROJECT,  # devtools is not installed: importable from the project root
        check=True,
    )

    controller, port = mail_catcher(DATA_DIR / "outbox")
    smtp = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "reserving@example.com"},
    }
    env = {**os.environ, "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp), "RESERVING_APPROVAL_POKE_SECONDS": "5"}
    subprocess.run(
        ["airflow", "variables", "delete", f"reserving_approval__{VALUATION_DATE}"], env=env, capture_output=True
    )
    step("a local api-server: the approver's Airflow user, and the audit log the sensor reads")
    server, base, passwords = api_server(env)
    env["RESERVING_APPROVERS"] = APPROVER_USER
    env["AIRFLOW_CONN_RESERVING_AIRFLOW_API"] = f"http://auditor:{passwords['auditor']}@{base.split('://')[1]}"

    step(f"monthly_reserving_pipeline for {LOGICAL_DATE} (valuation date {VALUATION_DATE})")
    log_path = Path(os.environ["AIRFLOW_HOME"]) / "demo-run.log"
    print(f"    $ airflow dags test monthly_reserving_pipeline {LOGICAL_DATE}   (log: {log_path})", flush=True)
    with log_path.open("w") as log:
        run = subprocess.Popen(
            ["airflow", "dags", "test", "monthly_reserving_pipeline", LOGICAL_DATE],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            pending = wait_for_pending(url, run, log_path)
            if pending:
                version, code = pending
                step("the run waits at governance.await_approval for an actuary")
                print(textwrap.indent(ApprovalInstruction(VALUATION_DATE, version, code).text, "    "), flush=True)
                print(f"    approving from a second process as Airflow user {APPROVER_USER!r}:", flush=True)
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "include.reserving.approve",
                        "--valuation-date",
                        str(VALUATION_DATE),
                        "--decision",
                        "approve",
                        "--by",
                        APPROVER,
                        "--comment",
                        "demo approval after reading the model card",
                        "--api-url",
                        base,
                        "--user",
                        APPROVER_USER,
                    ],
                    env={**env, "AIRFLOW_PASSWORD": passwords[APPROVER_USER]},
                    check=True,
                )
            run.wait()
        finally:
            if run.poll() is None:
                run.terminate()
            controller.stop()
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    if run.returncode != 0:
        print(log_path.read_text()[-6000:])
        raise SystemExit(f"the run failed; full log: {log_path}")

    step("outputs")
    from include.reserving.warehouse.reserves import current_reserves, versions

    engine = make_engine(url)
    published = current_reserves(engine, VALUATION_DATE)
    version = versions(engine, VALUATION_DATE).iloc[-1]
    print(f"    reserves   version {version.version} ({version.status}), model {version.model_version}")
    sums = published.groupby("segment")[["case_reserve", "ibnr", "unpaid"]].sum()
    sums.loc["total"] = sums.sum()
    for segment, row in sums.iterrows():
        print(
            f"               {segment:<10} case reserves {row.case_reserve:>16,.2f}  IBNR {row.ibnr:>16,.2f}"
            f"  unpaid {row.unpaid:>16,.2f}"
        )
    from include.reserving.warehouse.reconciliation import results_frame

    reconciled = results_frame(engine, VALUATION_DATE, "as_recorded")
    print(
        f"    reconciled {int(reconciled['passed'].sum())} of {len(reconciled)} line measures of "
        f"{VALUATION_DATE:%B %Y} to the finance control totals (reconciliation_results; report section 5)"
    )
    print(f"    warehouse  {redact(url)} (reserve_results, reserve_versions, model_registry, approvals, ...)")
    print(f"    e-mails    {DATA_DIR / 'outbox'} ({len(list((DATA_DIR / 'outbox').glob('*.eml')))} messages)")
    card = next((DATA_DIR / "artifacts").rglob("model_card_*.pdf"), None)
    if card:
        print(f"    model card {card}")
    print(f"    run log    {log_path}")
    report = next((DATA_DIR / "artifacts").rglob(f"reserve_report_{VALUATION_DATE}.pdf"))
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; reserve report: {report}")


if __name__ == "__main__":
    main()

"""The main job on the embedded default: a synthetic book in a SQLite warehouse, one monthly run, its outputs.

Run through `make demo` (which sets up the virtualenv and the Airflow home first). Steps:
1. a fresh warehouse (data/warehouse.db) with a synthetic book, accident months 2019-01 .. 2024-12;
2. a local mail catcher (SMTP on 127.0.0.1; mails land in data/outbox as .eml files);
3. `airflow dags test monthly_reserving_pipeline 2025-01-01`: the run for December 2024, valued as at
   2024-12-31. It stops at the approval sensor: the demo prints the instruction and, from a second process,
   approves as "Demo Actuary" with `python -m include.reserving.approve` (which runs `airflow variables set`);
4. prints where the outputs are, ending with the PDF reserve report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
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
APPROVER = "Demo Actuary"


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


def wait_for_pending(url: str, run: subprocess.Popen, log_path: Path) -> str | None:
    """Poll the warehouse until the promotion rule asks for approval (or the run ends without asking)."""
    pd_ = schema.promotion_decisions
    engine = make_engine(url)
    while run.poll() is None:
        with engine.connect() as conn:
            row = conn.execute(select(pd_).where(pd_.c.valuation_date == VALUATION_DATE)).first()
        if row is not None:
            return row.challenger_version if row.decision == "promote" else None
        time.sleep(2)
    return None


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
                step("the run waits at governance.await_approval for an actuary")
                print(textwrap.indent(ApprovalInstruction(VALUATION_DATE, pending).text, "    "), flush=True)
                print(f"    approving from a second process as {APPROVER!r}:", flush=True)
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
                    ],
                    env=env,
                    check=True,
                )
            run.wait()
        finally:
            if run.poll() is None:
                run.terminate()
            controller.stop()
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

"""The main job on the embedded default: a synthetic book in a SQLite warehouse, one monthly run, its outputs.

Run through `make demo` (which sets up the virtualenv and the Airflow home first). Steps:
1. create the warehouse schema in data/warehouse.db and write a synthetic book (2019-01 .. 2024-12);
2. `airflow dags test monthly_reserving_pipeline 2025-01-01`: the run for December 2024, valued as at 2024-12-31;
3. print where the outputs are.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from include.reserving import schema  # noqa: E402
from include.reserving.config import DEFAULT_SQLITE_PATH, load_settings, warehouse_url  # noqa: E402
from include.reserving.db import make_engine, redact  # noqa: E402

LOGICAL_DATE = "2025-01-01"
VALUATION_DATE = "2024-12-31"
CLAIMS = int(os.environ.get("DEMO_CLAIMS", "20000"))


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(cmd: list[str], log_path: Path | None = None) -> None:
    print("    $ " + " ".join(cmd), flush=True)
    if log_path is None:
        subprocess.run(cmd, check=True)
        return
    with log_path.open("w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        print(log_path.read_text()[-6000:])
        raise SystemExit(f"command failed ({done.returncode}); full log: {log_path}")


def main() -> None:
    started = time.monotonic()
    settings = load_settings()
    url = warehouse_url(settings)
    step(f"warehouse: {redact(url)}")
    schema.create_all(make_engine(url))

    step(f"synthetic book: {CLAIMS} claims, accident months 2019-01 .. 2024-12")
    run(
        [
            sys.executable,
            "-m",
            "include.reserving.synth",
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
        ]
    )

    step(f"monthly_reserving_pipeline for {LOGICAL_DATE} (valuation date {VALUATION_DATE})")
    log_path = Path(os.environ["AIRFLOW_HOME"]) / "demo-run.log"
    run(["airflow", "dags", "test", "monthly_reserving_pipeline", LOGICAL_DATE], log_path)

    step("outputs")
    from sqlalchemy import select

    engine = make_engine(url)
    with engine.connect() as conn:
        snap = conn.execute(select(schema.snapshots).where(schema.snapshots.c.valuation_date == VALUATION_DATE)).one()
    print(
        f"    snapshot   {snap.valuation_date} ({snap.basis}): {snap.claim_count} claims, "
        f"{snap.transaction_count} transactions, paid to date {snap.paid_total:,.2f}"
    )
    print(
        f"    warehouse  {DEFAULT_SQLITE_PATH if url.startswith('sqlite') else redact(url)}"
        f" (tables triangle_cells, snapshot_claims keyed by valuation_date)"
    )
    print(f"    artifacts  {settings.artifact_root}")
    print(f"    run log    {log_path}")
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s: valuation {VALUATION_DATE} succeeded")


if __name__ == "__main__":
    main()

"""Benchmark: does the drift task's time grow with the book's history or with its windows? On PostgreSQL.

``python benchmarks/bench_drift.py [--claims-per-month 3400] [--months 60 120] [--repeat 5]``

Two synthetic books (``devtools.synth``, seed 7, ANALYZEd) with the same monthly volume and different histories (60
and 120 accident months up to 2024-12: about 200k and 400k claims), each in a fresh database, each with the month
ends P before V and V ingested (two snapshot partitions, as a warehouse keeps them). Drift reads the claims of V's
snapshot reported in its windows (reference 12 months, V's month, severity's month before): the same number of
claims in both books. Interleaved ``--repeat`` times: V's drift report (``stages.input.drift_report_at``, what the
task computes and stores) and its input alone (the claims read) in each book, with the index on (valuation_date,
basis, report_date), then again without it. Prints the medians and the plan of the claims read (EXPLAIN ANALYZE of
the statement the report ran).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PG_ADMIN = os.environ.get("RESERVING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
INDEX = "ix_snapshot_claims_report_date"
END = "2024-12"


def _start(months: int) -> str:
    year, month = divmod(2024 * 12 + 11 - (months - 1), 12)
    return f"{year:04d}-{month + 1:02d}"


def build(admin, admin_url: str, months: int, per_month: int, seed: int, valuation_date: dt.date) -> str:
    """A fresh database holding a book of ``months`` accident months, P and V ingested; its URL."""
    from include.reserving.dates import previous_month_end
    from include.reserving.ingest import ingest
    from include.reserving.warehouse.core import make_engine

    name = f"bench_drift_{uuid.uuid4().hex[:10]}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    synth = ["--claims", str(months * per_month), "--start", _start(months), "--end", END, "--seed", str(seed)]
    subprocess.run([sys.executable, "-m", "devtools.synth", *synth, "--db", url, "--quiet"], cwd=ROOT, check=True)
    engine = make_engine(url)
    for month in (previous_month_end(valuation_date), valuation_date):
        ingest(engine, month)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return url


def drift_once(engine, valuation_date: dt.date, captured: list | None = None):
    """V's drift report and its wall time; ``captured`` gets the statements it ran (for EXPLAIN)."""
    from include.reserving.stages.input import drift_report_at

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append((statement, parameters))

    if captured is not None:
        event.listen(engine, "before_cursor_execute", capture)
    started = time.perf_counter()
    report = drift_report_at(engine, valuation_date, "as_recorded", 0.2, 100)
    seconds = time.perf_counter() - started
    if captured is not None:
        event.remove(engine, "before_cursor_execute", capture)
    return report, seconds


def read_once(engine, valuation_date: dt.date) -> float:
    """Wall time of the report's input alone: the snapshot's claims in its windows, as a data frame."""
    from include.reserving import drift
    from include.reserving.warehouse.cells import claim_features

    columns = [column for _, column, _, _ in drift.FEATURES]
    started = time.perf_counter()
    claim_features(engine, valuation_date, "as_recorded", columns, drift.windows_to_read(valuation_date))
    return time.perf_counter() - started


def plan(engine, valuation_date: dt.date) -> tuple[list[str], int]:
    """EXPLAIN ANALYZE of the snapshot read V's drift makes, and the claims it returned."""
    captured: list = []
    report, _ = drift_once(engine, valuation_date, captured)
    statement, parameters = next((s, p) for s, p in captured if "snapshot_claims" in s)
    with engine.connect() as conn:
        lines = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).scalars().all()
    read = max(f.reference_count + f.current_count for f in report.features)
    return lines, read


def main(argv: list[str] | None = None) -> None:
    from include.reserving.warehouse.core import make_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims-per-month", type=int, default=3400)
    parser.add_argument("--months", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--valuation-date", type=dt.date.fromisoformat, default=dt.date(2024, 6, 30))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN)
    args = parser.parse_args(argv)
    v = args.valuation_date
    admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    urls: dict[int, str] = {}
    try:
        for months in args.months:
            urls[months] = build(admin, args.pg_admin_url, months, args.claims_per_month, args.seed, v)
        engines = {months: make_engine(url) for months, url in urls.items()}
        seconds: dict[tuple[int, str], list[float]] = {}
        facts: dict[int, tuple[int, list[str]]] = {}
        for indexed in (True, False):
            label = "with index" if indexed else "without index"
            if not indexed:
                for engine in engines.values():
                    with engine.begin() as conn:
                        conn.exec_driver_sql(f"DROP INDEX {INDEX}")
            for months, engine in engines.items():
                lines, read = plan(engine, v)  # also warms the cache before the timed runs
                with engine.connect() as conn:
                    snapshot = conn.exec_driver_sql(
                        "SELECT count(*) FROM snapshot_claims WHERE valuation_date = %(v)s", {"v": v}
                    ).scalar_one()
                facts[months] = (snapshot, read)
                print(f"\n{months} months, V's snapshot {snapshot:,} claims, {label}: plan of the snapshot read")
                print("\n".join(f"  {line}" for line in lines))
            for _ in range(args.repeat):
                for months, engine in engines.items():
                    _, took = drift_once(engine, v)
                    seconds.setdefault((months, label), []).append(took)
                    seconds.setdefault((months, f"{label}, the claims read alone"), []).append(read_once(engine, v))
        for engine in engines.values():
            engine.dispose()
    finally:
        for url in urls.values():
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()
    print(f"\nV={v}, {args.claims_per_month:,} claims a month, PostgreSQL; medians of {args.repeat}, interleaved")
    for (months, label), values in seconds.items():
        snapshot, read = facts[months]
        runs = ", ".join(f"{s:.2f}" for s in values)
        print(
            f"{months} months ({snapshot:,} claims in V's snapshot, {read:,} in the widest window pair), {label}: "
            f"{statistics.median(values):.2f} s ({runs})"
        )


if __name__ == "__main__":
    main()

"""Benchmark: generate and bulk-load a synthetic book into PostgreSQL and SQLite; record the figures in BENCHMARKS.md.

``python benchmarks/bench_synth.py --claims 1000000 [--repeat 3] [--targets postgres sqlite] [--no-write]``

Each run is a child process (``python -m devtools.synth ... --quiet``) on a fresh target: a PostgreSQL
database created for the run and dropped after it, or a SQLite file in a temporary folder. Wall time is measured
around the child; peak memory is the child's maximum resident set size (``os.wait4``), so the PostgreSQL server's
own memory is not included. Medians over ``--repeat`` runs are reported and written to the section
"Synthetic book generation" of BENCHMARKS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks_md import write_section  # the script's own folder is on sys.path
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Synthetic book generation"
DEFAULT_PG_ADMIN = os.environ.get("RESERVING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _run_child(args: list[str]) -> tuple[float, float, str]:
    """Run the generator CLI in a child process: (wall seconds, peak RSS in MB, its summary line)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "devtools.synth", *args], cwd=ROOT, stdout=subprocess.PIPE)
    out = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"generator failed ({status}): {out}")
    return seconds, usage.ru_maxrss / 1024, out.strip().splitlines()[-1]


def _count_transactions(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("select count(*) from claim_transactions")).scalar()
    finally:
        engine.dispose()


def run_postgres(claims: int, seed: int, admin_url: str) -> tuple[float, float, int]:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"bench_synth_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)  # any query kept
    try:
        seconds, rss, _ = _run_child(["--claims", str(claims), "--seed", str(seed), "--db", url, "--quiet"])
        return seconds, rss, _count_transactions(url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_sqlite(claims: int, seed: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as folder:
        url = f"sqlite:///{Path(folder) / 'warehouse.db'}"
        seconds, rss, _ = _run_child(["--claims", str(claims), "--seed", str(seed), "--db", url, "--quiet"])
        return seconds, rss, _count_transactions(url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="runs per target; medians are reported")
    parser.add_argument("--targets", nargs="+", default=["postgres", "sqlite"], choices=["postgres", "sqlite"])
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN, help="a PostgreSQL database to create dbs from")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    rows = []
    for target in args.targets:
        runs = []
        for i in range(args.repeat):
            if target == "postgres":
                result = run_postgres(args.claims, args.seed, args.pg_admin_url)
            else:
                result = run_sqlite(args.claims, args.seed)
            runs.append(result)
            print(f"{target} run {i + 1}: {result[0]:.1f} s, peak {result[1]:.0f} MB, {result[2]:,} transactions")
        rows.append(
            (
                target,
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
                runs[0][2],
                ", ".join(f"{r[0]:.1f}" for r in runs),
            )
        )

    command = "python benchmarks/bench_synth.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()[0]
    table = "\n".join(
        f"| {t} | {args.claims:,} | {n:,} | {s:.1f} | {m:.0f} | {runs} | {'yes' if s < 120 and m < 2048 else 'no'} |"
        for t, s, m, n, runs in rows
    )
    body = f"""Generate and bulk-load a synthetic book (``devtools/synth.py``, seed {args.seed}, accident
months 2015-01..2024-12) into a fresh PostgreSQL database and into a fresh SQLite file: wall time of the whole CLI run
(generation, load, index build) and the peak resident memory of that process; medians of {args.repeat} run(s).

Reproduce: `{command.strip()}`

| target | claims | transactions | wall s (median) | peak RSS MB (median) | runs (s) | aim: < 120 s, < 2 GB |
|---|---|---|---|---|---|---|
{table}

Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other work (1-minute load
average {load:.1f} at the end); Python {platform.python_version()}; code at commit {commit.stdout.strip() or "?"}.
Peak memory is the generator process only (not the PostgreSQL server)."""
    print(body)
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()

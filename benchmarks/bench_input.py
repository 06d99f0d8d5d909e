"""Benchmark: the input group (contract .. drift) for one valuation date against one plain aggregate scan, same run.

``python benchmarks/bench_input.py --claims 1000000 [--repeat 1] [--scan-repeat 3] [--no-write]``

A fresh PostgreSQL database is created for the run (and dropped after it) and a synthetic book is written into it
(``python -m devtools.synth --claims N --seed 7 --quiet``, then ANALYZE). Measured in the same run:

(a) the plain aggregate scan: one GROUP BY of the transactions as at V (joined to their claims for the origin) to
    triangle cells (segment, accident quarter, development quarter), the floor any ingest has to pay;
(b) the monthly run: contract + reconcile + ingest + gate + plausibility + drift for V, as the DAG's tasks run
    them (``stages.input.contract`` and ``reconcile``, ``ingest``;
    ``run_quality_gate`` with what the gate stored for the previous month end (``previous_gate``), ``store_results``;
    ``plausibility_aggregates`` (stored; V's from the month before's plus V's month), ``plausibility.evaluate``,
    its ``store_results``; ``drift_report``,
    ``store_drift_metrics``), after (c) the same for the month end before V on the empty warehouse (the first
    valuation: no baseline, so uniqueness is checked over every row). Both in one child process whose peak
    resident memory is read with ``os.wait4``. V's ingest takes the incremental path
    (the month end before it was ingested and gated clean); (b') then times V's ingest again by the full path,
    what every month cost before incremental ingest.

Medians over the repeats, the ratio b/a (aim: at most 3), c/a and the peak RSS (aim: under 1 GB) go to the section
"Ingest, gate and drift" of BENCHMARKS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.benchmarks_md import write_section  # noqa: E402

SECTION = "## Ingest, gate and drift"
DEFAULT_PG_ADMIN = os.environ.get("RESERVING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
# The synthetic Liability tail posts single reserve changes above the default 10M bound: the benchmark times the
# passing gate (a failed check costs one more pass for its examples).
AMOUNT_BOUND = 100_000_000.0

SCAN_SQL = """
SELECT c.line_of_business AS segment,
       (extract(year FROM c.accident_date)::int * 12 + extract(month FROM c.accident_date)::int - 1) / 3 AS origin_q,
       ({mv} - (extract(year FROM t.transaction_date)::int * 12 + extract(month FROM t.transaction_date)::int - 1))
           / 3 AS bucket,
       sum(coalesce(t.paid_amount, 0)) AS paid,
       sum(coalesce(t.paid_amount, 0) + coalesce(t.case_reserve_change, 0)) AS incurred,
       count(*) AS n
FROM claim_transactions t JOIN claims c ON c.claim_id = t.claim_id
WHERE t.transaction_date <= '{v}' AND t.recorded_at < '{cutoff}' AND c.report_date <= '{v}'
GROUP BY 1, 2, 3
"""


def _month(engine, url: str, valuation_date: dt.date, settings) -> tuple[dict, object, object, list]:
    """Ingest, gate (stored), plausibility (stored), drift (stored) for one month end, as the DAG's tasks run them;
    stage seconds, the gate's report, the drift report and the failed plausibility checks."""
    from include.reserving import plausibility
    from include.reserving.ingest import ingest
    from include.reserving.quality.runner import previous_gate, run_quality_gate
    from include.reserving.stages import RunFacts
    from include.reserving.stages import input as stages
    from include.reserving.stages.input import drift_report_at
    from include.reserving.warehouse import plausibility as plausibility_store
    from include.reserving.warehouse.drift import store_drift_metrics
    from include.reserving.warehouse.quality import store_results

    seconds = {}
    facts = RunFacts(valuation_date, "as_recorded", f"bench_{valuation_date}", settings)
    started = time.perf_counter()
    stages.contract(facts)
    seconds["contract"] = time.perf_counter() - started
    mark = time.perf_counter()
    stages.reconcile(facts)
    seconds["reconcile"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ingest_path = ingest(engine, valuation_date).path
    seconds["ingest"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gate_") as folder:
        previous = previous_gate(engine, valuation_date, "as_recorded")
        report = run_quality_gate(url, valuation_date, "as_recorded", settings, folder, previous=previous)
        store_results(engine, report)
    seconds["gate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    aggregates = stages.plausibility_aggregates(engine, valuation_date, "as_recorded", settings)
    checks = plausibility.evaluate(*aggregates, valuation_date, settings)
    plausibility_store.store_results(engine, valuation_date, "as_recorded", checks)
    seconds["plausibility"] = time.perf_counter() - mark
    mark = time.perf_counter()
    drifted = drift_report_at(engine, valuation_date, "as_recorded", settings.psi_threshold, settings.drift_min_sample)
    store_drift_metrics(engine, drifted)
    seconds["drift"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    seconds["ingest_path"] = ingest_path
    return seconds, report, drifted, [c.explain() for c in plausibility.failures(checks)]


def child(url: str, valuation_date: dt.date) -> None:
    """(c) then (b) in this process: the month before V on the empty warehouse, then V; prints JSON."""
    from include.reserving.config import Settings
    from include.reserving.dates import previous_month_end
    from include.reserving.ingest import ingest
    from include.reserving.warehouse.core import make_engine

    os.environ["AIRFLOW_CONN_RESERVING_DB"] = url  # the stages reach the warehouse through the connection
    engine = make_engine(url)
    settings = Settings(amount_min=-AMOUNT_BOUND, amount_max=AMOUNT_BOUND)
    first_valuation = previous_month_end(valuation_date)
    first, _, _, _ = _month(engine, url, first_valuation, settings)
    seconds, report, drifted, implausible = _month(engine, url, valuation_date, settings)
    # the same month's ingest by the full path (what every month cost before incremental ingest), for the ratio
    mark = time.perf_counter()
    ingest(engine, valuation_date, incremental=False)
    seconds["ingest_full"] = time.perf_counter() - mark
    engine.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "first": first,
                "first_valuation": first_valuation.isoformat(),
                "transactions": report.row_count,
                "claims": report.claim_count,
                "gate_success": report.success,
                "gate_failures": [c.key for c in report.failures],
                "plausibility_failures": implausible,
                "incremental": any("recorded after" in c.description for c in report.checks),
                "max_psi": max((f.psi for f in drifted.features if f.psi is not None), default=None),
            }
        )
    )


def run_child(url: str, valuation_date: dt.date) -> tuple[dict, float]:
    """(b) in a child process: its figures and its own peak RSS in MB (``os.wait4``: getrusage of all children
    would report the generator's, a bigger earlier child)."""
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [sys.executable, __file__, "--child", url, valuation_date.isoformat()],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        out = child.stdout.read()
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"child failed:\n{err.read()[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def scan(url: str, valuation_date: dt.date) -> float:
    """(a) one plain aggregate scan to triangle cells; seconds."""
    mv = valuation_date.year * 12 + valuation_date.month - 1
    cutoff = valuation_date + dt.timedelta(days=1)
    sql = SCAN_SQL.format(mv=mv, v=valuation_date.isoformat(), cutoff=cutoff.isoformat())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(text(sql)).fetchall()
            return time.perf_counter() - started
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(admin_url: str, prefix: str) -> Iterator[str]:
    """The URL of a PostgreSQL database created for the run from ``admin_url`` (any query kept), dropped after."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def machine() -> dict:
    """What the figures were measured on, and how busy it was at the end."""
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def _runs(runs: list[tuple[dict, float]], stage: str, which: str = "seconds") -> str:
    return ", ".join(f"{r[0][which][stage]:.1f}" for r in runs)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--valuation-date", type=dt.date.fromisoformat, default=dt.date(2024, 12, 31))
    parser.add_argument("--repeat", type=int, default=1, help="runs of ingest + gate + drift (b); medians reported")
    parser.add_argument("--scan-repeat", type=int, default=3, help="runs of the plain scan (a); median reported")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN, help="a PostgreSQL database to create dbs from")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    v = args.valuation_date

    scans, runs = [], []
    with fresh_database(args.pg_admin_url, "bench_input") as url:
        steps = 1 + args.scan_repeat + args.repeat
        with tqdm(total=steps, desc="bench_input", unit="step") as bar:
            bar.set_postfix_str(f"synth {args.claims:,} claims")
            synth_args = ["--claims", str(args.claims), "--seed", str(args.seed), "--db", url, "--quiet"]
            subprocess.run([sys.executable, "-m", "devtools.synth", *synth_args], cwd=ROOT, check=True)
            engine = create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("ANALYZE"))
                n_rows = conn.execute(text("SELECT count(*) FROM claim_transactions")).scalar_one()
            engine.dispose()
            bar.update()
            # interleaved, so that both see the same load on the shared machine
            for i in range(max(args.scan_repeat, args.repeat)):
                if i < args.scan_repeat:
                    bar.set_postfix_str("plain scan")
                    scans.append(scan(url, v))
                    bar.update()
                if i < args.repeat:
                    bar.set_postfix_str("contract .. drift")
                    runs.append(run_child(url, v))
                    bar.update()

    a = statistics.median(scans)
    keys = ("contract", "reconcile", "ingest", "gate", "plausibility", "drift", "total")
    stages = {k: statistics.median(r[0]["seconds"][k] for r in runs) for k in keys}
    firsts = {k: statistics.median(r[0]["first"][k] for r in runs) for k in keys}
    peak = max(r[1] for r in runs)
    first = runs[0][0]
    ratio = stages["total"] / a
    core = statistics.median(sum(r[0]["seconds"][k] for k in ("ingest", "gate", "drift")) for r in runs)
    first_ratio = firsts["total"] / a
    ingest_full = statistics.median(r[0]["seconds"]["ingest_full"] for r in runs)
    prev = first["first_valuation"]
    paths = "/".join(sorted({r[0]["seconds"]["ingest_path"] for r in runs}))  # each run's monthly ingest path
    psi = "none compared (too few claims)" if first["max_psi"] is None else f"{first['max_psi']:.4f}"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    command = "python benchmarks/bench_input.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = f"""Fresh PostgreSQL database, synthetic book of {args.claims:,} claims (seed {args.seed}, {n_rows:,}
transactions, ANALYZEd), valuation date V = {v}, basis as_recorded, gate amount bounds +/-{AMOUNT_BOUND:,.0f} (the
synthetic tail exceeds the default 10M). In one child process, as the DAG's tasks run them:
(c) contract check, reconciliation to the finance control totals, ingest, gate, plausibility and drift ("all six")
for the month end before V, {prev}, on the empty warehouse (the first valuation: no volume baseline, every row
checked for uniqueness); then (b) the same for V, the monthly run: the gate has {prev}'s clean result, so it checks
the volume and checks uniqueness only for the rows recorded since, against every row as at V (uniqueness
narrowed: {first["incremental"]}). (a) one plain aggregate scan of the transactions as at V joined to their claims,
GROUP BY segment, accident quarter, development quarter, interleaved with (b)/(c). Medians of {len(scans)} scans and
{len(runs)} child runs.

Reproduce: `{command.strip()}`

| measure | seconds (median) | runs (s) |
|---|---:|---|
| (a) plain aggregate scan | {a:.1f} | {", ".join(f"{s:.1f}" for s in scans)} |
| (b) monthly run: contract | {stages["contract"]:.1f} | {_runs(runs, "contract")} |
| (b) monthly run: reconcile | {stages["reconcile"]:.1f} | {_runs(runs, "reconcile")} |
| (b) monthly run: ingest ({paths} path) | {stages["ingest"]:.1f} | {_runs(runs, "ingest")} |
| (b') the same month's ingest by the full path | {ingest_full:.1f} | {_runs(runs, "ingest_full")} |
| (b) monthly run: gate | {stages["gate"]:.1f} | {_runs(runs, "gate")} |
| (b) monthly run: plausibility | {stages["plausibility"]:.1f} | {_runs(runs, "plausibility")} |
| (b) monthly run: drift | {stages["drift"]:.1f} | {_runs(runs, "drift")} |
| **(b) monthly run: all six** | **{stages["total"]:.1f}** | {_runs(runs, "total")} |
| (c) first valuation: contract | {firsts["contract"]:.1f} | {_runs(runs, "contract", "first")} |
| (c) first valuation: reconcile | {firsts["reconcile"]:.1f} | {_runs(runs, "reconcile", "first")} |
| (c) first valuation: ingest | {firsts["ingest"]:.1f} | {_runs(runs, "ingest", "first")} |
| (c) first valuation: gate | {firsts["gate"]:.1f} | {_runs(runs, "gate", "first")} |
| (c) first valuation: plausibility | {firsts["plausibility"]:.1f} | {_runs(runs, "plausibility", "first")} |
| (c) first valuation: drift | {firsts["drift"]:.1f} | {_runs(runs, "drift", "first")} |
| (c) first valuation: all six | {firsts["total"]:.1f} | {_runs(runs, "total", "first")} |

Ingest + gate + drift alone (the measure before the contract, reconciliation and plausibility checks were added):
{core:.1f} s, **{core / a:.1f}x** the scan. The monthly ingest: {stages["ingest"] / a:.2f}x the scan
({paths} path); by the full path {ingest_full / a:.2f}x.
Ratio b/a, the monthly run: **{ratio:.1f}x** (aim: at most 3x:
{"met" if ratio <= 3 else f"missed by {ratio - 3:.1f}x"}).
Ratio c/a, the first valuation of a warehouse: {first_ratio:.1f}x. Peak RSS of the child process: **{peak:.0f} MB**
(aim: under 1 GB: {"met" if peak < 1024 else "missed"}). Gate passed: {first["gate_success"]}
{first["gate_failures"] or ""}; plausibility failures: {first["plausibility_failures"] or "none"};
largest PSI {psi}.

Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other work (1-minute load
average {os.getloadavg()[0]:.1f} at the end); Python {platform.python_version()}; code at commit
{commit.stdout.strip() or "?"}. Peak memory is the task process only (not the PostgreSQL server)."""
    print(body)
    print(
        f"bench_input: scan {a:.1f} s, monthly contract..drift {stages['total']:.1f} s "
        f"(contract {stages['contract']:.1f}, reconcile {stages['reconcile']:.1f}, ingest {stages['ingest']:.1f}, "
        f"gate {stages['gate']:.1f}, plausibility {stages['plausibility']:.1f}, "
        f"drift {stages['drift']:.1f}), "
        f"ratio {ratio:.1f}x (first valuation {first_ratio:.1f}x), peak RSS {peak:.0f} MB; "
        f"monthly ingest ({paths} path) {stages['ingest'] / a:.2f}x the scan, "
        f"full path {ingest_full:.1f} s = {ingest_full / a:.2f}x"
    )
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], dt.date.fromisoformat(sys.argv[3]))
    else:
        main()

"""Benchmark: the scale curve (issue 17 part 3): first valuation and monthly run against one plain aggregate scan,
per book size, on PostgreSQL.

``python benchmarks/bench_scale.py --sizes 1000000 3000000 10000000 [--repeat 1] [--scan-repeat 3] [--no-write]``

For each size a fresh PostgreSQL database is created (and dropped after it) and a synthetic book written into it
by the generator's CLI (``python -m devtools.synth --claims N --seed 7``: progress bar, one-line summary; its wall
time and peak RSS are reported), then ANALYZEd. Measured in the same run, interleaved:

(a) the plain aggregate scan of ``bench_input`` (one GROUP BY of the transactions as at V to triangle cells);
(c) the first valuation: the input group's tasks for the month end before V on the empty warehouse;
(b) the monthly run: the same tasks for V, whose month end before was ingested and gated clean just before, as in
    production (the ingest's path, and why, is read from its log line).

The tasks are the DAG's (``stages.input``: contract, land, run_order, reconcile, ingest, validate, plausibility,
drift), each in its own child process, so the peak resident memory of each is its own (``os.wait4``). Then the
disk: ``pg_database_size`` and ``pg_total_relation_size`` of the source tables and of the warehouse's pipeline
tables. Medians over the repeats; each size's ratios are to its own scan. The section "Scale" of BENCHMARKS.md is
rewritten after each size (``--results FILE`` keeps the figures of earlier invocations, so sizes may run apart).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_input import AMOUNT_BOUND, DEFAULT_PG_ADMIN, fresh_database, machine, scan  # noqa: E402
from benchmarks.benchmarks_md import BENCHMARKS_MD, write_section  # noqa: E402

SECTION = "## Scale"
TASKS = ("contract", "land", "run_order", "reconcile", "ingest", "validate", "plausibility", "drift")
CORE = ("ingest", "validate", "drift")  # issue 17's measure: ingest + gate + drift
# the ingest's log line naming its path and why; under Airflow's log format it ends with the logger and location
PATH_LINE = re.compile(r"ingest V=\S+ basis=\S+: (\w+) path \((.*)\)(?: +\[include\.reserving\.ingest\].*)?$", re.M)
MONTHLY_TARGET, FIRST_TARGET, RSS_TARGET_MB = 0.5, 3.0, 1024


def task_env(url: str, artifact_root: str) -> dict[str, str]:
    """The environment of a task process: the warehouse connection and the settings, as a deployment sets them."""
    return {
        **os.environ,
        "AIRFLOW_CONN_RESERVING_DB": url,
        "RESERVING_ARTIFACT_ROOT": artifact_root,
        # the synthetic Liability tail posts single reserve changes above the default 10M bound (see bench_input)
        "RESERVING_AMOUNT_MIN": str(-AMOUNT_BOUND),
        "RESERVING_AMOUNT_MAX": str(AMOUNT_BOUND),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def _stage(task: str, valuation_date: str) -> tuple[float, dict]:
    """One task of the input group for V, as the DAG runs it: the stage function's seconds and its result."""
    from include.reserving.stages import RunFacts
    from include.reserving.stages import input as stages

    facts = RunFacts.create(valuation_date, f"scale_{valuation_date}")
    started = time.perf_counter()
    result = getattr(stages, task)(facts)
    return time.perf_counter() - started, result


def _figures(task: str, seconds: float, result: dict, log: str, rss_kb: int) -> dict:
    found = PATH_LINE.search(log) if task == "ingest" else None
    return {
        "seconds": seconds,
        "rss_mb": rss_kb / 1024,
        "result": result,
        "path": found.group(1) if found else None,
        "why": found.group(2) if found else None,
    }


def task_child(task: str, valuation_date: str) -> None:
    """The child process of :func:`run_task`: prints the stage's seconds and result as JSON."""
    import include.reserving.stages.input  # noqa: F401 (imports Airflow, which configures logging its own way)

    # then the ingest's line naming its path, whatever Airflow's import did to logging
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("include.reserving").setLevel(logging.INFO)
    seconds, result = _stage(task, valuation_date)
    print(json.dumps({"seconds": seconds, "result": result}, default=str))


def run_task(task: str, valuation_date: dt.date, env: dict[str, str], log_file) -> dict:
    """One task in a child process: its seconds (the stage function's, not the interpreter start), peak RSS in MB,
    result and, for the ingest, the path its log line names; its log appended to ``log_file``."""
    with tempfile.TemporaryFile("w+") as err_file:
        child = subprocess.Popen(
            [sys.executable, __file__, "--task", task, valuation_date.isoformat()],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)  # the child's own peak RSS, not the largest child's so far
        child.stdout.close()
        err_file.seek(0)
        err = err_file.read()
    # Airflow's log configuration writes the stages' lines to stdout, before the JSON line
    log_file.write(f"--- {task} {valuation_date}\n{err}{out}")
    log_file.flush()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"task {task} for {valuation_date} failed:\n{(err + out)[-3000:]}")
    done = json.loads(out.strip().splitlines()[-1])
    return _figures(task, done["seconds"], done["result"], err + out, usage.ru_maxrss)


def run_task_here(task: str, valuation_date: dt.date, env: dict[str, str], log_file) -> dict:
    """:func:`run_task` in this process (``--in-process``, a quick check without a process start per task): the
    memory is then this process's peak so far, not the task's."""
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("include.reserving")
    level, saved = logger.level, dict(os.environ)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    os.environ.update(env)
    try:
        seconds, result = _stage(task, valuation_date.isoformat())
    finally:
        os.environ.clear()
        os.environ.update(saved)
        logger.removeHandler(handler)
        logger.setLevel(level)
    log_file.write(f"--- {task} {valuation_date}\n{log.getvalue()}")
    return _figures(task, seconds, result, log.getvalue(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run_tasks(valuation_date: dt.date, env: dict[str, str], log_file, bar, in_process: bool = False) -> dict:
    """The input group's tasks for V in DAG order, each its own process (unless ``in_process``)."""
    runs = {}
    for task in TASKS:
        bar.set_postfix_str(f"{valuation_date} {task}")
        runs[task] = (run_task_here if in_process else run_task)(task, valuation_date, env, log_file)
    return runs


def disk(url: str) -> dict:
    """Bytes used by the database, the source tables and the warehouse's pipeline tables (indexes included)."""
    from sqlalchemy import create_engine, text

    from include.reserving import schema

    sources = {t.name for t in schema.SOURCE_TABLES}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            total = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            sizes = {
                name: conn.execute(
                    text("SELECT coalesce(pg_total_relation_size(to_regclass(:name)), 0)"), {"name": name}
                ).scalar_one()
                for name in schema.metadata.tables
            }
    finally:
        engine.dispose()
    pipeline = {k: v for k, v in sizes.items() if k not in sources and v}
    return {
        "database": total,
        "source": sum(v for k, v in sizes.items() if k in sources),
        "pipeline": sum(pipeline.values()),
        "largest_pipeline": sorted(pipeline.items(), key=lambda kv: -kv[1])[:3],
    }


def generate(url: str, claims: int, seed: int) -> dict:
    """The book written by the generator's CLI (its progress bar on this terminal): wall s, peak RSS, summary."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "devtools.synth", "--claims", str(claims), "--seed", str(seed), "--db", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the generator failed ({status}): {out}")
    return {"seconds": time.perf_counter() - started, "rss_mb": usage.ru_maxrss / 1024, "summary": out.strip()}


def measure(claims: int, args: argparse.Namespace) -> dict:
    """Everything for one book size (see the module docstring)."""
    from sqlalchemy import create_engine, text
    from tqdm import tqdm

    from include.reserving.dates import previous_month_end

    v = args.valuation_date
    first_v = previous_month_end(v)
    scans, monthly = [], []
    with fresh_database(args.pg_admin_url, "bench_scale") as url, tempfile.TemporaryDirectory() as artifacts:
        env = task_env(url, artifacts)
        print(f"bench_scale: {claims:,} claims -> {url}", flush=True)
        book = generate(url, claims, args.seed)
        print(book["summary"], flush=True)
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            started = time.perf_counter()
            if not args.as_generated:
                # A claims system appends its extract in recording order, so a month's rows sit together; the
                # generator writes claim by claim, which spreads them over every page and makes a read of one
                # month's rows (the incremental ingest's) nearly a read of the whole table.
                conn.execute(text("CLUSTER claim_transactions USING ix_claim_transactions_recorded_at"))
            book["cluster_seconds"] = time.perf_counter() - started
            conn.execute(text("ANALYZE"))
            transactions = conn.execute(text("SELECT count(*) FROM claim_transactions")).scalar_one()
        engine.dispose()
        book_disk = disk(url)
        log_path = Path(args.task_log or tempfile.gettempdir()) / f"bench_scale_{claims}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)  # a named folder that is not there yet
        steps = args.scan_repeat + 1 + args.repeat
        with open(log_path, "w") as log_file, tqdm(total=steps, desc=f"scale {claims:,}", unit="step") as bar:
            # interleaved, so that the scan and the tasks see the same load on the shared machine
            order = ["scan", "first"] + [
                x for i in range(max(args.scan_repeat - 1, args.repeat)) for x in ("scan", "monthly")
            ]
            plan = {"scan": args.scan_repeat, "first": 1, "monthly": args.repeat}
            for step in order:
                if plan[step] == 0:
                    continue
                plan[step] -= 1
                if step == "scan":
                    bar.set_postfix_str("plain scan")
                    scans.append(scan(url, v))
                elif step == "first":
                    first = run_tasks(first_v, env, log_file, bar, args.in_process)
                else:
                    monthly.append(run_tasks(v, env, log_file, bar, args.in_process))
                bar.update()
        after = disk(url)
    return {
        "claims": claims,
        "transactions": transactions,
        "valuation_date": v.isoformat(),
        "first_valuation_date": first_v.isoformat(),
        "generate": book,
        "scans": scans,
        "first": first,
        "monthly": monthly,
        "disk_book": book_disk,
        "disk": after,
        "task_log": str(log_path),
        "machine": machine(),
        "in_process": args.in_process,
        "recording_order": not args.as_generated,
    }


def _median(runs: list[dict], task: str, key: str = "seconds") -> float:
    return statistics.median(r[task][key] for r in runs)


def _core(run: dict) -> float:
    return sum(run[t]["seconds"] for t in CORE)


def _all(run: dict) -> float:
    return sum(run[t]["seconds"] for t in TASKS)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary(size: dict) -> dict:
    """The medians and ratios of one size."""
    a = statistics.median(size["scans"])
    monthly, first = size["monthly"], size["first"]
    core = statistics.median(_core(r) for r in monthly)
    return {
        "scan": a,
        "monthly_core": core,
        "monthly_core_ratio": core / a,
        "monthly_all": statistics.median(_all(r) for r in monthly),
        "first_core": _core(first),
        "first_all": _all(first),
        "first_all_ratio": _all(first) / a,
        "peak_rss": max(t["rss_mb"] for run in [first, *monthly] for t in run.values()),
        "paths": [r["ingest"]["path"] for r in monthly],
    }


def render(sizes: list[dict], command: str, commit: str) -> str:
    """The section's body: the curve, the per-task table of each size, the targets."""
    sizes = sorted(sizes, key=lambda s: s["claims"])
    stats = [summary(s) for s in sizes]
    books = [s["generate"] for s in sizes]
    scans = [
        f"{x['scan']:.1f} ({', '.join(f'{v:.1f}' for v in s['scans'])})" for s, x in zip(sizes, stats, strict=True)
    ]
    head = "| | " + " | ".join(f"{s['claims'] / 1e6:g}M claims" for s in sizes) + " |"
    rule = "|---|" + "---:|" * len(sizes)

    def row(label: str, cells) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    curve = [
        head,
        rule,
        row("transactions", (f"{s['transactions']:,}" for s in sizes)),
        row("book generation + load, s (peak RSS MB)", (f"{g['seconds']:.0f} ({g['rss_mb']:.0f})" for g in books)),
        row("(a) plain aggregate scan, s (median; runs)", scans),
        row("(c) first valuation: ingest + gate + drift, s", (f"{x['first_core']:.1f}" for x in stats)),
        row("(c) first valuation: all eight tasks, s", (f"{x['first_all']:.1f}" for x in stats)),
        row("**(c) / (a)**", (f"**{x['first_all_ratio']:.2f}x**" for x in stats)),
        row("(b) monthly: ingest + gate + drift, s (median)", (f"{x['monthly_core']:.1f}" for x in stats)),
        row("**(b) ingest + gate + drift / (a)**", (f"**{x['monthly_core_ratio']:.2f}x**" for x in stats)),
        row("(b) monthly: all eight tasks, s (median)", (f"{x['monthly_all']:.1f}" for x in stats)),
        row("(b) monthly ingest path", (", ".join(sorted(set(filter(None, x["paths"])))) or "?" for x in stats)),
        row("peak RSS of any task, MB", (f"{x['peak_rss']:.0f}" for x in stats)),
        row("database after the book, GB", (_gb(s["disk_book"]["database"]) for s in sizes)),
        row("database after both valuations, GB", (_gb(s["disk"]["database"]) for s in sizes)),
        row("source tables (with indexes), GB", (_gb(s["disk"]["source"]) for s in sizes)),
        row("pipeline tables (with indexes), GB", (_gb(s["disk"]["pipeline"]) for s in sizes)),
    ]  # fmt: skip
    per_task = [
        "| task | "
        + " | ".join(f"{s['claims'] / 1e6:g}M first | {s['claims'] / 1e6:g}M monthly" for s in sizes)
        + " |",
        "|---|" + "---:|---:|" * len(sizes),
    ]
    for task in TASKS:
        cells = []
        for s in sizes:
            first = s["first"][task]
            cells.append(f"{first['seconds']:.1f} s, {first['rss_mb']:.0f} MB")
            cells.append(f"{_median(s['monthly'], task):.1f} s, {_median(s['monthly'], task, 'rss_mb'):.0f} MB")
        per_task.append(f"| `input.{task}` | " + " | ".join(cells) + " |")
    why = []
    for s in sizes:
        for label, run in [("first", s["first"]), *(("monthly", r) for r in s["monthly"])]:
            ing = run["ingest"]
            when = ing["result"]["valuation_date"]
            why.append(f"- {s['claims']:,} claims, {label} ({when}): {ing['path']} path ({ing['why']})")
    largest = stats[-1]
    top = sizes[-1]
    rss_ok = all(x["peak_rss"] < RSS_TARGET_MB for x in stats)
    flat = ", ".join(f"{x['monthly_core_ratio']:.2f}x" for x in stats)
    rss = ", ".join(f"{x['peak_rss']:.0f} MB" for x in stats)
    loads = ", ".join(f"{s['machine']['load']:.1f}" for s in sizes)
    targets = [
        f"- Monthly ingest + gate + drift at {top['claims']:,} claims at most {MONTHLY_TARGET}x the scan: "
        f"{largest['monthly_core_ratio']:.2f}x, {_verdict(largest['monthly_core_ratio'] <= MONTHLY_TARGET)}; "
        f"across the sizes {flat}.",
        f"- First valuation (all eight tasks) at {top['claims']:,} claims at most {FIRST_TARGET:g}x the scan: "
        f"{largest['first_all_ratio']:.2f}x, {_verdict(largest['first_all_ratio'] <= FIRST_TARGET)}.",
        f"- Peak RSS under 1 GB per task at every size: {rss}, {_verdict(rss_ok)}.",
    ]
    m = sizes[-1]["machine"]
    in_process = any(s.get("in_process") for s in sizes)
    return "\n".join(
        [
            f"Fresh PostgreSQL database per size, synthetic book (seed {sizes[0]['seed']}, about 10 transactions a "
            "claim, accident months 2015-01..2024-12), "
            + (
                "`claim_transactions` then put in recording order (`CLUSTER ... USING "
                "ix_claim_transactions_recorded_at`, not timed: a claims system's append-only extract lies in that "
                "order, the generator writes claim by claim), ANALYZEd. "
                if all(s.get("recording_order") for s in sizes)
                else "rows in the generator's order (claim by claim: a month's rows spread over the whole table), "
                "ANALYZEd. "
            )
            + "Valuation V = "
            f"{sizes[0]['valuation_date']}, basis as_recorded; (c) the first valuation is "
            f"{sizes[0]['first_valuation_date']} on the empty warehouse, (b) the monthly run is V right after it. "
            "Each of the input group's eight tasks (`stages.input`: contract, land, run_order, reconcile, ingest, "
            "validate = the gate, plausibility, drift) runs in its own child process, as the DAG runs them; seconds "
            "are the stage function's (interpreter start and imports excluded), memory is each process's peak RSS "
            "(`os.wait4`; the PostgreSQL server's own memory is not included). (a) is `bench_input`'s plain "
            "aggregate scan, interleaved with (c) and (b). Ratios are to the same size's median scan.",
            "",
            *(
                ["Every task ran in the benchmark's own process (`--in-process`): memory is not per task.", ""]
                * in_process
            ),
            f"Reproduce: `{command}`",
            "",
            *curve,
            "",
            "Per task (seconds, peak RSS):",
            "",
            *per_task,
            "",
            "Which ingest path ran, and why (the ingest's log line):",
            "",
            *why,
            "",
            "Targets (issue 17):",
            "",
            *targets,
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']:.0f} GB, shared with other helpers' test "
            f"suites (1-minute load average {loads} at the end of "
            f"each size); Python {m['python']}; PostgreSQL defaults (shared_buffers 128MB, work_mem 4MB); code at "
            f"commit {commit}.",
        ]
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--valuation-date", type=dt.date.fromisoformat, default=dt.date(2024, 12, 31))
    parser.add_argument("--repeat", type=int, default=1, help="monthly runs per size (medians reported)")
    parser.add_argument("--scan-repeat", type=int, default=3, help="plain scans per size (median reported)")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN, help="a PostgreSQL database to create dbs from")
    parser.add_argument("--results", type=Path, help="JSON file of figures: earlier sizes read from it, all written")
    parser.add_argument("--task-log", help="folder for the tasks' logs (default: the temporary folder)")
    parser.add_argument(
        "--as-generated",
        action="store_true",
        help="keep the generator's row order (claim by claim), not recording order",
    )
    parser.add_argument("--in-process", action="store_true", help="tasks in this process (no per-task memory)")
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    done = (
        {s["claims"]: s for s in json.loads(args.results.read_text())} if args.results and args.results.exists() else {}
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    sizes = " ".join(str(c) for c in sorted({*done, *args.sizes}))
    command = (
        f"python benchmarks/bench_scale.py --sizes {sizes} --repeat {args.repeat} --scan-repeat {args.scan_repeat}"
    )
    command += " --in-process" if args.in_process else ""
    command += " --as-generated" if args.as_generated else ""
    for claims in args.sizes:
        size = measure(claims, args)
        size["seed"] = args.seed
        done[claims] = size
        x = summary(size)
        print(
            f"bench_scale {claims:,} claims: scan {x['scan']:.1f} s; first valuation {x['first_all']:.1f} s "
            f"({x['first_all_ratio']:.2f}x); monthly ingest+gate+drift {x['monthly_core']:.1f} s "
            f"({x['monthly_core_ratio']:.2f}x, {'/'.join(filter(None, x['paths']))} path); peak RSS "
            f"{x['peak_rss']:.0f} MB; database {_gb(size['disk']['database'])} GB",
            flush=True,
        )
        if args.results:
            args.results.write_text(json.dumps(list(done.values()), indent=1))
        body = render(list(done.values()), command, commit.stdout.strip() or "?")
        if args.no_write:
            print(body)
        else:
            write_section(SECTION, body, args.markdown)
    return list(done.values())


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--task":
        task_child(sys.argv[2], sys.argv[3])
    else:
        main()

"""Benchmark: wall time of one monthly run and of an N-month backfill under Airflow's real services.

``python benchmarks/bench_runs.py --claims 1000000 --months 12 [--executors local celery] [--no-write]``

For each executor (LocalExecutor; CeleryExecutor with two workers on Redis), in the same session and one after the
other: fresh services (api-server, scheduler, dag-processor, and two ``airflow celery worker`` processes for
Celery) with a fresh PostgreSQL metadata database, and a fresh PostgreSQL warehouse holding the synthetic book
(``synth.BookSpec(claims=N, start=2020-01, end=2024-12, seed=11)``: claims keep arriving through the backfill,
as in a live book; gate amount bounds +/-100M as in bench_input). Then:

1. **one monthly run**: ``POST /api/v2/dags/.../dagRuns`` with logical date 2024-01-01 (valuation 2023-12-31);
   a fresh warehouse has no champion, so it trains, backtests, asks for approval (approved at once by a thread
   watching ``promotion_decisions`` and setting the Variable through the REST API) and publishes;
2. **a backfill** of the following ``--months`` months:
   ``airflow backfill create --from-date 2024-02-01 ... --max-active-runs 1`` (valuations 2024-02-29
   onwards, oldest first, one at a time), approvals as above whenever a month promotes.

Wall time of a run is end_date - start_date from the REST API; of the backfill, last end - first start. The per-task
breakdown is each task's ``duration`` from ``/taskInstances`` (mapped tasks: the longest map index, since they run in
parallel; the backfill: median over its months). Results go to the section "Monthly runs and backfills" of
BENCHMARKS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_input import AMOUNT_BOUND  # the script's own folder is on sys.path
from benchmarks_md import write_section
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.synth import BookSpec  # noqa: E402
from tests.integration.airflow_services import (  # noqa: E402
    DAG_ID,
    Actuary,
    AirflowServices,
    Warehouse,
    task_instances,
)

SECTION = "## Monthly runs and backfills"
REDIS_URL = os.environ.get("RESERVING_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _task_durations(api, run_id: str) -> dict[str, float]:
    """Seconds per task of one run; a mapped task counts its slowest map index (they run side by side)."""
    out: dict[str, float] = {}
    for ti in task_instances(api, run_id):
        if ti["duration"] is None or ti["state"] != "success":
            continue
        out[ti["task_id"]] = max(out.get(ti["task_id"], 0.0), float(ti["duration"]))
    return out


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def bench_executor(executor: str, book: BookSpec, months: int, workdir: Path, log) -> dict:
    warehouse = Warehouse(workdir / "artifacts")
    env = {
        "AIRFLOW_CONN_RESERVING_DB": warehouse.conn_uri,
        "RESERVING_ARTIFACT_ROOT": str(warehouse.artifacts),
        "RESERVING_APPROVAL_POKE_SECONDS": "2",
        "RESERVING_APPROVAL_TIMEOUT_SECONDS": "1800",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # The synthetic liability tail posts single reserve changes above the default 10M bound (as bench_input).
        "RESERVING_AMOUNT_MIN": str(-AMOUNT_BOUND),
        "RESERVING_AMOUNT_MAX": str(AMOUNT_BOUND),
    }
    if executor == "celery":
        _flush_redis()
        env |= {"AIRFLOW__CELERY__BROKER_URL": REDIS_URL, "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1"}
    services = AirflowServices(
        workdir / "airflow-home", env=env, executor="CeleryExecutor" if executor == "celery" else "LocalExecutor"
    )
    try:
        started = time.perf_counter()
        warehouse.reset(book)
        load_seconds = time.perf_counter() - started
        services.start()
        if executor == "celery":
            services.start_celery_workers(["w1", "w2"], concurrency=2)
        api = services.api()
        services.wait_for_dag(api)
        api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        log(f"[{executor}] services up in {time.perf_counter() - started:.0f} s (book load {load_seconds:.0f} s)")

        with Actuary(services, warehouse) as actuary:
            run = api.post(
                f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": "bench_month", "logical_date": "2024-01-01T00:00:00Z"}
            )
            run = services.wait_for_run(api, run.raise_for_status().json()["dag_run_id"], 3600, poll=2)
            if run["state"] != "success":
                raise RuntimeError(f"monthly run {run['state']}\n{services.log_tails()}")
            month = {
                "wall": (_ts(run["end_date"]) - _ts(run["start_date"])).total_seconds(),
                "tasks": _task_durations(api, run["dag_run_id"]),
            }
            log(f"[{executor}] monthly run {month['wall']:.0f} s")

            last = dt.date(2024, 2, 1) + dt.timedelta(days=31 * (months - 1))
            services.cli(
                "backfill",
                "create",
                "--dag-id",
                DAG_ID,
                "--from-date",
                "2024-02-01",
                "--to-date",
                f"{last:%Y-%m}-28",
                "--max-active-runs",
                "1",
            )  # fmt: skip (a backfill ignores the DAG's max_active_runs: months must run one at a time)
            runs = api.get(
                f"/dags/{DAG_ID}/dagRuns", params={"run_type": "backfill", "order_by": "logical_date", "limit": 100}
            ).json()["dag_runs"]
            if len(runs) != months:
                raise RuntimeError(f"backfill created {len(runs)} runs, expected {months}")
            done = [
                services.wait_for_run(api, r["dag_run_id"], 3600, poll=3)
                for r in tqdm(runs, desc=f"[{executor}] backfill", unit="month")
            ]
            if any(r["state"] != "success" for r in done):
                raise RuntimeError(f"backfill runs: {[r['state'] for r in done]}\n{services.log_tails()}")
            if actuary.errors:
                raise RuntimeError(f"actuary thread: {actuary.errors}")
        per_run = [(_ts(r["end_date"]) - _ts(r["start_date"])).total_seconds() for r in done]
        per_task: dict[str, list[float]] = {}
        for r in done:
            for task_id, seconds in _task_durations(api, r["dag_run_id"]).items():
                per_task.setdefault(task_id, []).append(seconds)
        backfill = {
            "wall": (_ts(done[-1]["end_date"]) - _ts(done[0]["start_date"])).total_seconds(),
            "runs": per_run,
            "valuations": [r["data_interval_end"][:10] for r in done],
            "tasks": {k: statistics.median(v) for k, v in per_task.items()},
            "trained": len(per_task.get("training.train", [])),
        }
        log(f"[{executor}] backfill of {months} months {backfill['wall']:.0f} s (per run {per_run})")
        return {"month": month, "backfill": backfill, "load": load_seconds}
    finally:
        services.close()
        warehouse.drop()
        if executor == "celery":
            _flush_redis()


LABELS = {"local": "LocalExecutor (parallelism 4)", "celery": "CeleryExecutor, 2 workers x concurrency 2"}


def render(results: dict, book: BookSpec, months: int, command: str, load: str, note: str = "") -> str:
    executors = list(results)
    lines = [
        f"Measured {dt.date.today():%Y-%m-%d} on the shared {os.cpu_count()}-core box"
        f" (Python {platform.python_version()}, Airflow 3.3.2; load average before the run {load});"
        " all executors in one session, one after the other.",
        f"Book: `BookSpec(claims={book.claims:,}, start={book.start}, end={book.end}, seed={book.seed})`"
        " in a PostgreSQL warehouse; metadata in PostgreSQL;"
        " services on 127.0.0.1 (`tests/integration/airflow_services.py`).",
        "Monthly run: REST-triggered, valuation 2023-12-31, fresh warehouse (trains, backtests, waits for the approval"
        " that a watcher sets at once through the REST API, publishes, reports). Backfill: `airflow backfill create"
        f" --from-date 2024-02-01 ... --max-active-runs 1`"
        f" over the following {months} months, oldest first, one at a time. Wall time = the"
        " API's end_date - start_date (backfill: last end - first start).",
        "",
        f"Command: `{command}`",
        "",
        *([f"Note: {note}", ""] if note else []),
        "| | " + " | ".join(LABELS[e] for e in executors) + " |",
        "| --- | " + " | ".join("---:" for _ in executors) + " |",
        "| one monthly run (s) | " + " | ".join(f"{results[e]['month']['wall']:.0f}" for e in executors) + " |",
        f"| {months}-month backfill (s) | "
        + " | ".join(f"{results[e]['backfill']['wall']:.0f}" for e in executors)
        + " |",
        "| backfill: median run (s) | "
        + " | ".join(f"{statistics.median(results[e]['backfill']['runs']):.0f}" for e in executors)
        + " |",
        "| backfill: months that retrained | "
        + " | ".join(str(results[e]["backfill"]["trained"]) for e in executors)
        + " |",
        "",
        "Per task (seconds; the monthly run's own, and the median over the backfill's months; a mapped task counts its"
        " slowest line):",
        "",
        "| task | " + " | ".join(f"{e} month | {e} backfill median" for e in executors) + " |",
        "| --- | " + " | ".join("---: | ---:" for _ in executors) + " |",
    ]
    tasks = list(results[executors[0]]["month"]["tasks"])
    for e in executors:
        for t in list(results[e]["month"]["tasks"]) + list(results[e]["backfill"]["tasks"]):
            if t not in tasks:
                tasks.append(t)
    for t in tasks:
        cells = []
        for e in executors:
            m = results[e]["month"]["tasks"].get(t)
            b = results[e]["backfill"]["tasks"].get(t)
            cells.append(f"{m:.1f}" if m is not None else "-")
            cells.append(f"{b:.1f}" if b is not None else "-")
        lines.append(f"| `{t}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--executors", nargs="+", choices=["local", "celery"], default=["local", "celery"])
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    parser.add_argument("--note", default="", help="a caveat printed under the command (e.g. other load on the box)")
    args = parser.parse_args(argv)
    book = BookSpec(claims=args.claims, start="2020-01", end="2024-12", seed=11)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_runs_") as tmp:
        for executor in args.executors:
            results[executor] = bench_executor(
                executor, book, args.months, Path(tmp) / executor, lambda m: print(m, flush=True)
            )
    command = (
        f"python benchmarks/bench_runs.py --claims {args.claims} --months {args.months}"
        f" --executors {' '.join(args.executors)}"
    )
    raw = Path(tempfile.gettempdir()) / "bench_runs_results.json"
    raw.write_text(json.dumps(results, indent=1))  # kept, so that a rendering slip never costs the measurement
    print(f"raw results: {raw}")
    section = render(results, book, args.months, command.strip(), load, args.note)
    print(section)
    if not args.no_write:
        write_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

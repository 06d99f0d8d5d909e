"""How far the clean synthetic book's reserves move month to month: the measurement behind the hold defaults.

``python -m benchmarks.bench_movements --months 24`` writes a clean book into a fresh SQLite warehouse, runs the
monthly stages in DAG order for each month end (any promoted challenger approved, no hold: the tolerances are set
out of reach), and prints, per month and line, the movement, A/E and unexplained movement relative to the previous
unpaid, then the largest of each over all months: the hold defaults in config.py sit above these with margin.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from devtools.synth import BookSpec, write_book
from include.reserving import movement, schema
from include.reserving.dates import month_end, month_index
from include.reserving.warehouse.core import make_engine

OUT_OF_REACH = {"hold_movement_tolerance": 1e9, "hold_unexplained_tolerance": 1e9, "hold_ae_factor": 1e9}


def run(months: int, book: BookSpec, folder: Path) -> list[dict]:
    import datetime as dt

    from include.reserving.stages import RunFacts, governance, input, reserving, training
    from include.reserving.warehouse import reserves

    url = f"sqlite:///{folder / 'warehouse.db'}"
    schema.create_all(make_engine(url))
    write_book(url, book, progress=False)
    os.environ["AIRFLOW_CONN_RESERVING_DB"] = url
    os.environ["RESERVING_ARTIFACT_ROOT"] = str(folder / "artifacts")
    last = month_index(dt.date.fromisoformat(book.end + "-01"))
    out = []
    for v in [month_end(last - months + 1 + i) for i in range(months)]:
        facts = RunFacts.create(v, f"bench__{v}", **OUT_OF_REACH)
        input.ingest(facts)
        drift = input.drift(facts)
        if drift["retrain"]:
            evaluation = training.evaluate(facts, training.train(facts))
            if evaluation["decision"] == "promote":
                governance.apply_approval(facts, evaluation, {"decision": "approve", "by": "bench"})
        refit = reserving.refit(facts)
        reserved = [reserving.reserve_segment(facts, refit, s) for s in refit["segments"]]
        analysis = reserving.analyse(facts, refit, reserved)
        reserving.publish(facts, refit, reserved, analysis)
        summary = movement.line_summary(reserves.movements(facts.engine(), v, facts.run_id))
        for row in summary.itertuples(index=False):
            if row.previous != row.previous:  # NaN: first month
                continue
            rec = {
                "valuation_date": v.isoformat(),
                "segment": row.segment,
                "model": refit["model_version"],
                "previous": row.previous,
                "movement": abs(row.this - row.previous) / abs(row.previous),
                "unexplained": abs(row.other) / abs(row.previous),
                "ae": row.ae,
                "expected": row.expected,
            }
            out.append(rec)
            print(
                f"{rec['valuation_date']} {rec['segment']:<10} prev {rec['previous']:>14,.0f}"
                f" move {rec['movement']:6.3f} other {rec['unexplained']:6.3f} A/E {rec['ae']:6.2f}"
                f" expected {rec['expected']:>12,.0f}"
                f" {rec['model']}",
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--claims", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default="2019-01")
    parser.add_argument("--end", default="2024-12")
    args = parser.parse_args(argv)
    book = BookSpec(claims=args.claims, start=args.start, end=args.end, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder:
        rows = run(args.months, book, Path(folder))
    print("largest over all months and lines:")
    print(f"  movement / previous:     {max(r['movement'] for r in rows):.3f}")
    print(f"  unexplained / previous:  {max(r['unexplained'] for r in rows):.3f}")
    ae = [r["ae"] for r in rows if r["ae"] == r["ae"]]
    if ae:
        print(f"  A/E: min {min(ae):.3f} max {max(ae):.3f}")


if __name__ == "__main__":
    main()

"""Benchmark: the training search's CPU time on the integration tests' book, one set of methods against another.

``python benchmarks/bench_search.py [--repeat 3] [--baseline chain_ladder,xgboost_development,blend] [--methods ...]``

The integration tests' book (``SMALL_BOOK``: 3,000 claims) is ingested into a temporary SQLite warehouse at
2024-03-31 and ``backtest.search`` runs on its cells with the default settings, once with the baseline's methods
(setting ``search_methods``) and once with ``--methods`` (empty: every registered method), interleaved ``--repeat``
times. Process CPU time, medians and their ratio; printed only (BENCHMARKS.md "Schedule P accuracy" quotes it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VALUATION = dt.date(2024, 3, 31)


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    from tqdm import tqdm

    from devtools.synth import write_book
    from include.reserving import backtest, schema
    from include.reserving.config import load_settings
    from include.reserving.ingest import ingest
    from include.reserving.stages.training import search_candidates
    from include.reserving.warehouse.cells import load_cells
    from include.reserving.warehouse.core import make_engine
    from tests.integration.conftest import SMALL_BOOK

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="chain_ladder,xgboost_development,blend")
    parser.add_argument("--methods", default="", help="comma-separated; empty: every registered method")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/warehouse.db"
        schema.create_all(make_engine(url))
        write_book(url, SMALL_BOOK, progress=False)
        engine = make_engine(url)
        ingest(engine, VALUATION)
        cells = load_cells(engine, VALUATION)
    runs: dict[str, list[float]] = {"baseline": [], "methods": []}
    counts = {}
    with tqdm(total=2 * args.repeat, desc="search", unit="run") as progress:
        for _ in range(args.repeat):
            for label, methods in (("baseline", args.baseline), ("methods", args.methods)):
                settings = load_settings(search_methods=methods)
                candidates = search_candidates(settings)
                counts[label] = len(candidates)
                started = time.process_time()
                backtest.search(cells, candidates, blend_weights=settings.search_blend_weights)
                runs[label].append(time.process_time() - started)
                progress.update()
    base, new = (statistics.median(runs[k]) for k in ("baseline", "methods"))
    for label in runs:
        print(f"{label}: {counts[label]} fitted candidates, CPU s {', '.join(f'{v:.1f}' for v in runs[label])}")
    print(f"bench_search: {len(cells)} cells; median {base:.1f} s -> {new:.1f} s: {new / base:.2f}x")
    return runs


if __name__ == "__main__":
    main()

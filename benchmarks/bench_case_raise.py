"""How close clean months come to the ``case_reserve_raise`` band, and which inflation factors it catches.

``python -m benchmarks.bench_case_raise --extra 6`` writes clean synthetic books into fresh SQLite warehouses (the
three the tests use, ``--extra`` more of 3,000 claims and one of 20,000), computes the month-level plausibility of
each month end with the default settings (as the ``plausibility`` task does), and writes per book (BENCHMARKS.md,
section "Case-reserve raise check"): the line-months judged, failed and skipped, the nearest clean month to each
bound (the factor its raises would need to fail), the largest distance from the band's centre in standard errors
(the band is +- ``plausibility_case_raise_width``) and the share of line-months in which one line's raises
multiplied by 2, 3 and 6 would fail. A factor multiplies every raise
of the month and leaves the claims raised and their previous reserves alone, so it multiplies the observed median:
x k fails exactly when k x observed > upper.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.benchmarks_md import write_section
from devtools.book import load_book
from devtools.synth import BookSpec, CovariateDrift, DevelopmentDrift, generate_book
from include.reserving import plausibility
from include.reserving.config import Settings
from include.reserving.dates import add_months, month_index
from include.reserving.warehouse import history
from include.reserving.warehouse.core import make_engine

FACTORS = (2, 3, 6)


def books(extra: int) -> dict[str, tuple[BookSpec, dt.date, int]]:
    """name: (book, first month end, month ends)."""
    clean = BookSpec(
        claims=3_000,
        start="2018-01",
        end="2024-12",
        seed=31,
        covariate_drift=CovariateDrift("2024-03", younger_by=8.0, bi_shift=0.15),
        development_drift=DevelopmentDrift("2024-07", payment_speedup=1.2, severity_factor=1.1),
    )
    plausible = BookSpec(
        claims=8_000,
        start="2019-01",
        end="2024-12",
        seed=5,
        covariate_drift=CovariateDrift("2022-07", younger_by=10, bi_shift=0.2),
        development_drift=DevelopmentDrift("2022-10", payment_speedup=1.3, severity_factor=1.25),
    )
    out = {
        "clean book (3,000, seed 31)": (clean, dt.date(2023, 1, 31), 24),
        "catalogue (3,000, seed 12)": (
            BookSpec(claims=3_000, start="2019-01", end="2024-12", seed=12),
            dt.date(2023, 1, 31),
            24,
        ),
        "plausibility (8,000, seed 5)": (plausible, dt.date(2022, 1, 31), 24),
    }
    for seed in range(101, 101 + extra):
        out[f"3,000, seed {seed}"] = (
            BookSpec(claims=3_000, start="2018-01", end="2024-12", seed=seed),
            dt.date(2021, 1, 31),
            48,
        )
    out["20,000, seed 201"] = (
        BookSpec(claims=20_000, start="2016-01", end="2024-12", seed=201),
        dt.date(2021, 1, 31),
        48,
    )
    return out


def measure(book: BookSpec, first: dt.date, months: int, folder: Path, settings: Settings) -> pd.DataFrame:
    engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
    load_book(engine, generate_book(book))
    rows = []
    for valuation_date in (add_months(first, m) for m in range(months)):
        window = settings.plausibility_history_months + 1
        aggregates = history.monthly_aggregates(engine, valuation_date, "as_recorded", median_months=window)
        metrics = plausibility.monthly_metrics(*aggregates)
        for check in plausibility.evaluate(*aggregates, valuation_date, settings):
            if check.check == "case_reserve_raise":
                z = _distance(metrics, check, month_index(valuation_date), settings)
                rows.append({"valuation_date": valuation_date, **check.as_row(), "z": z})
    engine.dispose()
    return pd.DataFrame(rows)


def _distance(metrics: pd.DataFrame, check, mv: int, settings: Settings) -> float:
    """The month's distance from the band's centre in standard errors of its median (the books' lines are older
    than the history window, so the window is the previous ``plausibility_history_months`` months)."""
    if check.passed is None:
        return math.nan
    line = metrics.xs(check.segment, level="segment")
    history_months = line.reindex(range(mv - settings.plausibility_history_months, mv))
    judged = history_months[history_months["raise_claims"] >= settings.plausibility_case_raise_min_claims]
    claims = int(line.at[mv, "raise_claims"])
    centre, half = plausibility.raise_band(judged, claims, settings.plausibility_case_raise_width)
    return settings.plausibility_case_raise_width * (math.log1p(check.observed / 100) - centre) / half


def summary(name: str, frame: pd.DataFrame) -> dict:
    judged = frame[frame["passed"].notna()]
    to_upper = judged["upper"] / judged["observed"]
    to_lower = judged["observed"] / judged["lower"].where(judged["lower"] > 0)
    return {
        "book": name,
        "judged": len(judged),
        "failed": int(judged["passed"].eq(False).sum()),
        "skipped": len(frame) - len(judged),
        "nearest upper (x)": round(float(to_upper.min()), 2),
        "nearest lower (/)": round(float(to_lower.min()), 2),
        "largest z": round(float(judged["z"].abs().max()), 2),
        **{f"x{k} caught": round(float((to_upper < k).mean()), 2) for k in FACTORS},
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=6, help="more 3,000-claim books (seeds 101, 102, ...)")
    args = parser.parse_args(argv)
    settings = Settings()
    started, results = time.perf_counter(), []
    for name, (book, first, months) in books(args.extra).items():
        with tempfile.TemporaryDirectory() as folder:
            results.append(summary(name, measure(book, first, months, Path(folder), settings)))
    seconds, table = time.perf_counter() - started, pd.DataFrame(results)
    print(table.to_string(index=False))
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns)
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    write_section(
        "## Case-reserve raise check",
        f"""Reproduce: `python -m benchmarks.bench_case_raise --extra {args.extra}` ({seconds:.0f} s).
Clean synthetic books in SQLite, the month-level plausibility of each month end with the default settings
(`plausibility_case_raise_width` {settings.plausibility_case_raise_width:g},
`plausibility_case_raise_min_claims` {settings.plausibility_case_raise_min_claims}). Per book: line-months judged,
failed and skipped; the nearest clean month to the upper bound (the factor on its raises that would fail it) and to
the lower bound; the largest distance from the band's centre in standard errors of the month's median (the band is
+- the width); the share of line-months in which one line's raises multiplied by 2, 3 or 6 fail.

{header}
{chr(10).join(lines)}
""",
    )
    return table


if __name__ == "__main__":
    main()

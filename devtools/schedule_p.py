"""Public accuracy benchmarks of the reserving models.

``python -m devtools.schedule_p schedule-p`` runs the Schedule P benchmark on chainladder's ``clrd2025``
sample (CAS Schedule P, accident years 1998-2007 developed through 2016): for every company and line with a complete
10x10 paid square and positive premium and paid, each spec is fitted on the upper triangle (calendar years up to
2007), predicts cumulative paid at age 120 months for every accident year, and the sum over accident years is
compared with the actual. Per line it reports MAPE and RMSPE of each spec and their ratio to chain ladder's. Models
that learn across segments (XGBoost) are fitted once per line on all its companies, each company one segment.

The spec the registry would promote is chosen per line the way the pipeline's training stage chooses it:
``backtest.select_spec`` over ``backtest.default_candidates()`` on the upper triangle alone (rolling-origin backtests
refitted as at 2003-2006, scored per company on the paid emerged by 2007, with the bias guard against chain ladder),
never by looking at the outcome at age 120.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import chainladder as cl
import numpy as np
import pandas as pd
from tqdm import tqdm

from include.reserving import backtest
from include.reserving import cells as cellsmod
from include.reserving.config import load_settings
from include.reserving.models import build_model

LINES = ["comauto", "othliab", "ppauto", "wkcomp", "prodliab", "medmal"]
TARGET_LINES = ["comauto", "othliab", "ppauto", "wkcomp"]
LAST_ACCIDENT_YEAR = 2007
AGE = 120
BASELINE = {"method": "chain_ladder", "params": {}}
DEFAULT_SPECS = [
    BASELINE,
    {"method": "xgboost_development", "params": {}},
    {"method": "xgboost_development", "params": {"incurred": False}},
    {"method": "xgboost_development", "params": {"target": "cl_residual"}},
    {"method": "xgboost_development", "params": {"target": "increment"}},
    {"method": "blend", "params": {}},
]


def schedule_p_cells() -> pd.DataFrame:
    """Paid cells of every complete company/line square of ``clrd2025`` (accident years 1998-2007, ages 12-120).

    Returns
    -------
    pandas.DataFrame
        A cells frame with an extra ``line`` column; ``segment`` is the company (group) name. ``incurred`` is
        case incurred (reported incurred less bulk and IBNR reserves); premium is net earned premium.
    """
    sample = cl.load_sample("clrd2025")
    sample = sample[sample.origin <= str(LAST_ACCIDENT_YEAR)]
    sample = sample[sample.development <= AGE]
    sample["CaseIncurred"] = sample["IncurredLosses"] - sample["BulkLoss"]
    frame = cellsmod.from_triangle(
        sample[["CumPaidLoss", "CaseIncurred", "EarnedPremNet"]],
        columns={"CumPaidLoss": "paid", "CaseIncurred": "incurred", "EarnedPremNet": "earned_premium"},
    )
    frame[["segment", "line"]] = frame["segment"].str.rsplit(" / ", n=1, expand=True).to_numpy()
    # premium is origin-level: the same on every cell of an accident year
    frame["earned_premium"] = frame.groupby(["line", "segment", "origin"])["earned_premium"].transform("max")
    per_square = frame.groupby(["line", "segment"]).agg(
        cells=("paid", "size"),
        min_premium=("earned_premium", "min"),
        origins=("origin", "nunique"),
    )
    final_paid = frame[frame["development"] == AGE].groupby(["line", "segment"])["paid"].min()
    complete = (per_square["cells"] == 100) & (per_square["origins"] == 10) & (per_square["min_premium"] > 0)
    complete &= final_paid.reindex(per_square.index).fillna(0) > 0
    keep = pd.MultiIndex.from_frame(frame[["line", "segment"]]).isin(per_square.index[complete])
    return frame[keep].reset_index(drop=True)


def upper_triangle(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells evaluated by the end of the last accident year (what was known at 2007-12-31)."""
    evaluated = pd.to_datetime(cellsmod.evaluation_date(cells))
    return cells[evaluated.dt.year <= LAST_ACCIDENT_YEAR].reset_index(drop=True)


def predicted_totals(
    spec: dict[str, Any], cells: pd.DataFrame, fitted: dict[str, pd.Series] | None = None
) -> pd.Series:
    """Paid at age 120 summed over accident years, per segment, from ``spec`` fitted on the upper triangle.

    ``fitted`` caches totals by spec: a fixed-weight blend with chain ladder of a spec found there is their weighted
    mix (the blend's square is, cell by cell), without a refit.
    """
    fitted = {} if fitted is None else fitted
    key = json.dumps(spec, sort_keys=True)
    if key not in fitted:
        params = spec.get("params") or {}
        parts = [json.dumps(p, sort_keys=True) for p in (BASELINE, params.get("challenger"))]
        if spec["method"] == "blend" and params.get("weight") is not None and params.get("base") is None:
            if all(p in fitted for p in parts):
                weight = float(params["weight"])
                fitted[key] = (1.0 - weight) * fitted[parts[0]] + weight * fitted[parts[1]]
                return fitted[key]
        train = upper_triangle(cells)
        square = build_model(spec).fit(train).predict(train)
        fitted[key] = square[square["development"] == AGE].groupby("segment")["paid"].sum()
    return fitted[key]


def score_line(actual: pd.Series, predicted: pd.Series) -> dict[str, float]:
    """MAPE and RMSPE of predicted against actual totals (one value per company)."""
    error = (predicted.reindex(actual.index) - actual) / actual
    return {"mape": float(error.abs().mean()), "rmspe": float(np.sqrt((error**2).mean()))}


def spec_label(spec: dict[str, Any]) -> str:
    params = ",".join(
        f"{k}={spec_label(v) if isinstance(v, dict) and 'method' in v else v}"
        for k, v in sorted(spec.get("params", {}).items())
    )
    return spec["method"] + (f"({params})" if params else "")


def search_candidates() -> list[dict[str, Any]]:
    """Every spec the training search tries: the methods' grids and their blends with chain ladder."""
    fitted = backtest.default_candidates()
    return [*fitted, *backtest.blended_candidates(fitted, load_settings().search_blend_weights)]


def training_search(cells: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """The spec the training search would promote from what was known at the end of 2007 (the upper triangle), and
    its table (backtest score, bias, eligibility, complexity and standard error of every candidate)."""
    return backtest.select_spec(upper_triangle(cells))


def schedule_p(specs: list[dict[str, Any]], lines: list[str] = LINES, promote: bool = True) -> pd.DataFrame:
    """Run the Schedule P benchmark.

    Parameters
    ----------
    specs : list of dict
        Specs to score; chain ladder (the baseline) is always added.
    lines : list of str
        Schedule P lines.
    promote : bool
        Also run the training search on each line's upper triangle, score every candidate it tried and flag the
        winning spec.

    Returns
    -------
    pandas.DataFrame
        One row per line and spec: ``line, spec, companies, mape, rmspe, promoted, mape_ratio, rmspe_ratio`` (ratios
        to the chain ladder baseline; ``promoted`` marks the spec the training search chose for the line) and, for the
        search's candidates, ``backtest_score, backtest_bias, backtest_abs_bias, eligible`` (NaN for specs it did not
        try).
    """
    specs = [BASELINE, *[s for s in specs if s != BASELINE]]
    candidates = search_candidates() if promote else []
    line_specs = specs + [c for c in candidates if c not in specs]
    # components before the blends mixed from them
    line_specs.sort(key=lambda s: s["method"] == "blend" and (s.get("params") or {}).get("weight") is not None)
    cells = schedule_p_cells()
    rows = []
    with tqdm(total=len(lines) * (len(line_specs) + promote), desc="schedule-p", unit="fit") as progress:
        for line in lines:
            line_cells = cells[cells["line"] == line].drop(columns="line")
            actual = line_cells[line_cells["development"] == AGE].groupby("segment")["paid"].sum()
            columns = ["spec", "mean_score", "mean_bias", "mean_abs_bias", "eligible", "complexity", "se", "selected"]
            promoted, search = None, pd.DataFrame(columns=columns)
            if promote:
                progress.set_postfix_str(f"{line} training search")
                promoted, search = training_search(line_cells)
                progress.update()
            searched = search.set_index("spec")
            fitted: dict[str, pd.Series] = {}
            for spec in line_specs:
                progress.set_postfix_str(f"{line} {spec['method']}")
                scores = score_line(actual, predicted_totals(spec, line_cells, fitted))
                tried = searched.reindex([json.dumps(spec, sort_keys=True)]).iloc[0]
                row = {"line": line, "spec": spec_label(spec), "companies": len(actual), **scores}
                rows.append(
                    {
                        **row,
                        "promoted": spec == promoted,
                        "backtest_score": tried["mean_score"],
                        "backtest_bias": tried["mean_bias"],
                        "backtest_abs_bias": tried["mean_abs_bias"],
                        "eligible": tried["eligible"],
                        "complexity": tried["complexity"],
                        "se": tried["se"],
                    }
                )
                progress.update()
    table = pd.DataFrame(rows)
    baseline = table[table["spec"] == spec_label(BASELINE)].set_index("line")
    table["mape_ratio"] = table["mape"] / table["line"].map(baseline["mape"])
    table["rmspe_ratio"] = table["rmspe"] / table["line"].map(baseline["rmspe"])
    return table


def _searched(value: float, eligible: object) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.3f}" + ("" if pd.isna(eligible) or bool(eligible) else " (biased)")


def shown(table: pd.DataFrame) -> pd.Series:
    """Rows worth a line in the Markdown table: every spec but the blends the search derives, and of those the
    promoted one and the ones within one standard error of the line's best backtest score."""
    derived = table["spec"].str.startswith("blend(challenger=")
    best = table[table["eligible"].eq(True)].groupby("line")["backtest_score"].max()
    within = (table["line"].map(best) - table["backtest_score"]) <= table["se"].fillna(np.inf)
    return ~derived | table["promoted"] | (within & table["eligible"].eq(True))


def to_markdown(table: pd.DataFrame) -> str:
    """The benchmark table as a Markdown table (see :func:`shown` for the rows)."""
    header = (
        "| line | spec | MAPE | RMSPE | MAPE / CL | RMSPE / CL | backtest score | s.e. | complexity | backtest bias | "
        "mean abs. bias |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r.line} | `{r.spec}`{' **promoted**' if r.promoted else ''} | {r.mape:.4f} | "
        f"{r.rmspe:.4f} | {r.mape_ratio:.3f} | {r.rmspe_ratio:.3f} | {_searched(r.backtest_score, True)} | "
        f"{_searched(r.se, True)} | {_searched(r.complexity, True)} | "
        f"{_searched(r.backtest_bias, True)} | {_searched(r.backtest_abs_bias, r.eligible)} |"
        for r in table[shown(table)].itertuples()
    ]
    return "\n".join([header, *lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.schedule_p", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    schedule = commands.add_parser("schedule-p", help="CAS Schedule P (clrd2025) accuracy at age 120 months")
    schedule.add_argument(
        "--spec", action="append", type=json.loads, help="extra model spec as JSON (repeatable; default: every method)"
    )
    schedule.add_argument("--lines", nargs="+", default=LINES, choices=LINES)
    schedule.add_argument(
        "--no-promote", dest="promote", action="store_false", help="skip the training search for the promoted spec"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    table = schedule_p(args.spec or DEFAULT_SPECS, args.lines, args.promote)
    print(to_markdown(table))
    for row in table[table["promoted"]].itertuples():
        meets = row.mape_ratio <= (0.85 if row.line in TARGET_LINES else 1.0) and row.rmspe_ratio <= 1.0
        print(
            f"promoted on {row.line}: {row.spec}, MAPE / CL {row.mape_ratio:.3f}, RMSPE / CL {row.rmspe_ratio:.3f} "
            f"({'meets' if meets else 'misses'} the target)"
        )
    challengers = table[table["spec"] != spec_label(BASELINE)]
    best = challengers.groupby("spec")["mape_ratio"].mean().sort_values()
    best_spec = best.index[0] if len(best) else spec_label(BASELINE)
    squares = table.groupby("line")["companies"].first().sum()
    print(
        f"schedule-p: {squares} company/line squares over {len(args.lines)} lines, "
        f"{len(table['spec'].unique())} specs in {time.monotonic() - started:.0f}s; best mean MAPE ratio to chain "
        f"ladder: {best_spec} {best.iloc[0] if len(best) else 1.0:.3f}"
    )


if __name__ == "__main__":
    main()

"""Truth benchmark: the actuarial methods' unpaid against the true unpaid from the synthetic book's full run-off.

``python benchmarks/bench_truth.py [--claims 20000] [--seed 7] [--months 12] [--no-write]``

The demo book (``scripts/demo.py``: 20,000 claims, accident months 2019-01 .. 2024-12, seed 7) is generated with
``devtools.synth``, loaded into a fresh SQLite warehouse and ingested by the pipeline's own ``ingest`` (as recorded,
quarterly origins and development) at the book's last ``--months`` month ends; each V's cells are read back with
``load_cells`` and reserved per line by ``include.reserving.methods`` with the default settings.

The truth at V: a line's true ultimate is every payment, whenever made, on its claims with an accident on or before
V (the generator writes the whole run-off); true unpaid = true ultimate - paid as the pipeline sees it at V
(transactions dated on/before V and recorded by the end of V). Payments dated by V but recorded later are therefore
unpaid at V, as they are for the pipeline. The benchmark checks that its paid ties to the cells' latest paid.

Per line and in total it reports, for each method (selected, paid CL, incurred CL, BF, Cape Cod), the bias (mean
of estimated - true unpaid, relative to the mean true unpaid) and the MAE (mean |estimated - true|, same scale)
over the valuations, and the selected unpaid's worst relative error on the total. Issue 13's target: selected
within 5% of the true total unpaid at every valuation, and a smaller MAE than paid chain ladder on every line.

At each V it also runs the training search (:func:`include.reserving.backtest.search` with the default settings, as
the train task does) and fits each line's winner on V's cells: ``search`` is the unpaid of the model the search
promotes on the line, as the report's model column shows it (its projected paid ultimate, with the line's paid tail,
less the latest paid), ``cl_model`` that of the plain chain ladder model (the search's baseline; with the tail it is
the methods' ``paid_cl``).
Issue 15's target: on every line the search's MAE at most paid chain ladder's. ``--no-search`` skips it.
The section "Truth benchmark" of BENCHMARKS.md is rewritten (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.benchmarks_md import write_section  # noqa: E402
from include.reserving.dates import end_of_day, month_end, month_index  # noqa: E402

SECTION = "## Truth benchmark"
DEMO = {"claims": 20_000, "seed": 7, "start": "2019-01", "end": "2024-12"}  # scripts/demo.py, unchanged
METHODS = ("selected", "paid_cl", "incurred_cl", "bf", "cape_cod")
SEARCH = ("search", "cl_model")
TARGET_TOTAL = 0.05


def true_unpaid(claims: pd.DataFrame, transactions: pd.DataFrame, valuation_date: dt.date) -> pd.DataFrame:
    """True ultimate, paid as the pipeline sees it at V and true unpaid, per line of business.

    Parameters
    ----------
    claims, transactions : pandas.DataFrame
        The book's full run-off, shaped like the source tables ``claims`` and ``claim_transactions``.
    valuation_date : datetime.date
        V.

    Returns
    -------
    pandas.DataFrame
        ``segment, true_ultimate, paid, true_unpaid``: claims with an accident on/before V; ``paid`` counts the
        transactions dated on/before V and recorded before the end of V (the pipeline's as-recorded snapshot).
    """
    accident = pd.to_datetime(claims["accident_date"])
    covered = claims.loc[accident <= pd.Timestamp(valuation_date), ["claim_id", "line_of_business"]]
    rows = transactions.merge(covered, on="claim_id")
    amount = rows["paid_amount"].fillna(0.0).astype(float)
    known = (pd.to_datetime(rows["transaction_date"]) <= pd.Timestamp(valuation_date)) & (
        pd.to_datetime(rows["recorded_at"]) < pd.Timestamp(end_of_day(valuation_date))
    )
    out = pd.DataFrame(
        {
            "true_ultimate": amount.groupby(rows["line_of_business"]).sum(),
            "paid": amount.where(known, 0.0).groupby(rows["line_of_business"]).sum(),
        }
    )
    out = out.reindex(sorted(covered["line_of_business"].unique()), fill_value=0.0)
    out["true_unpaid"] = out["true_ultimate"] - out["paid"]
    return out.rename_axis("segment").reset_index()


def valuation_dates(end: str, months: int) -> list[dt.date]:
    """The book's last ``months`` month ends, oldest first."""
    last = month_index(dt.date.fromisoformat(end + "-01"))
    return [month_end(last - months + 1 + i) for i in range(months)]


def load_valuations(
    book, valuations: list[dt.date], folder: Path, progress: bool = True
) -> dict[dt.date, pd.DataFrame]:
    """Load ``book`` into a fresh SQLite warehouse, ingest it at each V and read the cells back."""
    from tqdm import tqdm

    from devtools.book import load_book
    from include.reserving.ingest import ingest
    from include.reserving.warehouse.cells import load_cells
    from include.reserving.warehouse.core import make_engine

    engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
    load_book(engine, book)
    out = {}
    for v in tqdm(valuations, desc="ingest", unit="V", disable=not progress):
        ingest(engine, v)
        out[v] = load_cells(engine, v)
    engine.dispose()
    return out


def estimates(cells: pd.DataFrame, settings) -> pd.DataFrame:
    """Each method's unpaid per line (``segment``, one column per ``METHODS``) and the paid the methods saw."""
    from include.reserving import methods

    summary = methods.reserve_book(cells, settings).summary.set_index("segment")
    out = pd.DataFrame({"selected": summary["selected_ultimate"] - summary["paid"]})
    for method in METHODS[1:]:
        out[method] = summary[method] - summary["paid"]
    out["cells_paid"] = summary["paid"]
    return out.reset_index()


def model_unpaid(spec: dict, cells: pd.DataFrame, settings) -> pd.Series:
    """Unpaid per line from ``spec`` fitted on ``cells``, as the report's model column shows it: the model's
    projected paid ultimate (with the line's paid tail unless the model has its own) less the latest paid."""
    from include.reserving import methods
    from include.reserving.models import build_model

    model = build_model(spec).fit(cells)
    book = methods.reserve_book(cells, settings, model.ultimates(cells), model.includes_tail())
    return book.summary.set_index("segment").eval(f"{methods.MODEL} - paid")


def search_estimates(cells: pd.DataFrame, settings) -> pd.DataFrame:
    """Per line: the unpaid of the spec the training search promotes there (``search``, its spec in ``search_spec``)
    and of the plain chain ladder model (``cl_model``), each fitted on V's cells."""
    from include.reserving import backtest, governance
    from include.reserving.stages.training import run_search

    table = run_search(cells, settings)
    winners = backtest.best_per_line(table)
    fitted = {}
    for spec in [governance.FALLBACK_SPEC, *winners.values()]:
        key = backtest.canonical(spec)
        if key not in fitted:
            fitted[key] = model_unpaid(spec, cells, settings)
    rows = [
        {
            "segment": line,
            "search": fitted[backtest.canonical(spec)][line],
            "cl_model": fitted[backtest.canonical(governance.FALLBACK_SPEC)][line],
            "search_spec": spec_label(spec),
        }
        for line, spec in winners.items()
    ]
    return pd.DataFrame(rows)


_CELLS: dict[dt.date, pd.DataFrame] = {}  # what the forked workers of _search_all read


def _search_one(v: dt.date) -> str:
    cache = _search_one.cache
    path = cache / f"search_{v.isoformat()}.json" if cache else None
    if path is not None and path.exists():
        return path.read_text()
    text = search_estimates(_CELLS[v], _search_one.settings).to_json(orient="records")
    if path is not None:
        path.write_text(text)
    return text


def _search_all(
    cells: dict[dt.date, pd.DataFrame], settings, jobs: int, cache: Path | None = None
) -> dict[dt.date, pd.DataFrame]:
    """:func:`search_estimates` at every V, ``jobs`` valuations at a time (forked processes; results as JSON, kept
    in ``cache`` when given and read back from it on a re-run of the same book and settings)."""
    import io
    import multiprocessing

    from tqdm import tqdm

    _CELLS.update(cells)
    _search_one.settings, _search_one.cache = settings, cache
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    valuations = sorted(cells)
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            texts = list(tqdm(pool.imap(_search_one, valuations), total=len(valuations), desc="search", unit="V"))
    else:
        texts = [_search_one(v) for v in tqdm(valuations, desc="search", unit="V")]
    return {v: pd.read_json(io.StringIO(text), orient="records") for v, text in zip(valuations, texts, strict=True)}


def spec_label(spec: dict) -> str:
    """``method(param=value, ...)``, nested specs alike."""
    params = ",".join(
        f"{k}={spec_label(v) if isinstance(v, dict) and 'method' in v else v}"
        for k, v in sorted((spec.get("params") or {}).items())
    )
    return spec["method"] + (f"({params})" if params else "")


def score(rows: pd.DataFrame) -> pd.DataFrame:
    """Bias and MAE per line and in total for each method, relative to the mean true unpaid over the valuations.

    ``rows`` has ``valuation_date, segment, true_unpaid`` and one unpaid column per method.
    """
    methods = [m for m in (*METHODS, *SEARCH) if m in rows]
    total = rows.groupby("valuation_date", as_index=False)[["true_unpaid", *methods]].sum().assign(segment="Total")
    out = []
    for segment, group in pd.concat([rows, total]).groupby("segment", sort=False):
        scale = group["true_unpaid"].mean()
        for method in methods:
            error = group[method] - group["true_unpaid"]
            out.append(
                {
                    "segment": segment,
                    "method": method,
                    "bias": error.mean() / scale,
                    "mae": error.abs().mean() / scale,
                    "worst": (error / group["true_unpaid"]).abs().max(),
                }
            )
    return pd.DataFrame(out)


def verdict(rows: pd.DataFrame, scores: pd.DataFrame) -> tuple[bool, str]:
    """Issue 13's target: selected within 5% of the true total unpaid at every V, lower MAE than paid CL per line."""
    total = rows.groupby("valuation_date")[["true_unpaid", "selected"]].sum()
    worst = float(((total["selected"] - total["true_unpaid"]) / total["true_unpaid"]).abs().max())
    lines = scores[scores["segment"] != "Total"].pivot(index="segment", columns="method", values="mae")
    beaten = lines["selected"] < lines["paid_cl"]
    met = worst <= TARGET_TOTAL and bool(beaten.all())
    text = (
        f"selected total unpaid within {worst:.2%} of the truth at worst over {rows['valuation_date'].nunique()} "
        f"valuations (target {TARGET_TOTAL:.0%}); MAE below paid CL on {int(beaten.sum())} of {len(beaten)} lines: "
        f"target {'met' if met else 'NOT met'}"
    )
    return met, text


def search_verdict(scores: pd.DataFrame) -> tuple[bool, str]:
    """Issue 15's target: on every line the search's winner's MAE is at most paid chain ladder's."""
    lines = scores[scores["segment"] != "Total"].pivot(index="segment", columns="method", values="mae")
    held = lines["search"] <= lines["paid_cl"] + 1e-12
    versus_model = lines["search"] <= lines["cl_model"] + 1e-12
    met = bool(held.all())
    text = (
        f"the search's promoted models' unpaid at least as close to the truth as paid chain ladder's (MAE over the "
        f"valuations) on {int(held.sum())} of {len(held)} lines ({', '.join(held.index[~held]) or 'none'} not), "
        f"and as the chain ladder model's (the report's model column, with the paid tail) on "
        f"{int(versus_model.sum())} of {len(versus_model)}: target "
        f"{'met' if met else 'NOT met'}"
    )
    return met, text


def markdown(rows: pd.DataFrame, scores: pd.DataFrame, summary: str, command: str, seconds: float) -> str:
    from include.reserving.config import load_settings
    from include.reserving.methods import describe_rule

    settings = load_settings()
    by_v = rows.pivot_table(index="valuation_date", columns="segment", values="true_unpaid", aggfunc="sum")
    total = rows.groupby("valuation_date")[["true_unpaid", *METHODS]].sum()
    if settings.bf_apriori_loss_ratio is not None:
        apriori = f"{settings.bf_apriori_loss_ratio:.1%} (set)"
    else:
        apriori = f"from the incurred CL of origins at least {settings.bf_apriori_maturity:.0%} developed on incurred"
    lines = [
        f"Command ({seconds:.0f} s; the demo book of scripts/demo.py, ingested as recorded with quarterly origins and",
        "development, reserved by `include/reserving/methods.py` with the default settings):",
        "",
        "```",
        command,
        "```",
        "",
        "True unpaid at V = every payment, whenever made, on claims with an accident on/before V, less the paid the",
        "pipeline sees at V (dated on/before V and recorded by its end); it ties to the cells' latest paid",
        "to the cent.",
        f"Settings: selection `{describe_rule(settings)}`; tail `{settings.tail_method}`; BF a-priori loss ratio",
        f"{apriori}; BF and Cape Cod on the {settings.expected_basis} pattern.",
        "",
        f"**{summary}**",
        "",
        "Bias = mean(estimated - true unpaid) / mean true unpaid over the valuations; MAE = mean |estimated - true| on",
        "the same scale; worst = the largest |estimated - true| / true at any one valuation.",
        "",
        "| line | method | bias | MAE | worst |",
        "|---|---|---:|---:|---:|",
    ]
    for r in scores.itertuples(index=False):
        lines.append(f"| {r.segment} | {r.method} | {r.bias:+.1%} | {r.mae:.1%} | {r.worst:.1%} |")
    lines += [
        "",
        "Total unpaid by valuation (millions) and each method's error relative to the truth:",
        "",
        "| V | " + " | ".join(f"true {s}" for s in by_v.columns) + " | true total | " + " | ".join(METHODS) + " |",
        "|---|" + "---:|" * (len(by_v.columns) + 1 + len(METHODS)),
    ]
    for v, row in total.iterrows():
        errors = " | ".join(f"{(row[m] - row['true_unpaid']) / row['true_unpaid']:+.1%}" for m in METHODS)
        true_lines = " | ".join(f"{by_v.at[v, s] / 1e6:.1f}" for s in by_v.columns)
        lines.append(f"| {v} | {true_lines} | {row['true_unpaid'] / 1e6:.1f} | {errors} |")
    if "search" in rows:
        lines += [
            "",
            "The training search at each V (default settings, as the train task runs it): the spec it promotes on each",
            "line and that model's unpaid error against the truth, beside paid chain ladder's (methods, with tail) and",
            "the chain ladder model's (the search's baseline, with the paid tail as in the report's model column):",
            "",
            "| V | line | promoted spec | search | paid_cl | cl_model |",
            "|---|---|---|---:|---:|---:|",
        ]
        for r in rows.sort_values(["segment", "valuation_date"]).itertuples(index=False):
            errors = " | ".join(
                f"{(getattr(r, m) - r.true_unpaid) / r.true_unpaid:+.1%}" for m in (*SEARCH[:1], "paid_cl", *SEARCH[1:])
            )
            lines.append(f"| {r.valuation_date} | {r.segment} | `{r.search_spec}` | {errors} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=DEMO["claims"], help="smaller for a quick run")
    parser.add_argument("--seed", type=int, default=DEMO["seed"])
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument("--no-search", dest="search", action="store_false", help="skip the training search")
    parser.add_argument("--jobs", type=int, default=1, help="valuations searched at once (processes)")
    parser.add_argument("--search-cache", type=Path, help="folder keeping each valuation's search result (re-runs)")
    args = parser.parse_args(argv)

    import logging
    import warnings

    from devtools.synth import BookSpec, generate_book
    from include.reserving.config import load_settings

    warnings.filterwarnings("ignore", module="chainladder")  # its fits narrate every short or flat triangle
    logging.getLogger("include").setLevel(logging.WARNING)  # ingest logs each step; the progress bar says enough
    started = time.perf_counter()
    book = generate_book(BookSpec(claims=args.claims, seed=args.seed, start=DEMO["start"], end=DEMO["end"]))
    valuations = valuation_dates(DEMO["end"], args.months)
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench_truth_") as folder:
        cells = load_valuations(book, valuations, Path(folder))
    parts = []
    from tqdm import tqdm

    searched = _search_all(cells, settings, args.jobs, args.search_cache) if args.search else {}
    for v in tqdm(valuations, desc="reserve", unit="V"):
        truth = true_unpaid(book.claims, book.transactions, v)
        got = estimates(cells[v], settings).merge(truth, on="segment", how="outer")
        if args.search:
            got = got.merge(searched[v], on="segment", how="left")
        if not np.allclose(got["cells_paid"], got["paid"], atol=0.01):
            raise AssertionError(f"V={v}: the truth's paid does not tie to the cells' latest paid:\n{got}")
        parts.append(got.assign(valuation_date=v.isoformat()))
    rows = pd.concat(parts, ignore_index=True)
    scores = score(rows)
    met, summary = verdict(rows, scores)
    if args.search:
        summary += "; " + search_verdict(scores)[1]
    seconds = time.perf_counter() - started
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(scores.pivot(index="segment", columns="method", values="mae").rename_axis(None))
    print(summary)
    command = "python benchmarks/bench_truth.py" + ("" if args.claims == DEMO["claims"] else f" --claims {args.claims}")
    if not args.no_write:
        write_section(SECTION, markdown(rows, scores, summary, command, seconds))


if __name__ == "__main__":
    main()

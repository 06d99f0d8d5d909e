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


def load_valuations(book, valuations: list[dt.date], folder: Path, progress: bool = True) -> dict[dt.date, pd.DataFrame]:
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

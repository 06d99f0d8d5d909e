"""Load chainladder's claim-level sample ``prism`` into the source tables, so the pipeline runs on real-world data.

``python -m devtools.prism [--db URL] [--reset]``

The CSV ships in the chainladder package (``chainladder/utils/data/prism.csv``): 34,244 claims of two lines, Auto
and Home, every one closed, one row per claim with accident, report, payment and close dates and the total paid.
Mapping into the source schema:

- ``claims``: ``claim_id`` = ``PRISM-<ClaimNo>``; ``line_of_business`` = ``Line`` (Auto, Home, unchanged);
  ``policy_id`` = ``PRISM-P<ClaimNo>`` (the data has no policies; one claim per policy); ``claimant_age`` and
  ``region`` are NULL (not in the data).
- ``claim_type``: both prism types are damage to property, so ``PD`` (Auto physical damage) and ``Dwelling`` (Home)
  map to ``PropertyDamage``; any other type would be kept as it is (and flagged by the quality gate unless configured
  as an extra claim type).
- ``claim_transactions``: ``open`` at the report date with an initial case reserve, then the single payment of
  ``Paid`` at ``PaymentDate`` whose ``case_reserve_change`` releases the reserve, with status ``closed``; a claim
  whose ``CloseDate`` differs from its ``PaymentDate`` gets a separate zero ``closed`` row at ``CloseDate`` (in the
  shipped file the two dates always agree, so every claim has two rows; nil claims pay 0.00). The data has no reserve
  history, so the initial case reserve is an average-cost reserve: the mean paid amount of the line's paid claims
  (what a claims department books on a new claim before assessing it). ``recorded_at`` = the transaction date
  at noon. Paid amounts are rounded to cents by largest remainder, so the cents add up exactly to the CSV's total
  paid rounded to the cent.
- ``earned_exposure``: prism has no premium or exposure, so both are **derived**: for each line and accident month,
  earned premium = the month's incurred losses smoothed over a centred 12-month window / a 65% loss ratio, and
  exposure units (earned exposure-years in the month) = the smoothed claim count / an assumed annual claim
  frequency (Auto 5%, Home 3%). Use them for
  loss-ratio methods knowingly: they are plausible, not observed.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from devtools.book import TARGET_LOSS_RATIO, Book, load_book
from include.reserving.warehouse.core import make_engine, redact

CLAIM_TYPE_MAP = {"PD": "PropertyDamage", "Dwelling": "PropertyDamage"}
ANNUAL_FREQUENCY = {"Auto": 0.05, "Home": 0.03}
ID_PREFIX = "PRISM-"
MATURE_YEARS = range(2008, 2013)  # accident years complete in the sample; it holds closed claims only


def prism_csv_path() -> Path:
    """Where chainladder keeps the raw prism CSV."""
    return Path(str(resources.files("chainladder") / "utils" / "data" / "prism.csv"))


def read_prism(path: str | Path | None = None) -> pd.DataFrame:
    """The raw prism rows with parsed dates (the file mixes ISO and M/D/YYYY dates)."""
    raw = pd.read_csv(path or prism_csv_path())
    for column in ("AccidentDate", "ReportDate", "PaymentDate", "CloseDate"):
        raw[column] = pd.to_datetime(raw[column], format="mixed").astype("datetime64[s]")
    return raw


def cents_by_largest_remainder(amounts: np.ndarray) -> np.ndarray:
    """Round amounts to whole cents so that their sum equals the rounded total exactly (largest remainder)."""
    exact = amounts * 100
    cents = np.floor(exact).astype(np.int64)
    shortfall = int(round(exact.sum())) - int(cents.sum())
    if shortfall:  # hand the missing cents to the largest fractional parts
        cents[np.argsort(-(exact - cents), kind="stable")[:shortfall]] += 1
    return cents


def _exposure(raw: pd.DataFrame) -> pd.DataFrame:
    months = raw["AccidentDate"].dt.to_period("M")
    mature = raw["AccidentDate"].dt.year.isin(MATURE_YEARS)
    frames = []
    for line, rows in raw.groupby("Line"):
        grid = pd.period_range(months[rows.index].min(), months[rows.index].max(), freq="M")
        base = rows[mature[rows.index]]
        n_months = 12 * len(MATURE_YEARS)
        premium = base["Incurred"].sum() / n_months / TARGET_LOSS_RATIO
        exposure = len(base) / n_months / ANNUAL_FREQUENCY[line]
        frames.append(
            pd.DataFrame(
                {
                    "line_of_business": line,
                    "month": grid.to_timestamp().to_numpy().astype("datetime64[s]"),
                    "earned_premium": round(premium, 2),
                    "exposure_units": round(exposure, 2),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def prism_book(raw: pd.DataFrame | None = None) -> Book:
    """Map the prism rows onto the source schema (see the module docstring for every choice)."""
    raw = read_prism() if raw is None else raw
    n = len(raw)
    claim_id = (ID_PREFIX + raw["ClaimNo"].astype(str)).to_numpy(dtype=object)
    claims = pd.DataFrame(
        {
            "claim_id": claim_id,
            "policy_id": (ID_PREFIX + "P" + raw["ClaimNo"].astype(str)).to_numpy(dtype=object),
            "line_of_business": raw["Line"].to_numpy(dtype=object),
            "claim_type": raw["Type"].map(lambda t: CLAIM_TYPE_MAP.get(t, t)).to_numpy(dtype=object),
            "accident_date": raw["AccidentDate"].to_numpy(),
            "report_date": raw["ReportDate"].to_numpy(),
            "claimant_age": pd.array([pd.NA] * n, dtype="Int64"),
            "region": pd.Series([None] * n, dtype=object),
        }
    )
    paid_cents = cents_by_largest_remainder(raw["Paid"].to_numpy(dtype=float))
    paid_by_line = pd.Series(paid_cents).where(paid_cents > 0).groupby(raw["Line"].to_numpy()).mean()
    reserve_cents = np.rint(raw["Line"].map(paid_by_line).to_numpy(dtype=float)).astype(np.int64)
    same_day = (raw["CloseDate"] == raw["PaymentDate"]).to_numpy()

    opening = pd.DataFrame(
        {"suffix": "-1", "row": np.arange(n), "date": raw["ReportDate"], "paid": 0, "reserve": reserve_cents}
    )
    opening["status"] = "open"
    payment = pd.DataFrame(
        {"suffix": "-2", "row": np.arange(n), "date": raw["PaymentDate"], "paid": paid_cents, "reserve": -reserve_cents}
    )
    payment["status"] = np.where(same_day, "closed", "open")
    closing = pd.DataFrame(
        {"suffix": "-3", "row": np.arange(n), "date": raw["CloseDate"], "paid": 0, "reserve": 0, "status": "closed"}
    )[~same_day]
    rows = pd.concat([opening, payment, closing], ignore_index=True).sort_values(["row", "suffix"], kind="stable")
    dates = rows["date"].to_numpy().astype("datetime64[s]")
    transactions = pd.DataFrame(
        {
            "transaction_id": claim_id[rows["row"]] + rows["suffix"].to_numpy(dtype=object),
            "claim_id": claim_id[rows["row"]],
            "transaction_date": dates,
            "recorded_at": dates + np.timedelta64(12 * 3600, "s"),
            "paid_amount": rows["paid"].to_numpy() / 100,
            "case_reserve_change": rows["reserve"].to_numpy() / 100,
            "status": rows["status"].to_numpy(dtype=object),
        }
    ).reset_index(drop=True)
    return Book(claims=claims, transactions=transactions, exposure=_exposure(raw))


def load_prism(engine: Engine, reset: bool = False, path: str | Path | None = None) -> Book:
    """Map prism and bulk-load it into the source tables; ``reset`` empties them first. Returns the mapped book."""
    book = prism_book(read_prism(path))
    load_book(engine, book, reset=reset)
    return book


def main(argv: list[str] | None = None) -> None:
    from include.reserving.config import warehouse_url

    parser = argparse.ArgumentParser(prog="python -m devtools.prism", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="SQLAlchemy URL (default: the reserving_db connection or the SQLite file)")
    parser.add_argument("--reset", action="store_true", help="delete the source tables' rows first")
    parser.add_argument("--csv", help="prism CSV (default: the copy inside the chainladder package)")
    args = parser.parse_args(argv)
    url = args.db or warehouse_url()
    started = time.perf_counter()
    engine = make_engine(url)
    try:
        book = load_prism(engine, reset=args.reset, path=args.csv)
    finally:
        engine.dispose()
    print(
        f"prism: {len(book.claims):,} claims, {len(book.transactions):,} transactions in "
        f"{time.perf_counter() - started:.1f} s -> {redact(url)}"
    )


if __name__ == "__main__":
    main()

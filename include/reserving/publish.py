"""The published reserve rows, from the selected ultimates (or a model's) and the latest diagonal, to the cent.

Publication itself (versioned, atomic) is in warehouse/reserves.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from include.reserving import schema


@dataclass(frozen=True)
class PublishResult:
    valuation_date: dt.date
    version: int
    rows: int
    unpaid_total: float
    case_reserve_total: float | None  # None: some row's incurred is unknown
    ibnr_total: float | None
    is_new_version: bool

    def as_xcom(self) -> dict:
        return {
            "valuation_date": self.valuation_date.isoformat(),
            "version": self.version,
            "rows": self.rows,
            **{k: getattr(self, k) for k in TOTALS},
        }


# reserve_versions' totals of the published row columns
TOTALS = {"unpaid_total": "unpaid", "case_reserve_total": "case_reserve", "ibnr_total": "ibnr"}


def to_cents(values: pd.Series) -> pd.Series:
    """Round money to the cent, half away from zero (as an actuary rounds), from the float's decimal form."""
    arr = values.astype("float64").to_numpy()
    rounded = np.sign(arr) * np.floor(np.abs(arr) * 100 + 0.5 + 1e-9) / 100
    return pd.Series(rounded, index=values.index)


def total(values: pd.Series) -> float | None:
    """The sum of cent amounts to the cent; None when any is missing (a total of partly unknown figures is unknown)."""
    if values.isna().any():
        return None
    return float(sum((Decimal(f"{float(v):.2f}") for v in values), Decimal(0)))


def totals(rows: pd.DataFrame) -> dict[str, float | None]:
    """``unpaid_total``, ``case_reserve_total`` and ``ibnr_total`` of published rows."""
    return {name: total(rows[column]) for name, column in TOTALS.items()}


# methods.py's origin columns -> the published row's selection columns (schema.SELECTION_COLUMNS)
METHOD_ULTIMATES = {m: f"{m}_ultimate" for m in ("paid_cl", "incurred_cl", "bf", "cape_cod", "model")}


def selected_ultimates(origins: pd.DataFrame) -> pd.DataFrame:
    """:func:`reserve_rows`' input from :func:`include.reserving.methods.reserve_segment`'s origins: the selected
    ultimate, its method, every method's ultimate, the flags and the range per origin."""
    out = origins.rename(columns={"selected_ultimate": "ultimate", "selected_method": "method", **METHOD_ULTIMATES})
    return out[
        ["segment", "origin", "ultimate", "std_err", "p75", "p95", "method", *METHOD_ULTIMATES.values(), "flags"]
    ]


def reserve_rows(ultimates: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Published rows from an ``ultimates`` frame (:func:`selected_ultimates`, or a model's) and the latest
    diagonal (paid and incurred).

    From the rounded paid, incurred and ultimate: case reserves = incurred - paid, IBNR = ultimate - incurred and
    unpaid = ultimate - paid = case reserves + IBNR, each to the cent. Where incurred is unknown, case reserves and
    IBNR are too (NaN); the unpaid is still known. ``std_err``, ``p75`` and ``p95`` are the model's range of the
    unpaid. The selection columns (``method``, each method's ultimate, ``flags``) are carried when ``ultimates``
    has them, each ultimate to the cent.
    """
    latest = latest.rename(columns={"paid": "latest_paid", "incurred": "latest_incurred"})
    rows = ultimates.merge(latest[["segment", "origin", "latest_paid", "latest_incurred"]], on=["segment", "origin"])
    if len(rows) != len(ultimates):
        raise ValueError("ultimates and the latest diagonal do not cover the same (segment, origin) pairs")
    out = rows[["segment", "origin"]].copy()
    out["latest_paid"] = to_cents(rows["latest_paid"])
    out["latest_incurred"] = to_cents(rows["latest_incurred"])
    out["ultimate"] = to_cents(rows["ultimate"])
    out["case_reserve"] = to_cents(out["latest_incurred"] - out["latest_paid"])
    out["ibnr"] = to_cents(out["ultimate"] - out["latest_incurred"])
    out["unpaid"] = to_cents(out["case_reserve"] + out["ibnr"]).fillna(to_cents(out["ultimate"] - out["latest_paid"]))
    for col in ("std_err", "p75", "p95", *METHOD_ULTIMATES.values()):
        out[col] = to_cents(rows[col]) if col in rows else np.nan
    for col in ("method", "flags"):
        out[col] = rows[col] if col in rows else None
    return out.sort_values(["segment", "origin"]).reset_index(drop=True)


# reserve_ranges' columns besides the key (valuation_date, version): the schema is the one place that lists them
RANGE_COLUMNS = [c.name for c in schema.reserve_ranges.columns if c.name not in ("valuation_date", "version")]


def range_rows(summary: pd.DataFrame, rows: pd.DataFrame, settings) -> pd.DataFrame:
    """A version's ``reserve_ranges`` rows: each line's range (its methods summary, ``SUMMARY_COLUMNS``) and the
    total's (lines independent), around the published rows' unpaid so the ranges tie to the published totals."""
    from include.reserving import methods

    unpaid = {segment: total(group["unpaid"]) for segment, group in rows.groupby("segment")}
    lines = methods.with_range(summary.assign(unpaid=summary["segment"].map(unpaid)), settings)
    overall = methods.total_range(lines, settings).assign(range_basis="independent lines")
    out = pd.concat([lines, overall], ignore_index=True).reindex(columns=RANGE_COLUMNS)
    for col in ("unpaid", "std_err", "p75", "p95"):
        out[col] = to_cents(out[col])
    return out

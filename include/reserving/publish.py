"""The published reserve rows, from a model's ultimates and the latest diagonal, rounded to the cent.

Publication itself (versioned, atomic) is in warehouse/reserves.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PublishResult:
    valuation_date: dt.date
    version: int
    rows: int
    ibnr_total: float
    is_new_version: bool

    def as_xcom(self) -> dict:
        return {
            "valuation_date": self.valuation_date.isoformat(),
            "version": self.version,
            "rows": self.rows,
            "ibnr_total": self.ibnr_total,
        }


def to_cents(values: pd.Series) -> pd.Series:
    """Round money to the cent, half away from zero (as an actuary rounds), from the float's decimal form."""
    arr = values.astype("float64").to_numpy()
    rounded = np.sign(arr) * np.floor(np.abs(arr) * 100 + 0.5 + 1e-9) / 100
    return pd.Series(rounded, index=values.index)


def reserve_rows(ultimates: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Published rows from a model's ``ultimates`` frame and the latest diagonal (paid and incurred).

    IBNR is derived from the rounded ultimate and latest paid, so ultimate = latest paid + IBNR holds to the cent.
    """
    latest = latest.rename(columns={"paid": "latest_paid", "incurred": "latest_incurred"})
    rows = ultimates.merge(latest[["segment", "origin", "latest_paid", "latest_incurred"]], on=["segment", "origin"])
    if len(rows) != len(ultimates):
        raise ValueError("ultimates and the latest diagonal do not cover the same (segment, origin) pairs")
    out = rows[["segment", "origin"]].copy()
    out["latest_paid"] = to_cents(rows["latest_paid"])
    out["latest_incurred"] = to_cents(rows["latest_incurred"])
    out["ultimate"] = to_cents(rows["ultimate"])
    out["ibnr"] = to_cents(out["ultimate"] - out["latest_paid"])
    for col in ("std_err", "p75", "p95"):
        out[col] = to_cents(rows[col]) if col in rows else np.nan
    return out.sort_values(["segment", "origin"]).reset_index(drop=True)

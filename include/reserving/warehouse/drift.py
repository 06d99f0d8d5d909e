"""Drift metrics: one row per feature for (V, basis), replaced whole by each drift run."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd

    from include.reserving.drift import DriftReport


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def store_drift_metrics(engine: Engine, report: DriftReport, run_id: str | None = None) -> int:
    """Replace the drift_metrics rows of (V, basis) with this report's, in one transaction. Returns the row count."""
    rows = [
        {
            "feature": f.feature,
            "source_column": f.column,
            "kind": f.kind,
            "psi": _finite_or_none(f.psi),
            "ks_statistic": _finite_or_none(f.ks_statistic),
            "ks_pvalue": _finite_or_none(f.ks_pvalue),
            "psi_threshold": report.psi_threshold,
            "breached": f.breached,
            "reference_start": (f.reference or report.reference).start,
            "reference_end": (f.reference or report.reference).end,
            "current_start": (f.current or report.current).start,
            "current_end": (f.current or report.current).end,
            "reference_count": f.reference_count,
            "current_count": f.current_count,
            "note": f.note,
            "detail": json.dumps(f.detail),
            "run_id": run_id,
        }
        for f in report.features
    ]
    key = {"valuation_date": report.valuation_date, "basis": report.basis}
    return replace_rows(engine, schema.drift_metrics, key, rows)


def drift_metrics(engine: Engine, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    """V's drift rows for the report and the model card: feature, kind, psi, KS statistic and p-value, breached."""
    dm = schema.drift_metrics
    return read_frame(
        engine,
        select(dm.c.feature, dm.c.kind, dm.c.psi, dm.c.ks_statistic, dm.c.ks_pvalue, dm.c.breached)
        .where(dm.c.valuation_date == valuation_date, dm.c.basis == basis)
        .order_by(dm.c.feature),
    )

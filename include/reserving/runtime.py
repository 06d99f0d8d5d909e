"""Run-level facts derived from the Airflow run, as plain functions (no Airflow imports)."""

from __future__ import annotations

import datetime as dt

from include.reserving.ingest import check_valuation_date


def resolve_valuation_date(data_interval_end: dt.datetime | None, param: str | None = None) -> dt.date:
    """Valuation date V: the ``valuation_date`` param when given, else the day before the data interval's end.

    The @monthly run for [2024-01-01, 2024-02-01) values as at 2024-01-31. A manual run without a data interval
    must pass the param. Never the wall clock.
    """
    if param:
        return check_valuation_date(param)
    if data_interval_end is None:
        raise ValueError("this run has no data interval: trigger it with the valuation_date param (a month end)")
    return check_valuation_date(data_interval_end.date() - dt.timedelta(days=1))

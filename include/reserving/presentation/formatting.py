"""Number, date and label formats, spelled once for every medium (PDF, the Reserving page, Markdown, e-mail).

A missing value (None, NaN, NaT) prints as ``n/a`` everywhere, so a reader (or a test) can tell it from zero or a
blank cell. Money has thousands separators and 2 decimals (``1,234,567.89``), factors 4 decimals, percentages
1 decimal, durations ``h:mm:ss``; totals of money are summed in exact decimal arithmetic, to the cent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import pandas as pd

from include.reserving.dates import month_index

NA = "n/a"


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas' NA are missing; anything else (a string, zero) is a value."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-likes are values
        return False


def money(value: Any, digits: int = 2) -> str:
    """``1234567.891`` -> ``1,234,567.89``; with ``digits=0`` (chart axes) ``1,234,568``."""
    return NA if is_missing(value) else f"{float(value):,.{digits}f}"


def number(value: Any, digits: int = 4) -> str:
    return NA if is_missing(value) else f"{float(value):.{digits}f}"


def factor(value: Any) -> str:
    """An age-to-age or cumulative development factor, 4 decimals."""
    return number(value, 4)


def signed(value: Any, digits: int = 4) -> str:
    """A difference with its sign: ``+0.0131``, ``-0.0020``."""
    return NA if is_missing(value) else f"{float(value):+.{digits}f}"


def signed_money(value: Any) -> str:
    """A money difference with its sign and thousands separators: ``+92,549.51``, ``-971,208.13``."""
    return NA if is_missing(value) else f"{float(value):+,.2f}"


def count(value: Any) -> str:
    """A whole count with thousands separators: ``48,213``."""
    return NA if is_missing(value) else f"{int(value):,}"


def percent(value: Any) -> str:
    """``0.8333`` -> ``83.3%``; an infinite ratio (a zero denominator) is not a percentage."""
    return NA if is_missing(value) or not math.isfinite(float(value)) else f"{float(value):.1%}"


def pvalue(value: Any) -> str:
    """A p-value with 4 decimals; below 0.0001 it prints as ``<0.0001`` rather than a misleading zero."""
    return NA if is_missing(value) else "<0.0001" if 0 <= float(value) < 0.0001 else f"{float(value):.4f}"


def duration(seconds: Any) -> str:
    """Seconds as ``h:mm:ss``: ``755`` -> ``0:12:35``."""
    if is_missing(seconds):
        return NA
    whole = int(round(float(seconds)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def money_total(values: Iterable[Any]) -> float:
    """Exact sum of cent amounts, missing ones left out (decimal arithmetic: totals match the warehouse's sum)."""
    total = sum((Decimal(f"{float(v):.2f}") for v in values if not is_missing(v)), Decimal("0"))
    return float(total)


def as_date(value: Any) -> dt.date:
    """A date from a date, a timestamp or an ISO string."""
    return pd.Timestamp(value).date()


def day(value: Any) -> str:
    """A date as ``YYYY-MM-DD``."""
    return NA if is_missing(value) else as_date(value).isoformat()


def origin_label(origin: Any, months: int) -> str:
    """An origin period named by its grain in months: ``2023`` (12), ``2023H1`` (6), ``2023Q1`` (3), else
    ``2023-01``; an origin not starting on its grain's boundary as ``2023-02`` (or its ISO date if not on a 1st)."""
    d = as_date(origin)
    if d.day != 1:
        return d.isoformat()
    if (d.month - 1) % months:
        return d.strftime("%Y-%m")
    period = (d.month - 1) // months + 1
    return {12: f"{d.year}", 6: f"{d.year}H{period}", 3: f"{d.year}Q{period}"}.get(months, d.strftime("%Y-%m"))


def _inferred_grain(dates: Sequence[dt.date]) -> int:
    """The origin grain the dates' spacing shows: 12, 6 or 3 months where consecutive and aligned, else 1."""
    steps = {month_index(b) - month_index(a) for a, b in zip(dates, dates[1:], strict=False)}
    for months in (12, 6, 3):
        if steps <= {months} and all((d.month - 1) % months == 0 for d in dates):
            return months
    return 1


def origin_labels(origins: Sequence[Any], months: int | None = None) -> dict[dt.date, str]:
    """Each origin's label (:func:`origin_label`) by the origin grain in ``months``; inferred from the origins'
    spacing where not known (a lone January origin then reads as a year)."""
    dates = sorted({as_date(o) for o in origins})
    grain = months or _inferred_grain(dates)
    return {d: origin_label(d, grain) for d in dates}

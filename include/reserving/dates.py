"""Valuation dates and month arithmetic: the one place for both (standard library only, cheap to import).

A valuation date V is a month end; the run for the data interval [2024-01-01, 2024-02-01) values as at 2024-01-31.
A month index counts months since year 0 (``year * 12 + month - 1``), so month arithmetic is integer arithmetic.
"""

from __future__ import annotations

import calendar
import datetime as dt


def month_index(day: dt.date) -> int:
    """Months since year 0 of ``day``'s month (anything with ``year`` and ``month``: dates, timestamps)."""
    return day.year * 12 + day.month - 1


def month_start(index: int) -> dt.date:
    """First day of the month with index ``index``."""
    return dt.date(index // 12, index % 12 + 1, 1)


def month_end(index: int) -> dt.date:
    """Last day of the month with index ``index``."""
    year, month = index // 12, index % 12 + 1
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def end_of_month(day: dt.date) -> dt.date:
    """The last day of ``day``'s month."""
    return month_end(month_index(day))


def add_months(day: dt.date, months: int) -> dt.date:
    """The month end ``months`` months after (before, if negative) ``day``'s month."""
    return month_end(month_index(day) + months)


def previous_month_end(valuation_date: dt.date) -> dt.date:
    """The month end before ``valuation_date``'s month (the previous valuation date)."""
    return add_months(valuation_date, -1)


def end_of_day(day: dt.date) -> dt.datetime:
    """The first instant after ``day``: rows recorded before it were known at the end of ``day``."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def parse_valuation_date(value: dt.date | str) -> dt.date:
    """A valuation date from an ISO string or a date; it must be a month end. Raises ValueError saying what is wrong.

    >>> parse_valuation_date("2024-02-29")
    datetime.date(2024, 2, 29)
    """
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"valuation_date {value!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-31") from None
    # a plain date: pendulum's Date subclass (from Airflow's context) is not bindable by sqlite3
    value = dt.date(value.year, value.month, value.day)
    last = end_of_month(value)
    if value != last:
        raise ValueError(f"valuation_date {value} is not a month end: use a month end such as {last}")
    return value


def valuation_date_of_run(data_interval_end: dt.datetime | None, param: str | dt.date | None = None) -> dt.date:
    """V of an Airflow run: the ``valuation_date`` param when given, else the day before the data interval's end.

    The @monthly run for [2024-01-01, 2024-02-01) values as at 2024-01-31. A manual run without a logical date (the
    way to trigger one: it takes no logical date the schedule or a backfill needs) has no data interval and must
    pass the param. Never the wall clock.
    """
    if param:
        return parse_valuation_date(param)
    if data_interval_end is None:
        raise ValueError(
            "this run has no logical date, so no data interval to value: trigger it with the valuation_date param "
            "(a month end, e.g. 2024-12-31)"
        )
    return parse_valuation_date(data_interval_end.date() - dt.timedelta(days=1))

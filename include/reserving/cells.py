"""The cells frame and its one conversion to and from ``chainladder.Triangle``.

A cells frame has one row per observed (segment, origin, development) cell:

- ``segment`` (str): reserving segment, e.g. line of business;
- ``origin`` (``datetime.date``): first day of the origin period;
- ``development`` (int): age in months at the cell's evaluation date, counted from the origin start through the
  evaluation month inclusive;
- ``paid``, ``incurred`` (float): cumulative to the evaluation date;
- ``reported_count``, ``closed_count`` (int): cumulative counts;
- ``earned_premium``, ``exposure`` (float, may be NaN): origin-level, repeated on each cell of the origin.

The evaluation date of a cell is the last day of the month ``origin + development - 1``; the latest diagonal is
the set of cells evaluated at the valuation date. Every other module reaches ``chainladder`` triangles through
:func:`to_triangle` and :func:`from_triangle` only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from functools import reduce

import chainladder as cl
import numpy as np
import pandas as pd

from include.reserving import dates

KEY_COLUMNS = ["segment", "origin", "development"]
AMOUNT_COLUMNS = ["paid", "incurred"]
COUNT_COLUMNS = ["reported_count", "closed_count"]
ORIGIN_COLUMNS = ["earned_premium", "exposure"]
VALUE_COLUMNS = AMOUNT_COLUMNS + COUNT_COLUMNS + ORIGIN_COLUMNS
CELL_COLUMNS = KEY_COLUMNS + VALUE_COLUMNS

# chainladder's convention for the ultimate column of a completed triangle; used for the ultimate row of predict().
ULTIMATE_DEVELOPMENT = 9999

# chainladder turns zeros into NaN and drops all-NaN cells, so a constant marker column keeps every observed cell
# (including an all-zero one) in the triangle and tells observed cells from empty ones on the way back.
_OBSERVED_MARKER = "__observed__"


def _month_index(days: pd.Series) -> np.ndarray:
    """Month index (see :mod:`include.reserving.dates`) of each date: the arithmetic every helper here relies on."""
    return np.fromiter((dates.month_index(d) for d in pd.to_datetime(days)), dtype=np.int64, count=len(days))


def _month_end(month_index: np.ndarray) -> list[dt.date]:
    """Last day of each month given by its index."""
    return [dates.month_end(int(i)) for i in month_index]


def evaluation_date(cells: pd.DataFrame) -> pd.Series:
    """Evaluation date of each cell: the last day of month ``origin + development - 1``.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cells frame (needs ``origin`` and ``development``).

    Returns
    -------
    pandas.Series
        ``datetime.date`` values aligned with ``cells``.

    Examples
    --------
    >>> frame = pd.DataFrame({"origin": [dt.date(2024, 1, 1)], "development": [5]})
    >>> evaluation_date(frame).tolist()
    [datetime.date(2024, 5, 31)]
    """
    months = _month_index(cells["origin"]) + cells["development"].to_numpy(dtype=np.int64) - 1
    return pd.Series(_month_end(months), index=cells.index, name="evaluation_date", dtype=object)


def valuation_date(cells: pd.DataFrame) -> dt.date:
    """Valuation date of a cells frame: the latest evaluation date of any cell."""
    if cells.empty:
        raise ValueError("an empty cells frame has no valuation date")
    return max(evaluation_date(cells))


def development_months(cells: pd.DataFrame) -> int:
    """Development grain in months, inferred as the step between successive evaluation dates.

    Raises
    ------
    ValueError
        If the cells hold a single evaluation date, so no step can be seen.
    """
    months = np.unique(_month_index(cells["origin"]) + cells["development"].to_numpy(dtype=np.int64))
    if len(months) < 2:
        raise ValueError("cannot infer the development grain from a single evaluation date")
    return int(reduce(math.gcd, np.diff(months).tolist()))


def diagonal(cells: pd.DataFrame, grain_months: int | None = None) -> pd.Series:
    """Calendar diagonal of each cell counted back from the valuation date: 0 is the latest diagonal.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cells frame.
    grain_months : int, optional
        Development grain in months; inferred with :func:`development_months` when omitted.
    """
    grain = grain_months or development_months(cells)
    months = _month_index(cells["origin"]) + cells["development"].to_numpy(dtype=np.int64)
    return pd.Series((months.max() - months) // grain, index=cells.index, name="diagonal")


def young_segments(cells: pd.DataFrame) -> list[str]:
    """Segments too young for development factors of their own: every cell at a single development age (a new line
    of business, a one-cell segment). The chain ladder reserves them with factors borrowed from the rest of the book.
    """
    ages = cells.groupby("segment")["development"].nunique()
    return sorted(str(s) for s in ages.index[ages < 2])


def latest_diagonal(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells evaluated at the valuation date (one per segment and origin)."""
    evaluated = evaluation_date(cells)
    return cells[evaluated == evaluated.max()].reset_index(drop=True)


def origin_months(cells: pd.DataFrame) -> int:
    """Origin period length in months, inferred as the step between successive origins (the development grain when
    there is a single origin)."""
    months = np.unique(_month_index(cells["origin"]))
    if len(months) < 2:
        return development_months(cells)
    return int(reduce(math.gcd, np.diff(months).tolist()))


def period_elapsed(cells: pd.DataFrame, period_months: int | None = None) -> pd.Series:
    """Per ``segment, origin``: the share of the origin period elapsed at the valuation date (1 for a complete
    period, 1/3 for a quarter one month in).

    A part-elapsed origin's premium and exposure are what it has earned to date, while every projection of its
    paid develops it on the pattern of complete periods, whose development includes the accidents of the rest of the
    period: it projects the whole period. ``period_months`` is the origin period (inferred from ``cells`` if omitted;
    a model passes its training cells', as a frame of one origin cannot tell).
    """
    period = period_months or origin_months(cells)
    elapsed = cells.groupby(["segment", "origin"])["development"].max().clip(lower=1, upper=period)
    return (elapsed / period).rename("elapsed")


def before_diagonals(cells: pd.DataFrame, k: int, grain_months: int | None = None) -> pd.DataFrame:
    """The cells strictly before the latest ``k`` calendar diagonals, as they stood then (what a model may see in a
    backtest as at that earlier valuation).

    Premium and exposure are one figure per origin, as at the valuation date of ``cells``; an origin period that was
    not yet complete at the earlier valuation (its latest cell then younger than the period) had earned only the
    months elapsed, so its premium and exposure are restated pro rata (earned evenly over the period), as the ingest
    at that valuation would have given them. Without this, a backtest would see the newest origin's full premium,
    which no projection at a mid-period valuation has.
    """
    grain = grain_months or development_months(cells)
    before = cells[diagonal(cells, grain) >= k].reset_index(drop=True)
    period = origin_months(cells)
    # months of the origin period elapsed then, over those elapsed at V (the newest origin may be part-earned at V)
    now = period_elapsed(cells, period).reindex(pd.MultiIndex.from_frame(before[["segment", "origin"]])).to_numpy()
    then = before.groupby(["segment", "origin"])["development"].transform("max").clip(upper=period) / period
    fraction = then / now
    for column in ORIGIN_COLUMNS:
        if column in before:
            before[column] = before[column] * fraction.to_numpy()
    return before


def incrementals(cells: pd.DataFrame, column: str = "paid") -> pd.Series:
    """Incremental amount of each cell: its cumulative minus the previous observed cell of the same origin.

    The first observed cell of an origin keeps its cumulative amount.
    """
    ordered = cells.sort_values(KEY_COLUMNS)
    previous = ordered.groupby(["segment", "origin"], sort=False)[column].shift(1).fillna(0.0)
    return (ordered[column] - previous).reindex(cells.index).rename(f"incremental_{column}")


def link_ratios(cells: pd.DataFrame, column: str = "paid") -> pd.DataFrame:
    """Each origin's age-to-age steps: ``segment, origin, development, development_to, value, value_next, factor``.

    ``value`` is the cumulative ``column`` at ``development``, ``value_next`` at the origin's next observed age
    ``development_to``; ``factor`` = value_next / value, NaN where value is not positive (no ratio to take).
    """
    ordered = cells.sort_values(KEY_COLUMNS)
    following = ordered.groupby(["segment", "origin"], sort=False)[["development", column]].shift(-1)
    steps = ordered[["segment", "origin", "development"]].assign(
        development_to=following["development"], value=ordered[column], value_next=following[column]
    )
    steps = steps.dropna(subset=["development_to"]).astype({"development_to": np.int64})
    return steps.assign(factor=steps["value_next"] / steps["value"].where(steps["value"] > 0)).reset_index(drop=True)


def link_ratio_averages(steps: pd.DataFrame, latest: int = 3) -> pd.DataFrame:
    """Averages of :func:`link_ratios` per segment and age: ``simple`` (mean of the ratios), ``volume`` (sum of
    value_next / sum of value, the volume-weighted or indicated factor) and ``latest`` (mean of the ratios of the
    ``latest`` youngest origins that have one); NaN where there is no ratio to average.
    """
    rows = []
    for (segment, age), group in steps.sort_values("origin").groupby(["segment", "development"], sort=True):
        known = group.dropna(subset=["factor", "value_next"])
        rows.append(
            {
                "segment": segment,
                "development": age,
                "development_to": int(group["development_to"].min()),
                "simple": known["factor"].mean(),
                "volume": known["value_next"].sum() / known["value"].sum() if len(known) else math.nan,
                "latest": known["factor"].tail(latest).mean(),
            }
        )
    return pd.DataFrame(rows, columns=["segment", "development", "development_to", "simple", "volume", "latest"])


def normalise(cells: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with the contract's column order and types, sorted by key; missing value columns become NaN.

    Raises
    ------
    ValueError
        If a key column or ``paid`` is missing, or a key is duplicated.
    """
    missing = [c for c in [*KEY_COLUMNS, "paid"] if c not in cells.columns]
    if missing:
        raise ValueError(f"cells frame lacks required columns {missing}")
    out = cells.copy()
    for column in VALUE_COLUMNS:
        if column not in out.columns:
            out[column] = np.nan
    out = out[CELL_COLUMNS]
    out["segment"] = out["segment"].astype(str)
    out["origin"] = [pd.Timestamp(o).date() for o in out["origin"]]
    out["development"] = out["development"].astype(np.int64)
    for column in AMOUNT_COLUMNS + ORIGIN_COLUMNS:
        out[column] = out[column].astype(float)
    for column in COUNT_COLUMNS:
        out[column] = out[column].astype("Int64")
    if out.duplicated(KEY_COLUMNS).any():
        raise ValueError("cells frame has duplicated (segment, origin, development) keys")
    return out.sort_values(KEY_COLUMNS).reset_index(drop=True)


def to_triangle(cells: pd.DataFrame, columns: Sequence[str] | None = None) -> cl.Triangle:
    """Convert a cells frame to a cumulative ``chainladder.Triangle`` indexed by segment.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cells frame.
    columns : sequence of str, optional
        Value columns to carry into the triangle; by default every value column holding at least one value (an
        all-missing column stays out, so it comes back missing rather than zero).

    Returns
    -------
    chainladder.Triangle
        Index ``segment``, one triangle column per value column (plus an internal marker column that keeps
        observed all-zero cells, which :func:`from_triangle` drops again).
    """
    frame = normalise(cells)
    if columns is None:
        columns = [c for c in VALUE_COLUMNS if frame[c].notna().any()]
    data = pd.DataFrame(
        {
            "segment": frame["segment"],
            "origin": pd.to_datetime(frame["origin"]),
            "evaluation": pd.to_datetime(evaluation_date(frame)),
            _OBSERVED_MARKER: 1.0,
        }
    )
    for column in columns:
        data[column] = frame[column].astype(float)
    return cl.Triangle(
        data,
        origin="origin",
        development="evaluation",
        columns=[*columns, _OBSERVED_MARKER],
        index=["segment"],
        cumulative=True,
    )


def from_triangle(
    triangle: cl.Triangle,
    columns: Mapping[str, str] | None = None,
    segment: str | None = None,
) -> pd.DataFrame:
    """Convert a cumulative ``chainladder.Triangle`` back to a cells frame.

    Works for triangles made by :func:`to_triangle` (round trip) and for chainladder sample triangles, e.g.
    ``from_triangle(cl.load_sample("raa"), columns={"values": "paid"}, segment="raa")``.

    Parameters
    ----------
    triangle : chainladder.Triangle
        Cumulative triangle; its index levels are joined with ``" / "`` into ``segment``.
    columns : mapping of str to str, optional
        Triangle column to cells column renames; unnamed cells columns come back as NaN.
    segment : str, optional
        Segment name to use when the triangle has a single index entry (overrides the index value).

    Returns
    -------
    pandas.DataFrame
        A normalised cells frame (see :func:`normalise`). Amounts of an observed cell that chainladder stored as
        empty (it drops zeros) come back as 0; an origin-level zero premium or exposure comes back as NaN.
    """
    frame = triangle.to_frame(keepdims=True).reset_index()
    index_names = list(triangle.key_labels)
    if segment is not None:
        frame["segment"] = segment
    else:
        frame["segment"] = frame[index_names].astype(str).agg(" / ".join, axis=1)
    frame = frame.rename(columns=dict(columns or {}))
    if _OBSERVED_MARKER in frame.columns:
        frame = frame[frame[_OBSERVED_MARKER] == 1.0]
    # An observed cell that chainladder stored as empty had a zero amount.
    for column in AMOUNT_COLUMNS + COUNT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].fillna(0.0)
    for column in COUNT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].round().astype("Int64")
    return normalise(frame)


def to_records(cells: pd.DataFrame) -> list[dict]:
    """JSON-able records of a cells frame (ISO dates, ``None`` for missing values), for model artifacts."""
    frame = normalise(cells)
    records = []
    for row in frame.itertuples(index=False):
        record = row._asdict()
        record["origin"] = record["origin"].isoformat()
        for key, value in record.items():
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                record[key] = None
            elif isinstance(value, np.integer):
                record[key] = int(value)
        records.append(record)
    return records


def from_records(records: list[dict]) -> pd.DataFrame:
    """Inverse of :func:`to_records`."""
    frame = pd.DataFrame.from_records(records, columns=CELL_COLUMNS)
    frame["origin"] = [dt.date.fromisoformat(o) for o in frame["origin"]]
    return normalise(frame)

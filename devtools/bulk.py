"""Fast bulk loading of large data frames (millions of rows) into the warehouse: COPY on PostgreSQL, one
executemany on SQLite, the frame encoded column by column with numpy. The pipeline's own loads use the simple
``include.reserving.warehouse.core.insert_rows``.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Table
from sqlalchemy.engine import Engine

from include.reserving.warehouse.core import is_postgres

_NULL = "\\N"  # NULL marker of our COPY statements; a string field equal to it is quoted, so it stays a string
_CSV_SPECIAL = re.compile(r'[,"\r\n]')
_ROWS_PER_BATCH = 100_000  # bounds the memory taken by formatted rows
_DAY_US = 86_400_000_000


@functools.lru_cache(maxsize=1)
def _time_of_day_text() -> np.ndarray:
    """' HH:MM:SS.000000' for every second of a day: SQLAlchemy's text form of a DateTime on SQLite."""
    seconds = np.datetime64("2000-01-01T00:00:00", "us") + np.arange(86_400).astype("timedelta64[s]")
    return np.array([" " + s[11:] for s in np.datetime_as_string(seconds, unit="us").tolist()], dtype=object)


def _datetime_text(values: np.ndarray, with_time: bool) -> np.ndarray:
    """ISO text of datetime64 values (None for NaT) through look-up tables: far faster than strftime."""
    us = values.astype("datetime64[us]")
    nat = np.isnat(us)
    ticks = np.where(nat, 0, us.view(np.int64))
    days = ticks // _DAY_US
    first = int(days.min(initial=0))
    day_table = np.datetime_as_string(np.arange(first, int(days.max(initial=first)) + 1).astype("datetime64[D]"))
    text = day_table.astype(object)[days - first]
    if with_time:
        within_day = ticks - days * _DAY_US
        if not (within_day % 1_000_000).any():
            tod = _time_of_day_text()[within_day // 1_000_000]
            text = np.array(list(map(operator.add, text.tolist(), tod.tolist())), dtype=object)
        else:
            text = np.array([s.replace("T", " ") for s in np.datetime_as_string(us, unit="us").tolist()], dtype=object)
    text[nat] = None
    return text


def _driver_values(series: pd.Series, sql_type: Any) -> list[Any]:
    """One column as driver-ready Python values: None for missing, ISO text for datetime64 columns."""
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "O"  # extension dtypes: generic path
    if kind == "M":
        return _datetime_text(series.to_numpy(), with_time=isinstance(sql_type, DateTime)).tolist()
    if kind in "iub":
        return series.to_numpy().tolist()
    values = series.to_numpy(dtype=None if kind == "f" else object).tolist()
    for i in np.flatnonzero(series.isna().to_numpy()).tolist():
        values[i] = None
    return values


def _csv_fields(series: pd.Series, sql_type: Any) -> list[str]:
    """One column as CSV fields: the NULL marker for missing values, quotes only where a field needs them."""
    values = _driver_values(series, sql_type)
    fields = [v if type(v) is str else _NULL if v is None else str(v) for v in values]
    joined = "\x00" + "\x00".join(fields) + "\x00"
    if _CSV_SPECIAL.search(joined) or f"\x00{_NULL}\x00" in joined:  # rare: quote just the fields that need it
        fields = [
            '"' + v.replace('"', '""') + '"' if type(v) is str and (v == _NULL or _CSV_SPECIAL.search(v)) else f
            for v, f in zip(values, fields, strict=True)
        ]
    return fields


def _digits(values: np.ndarray, decimals: int) -> np.ndarray:
    """Integers (``decimals`` = 0) or cents (2) as a NUL-padded byte matrix of their decimal text, e.g. -12.05."""
    negative = values < 0
    rest = np.abs(values)
    width = max(len(str(int(rest.max(initial=0)))), decimals + 1)
    columns = []
    for position in range(width):  # least significant digit first
        digit = (rest % 10).astype(np.uint8) + ord("0")
        if position > decimals:  # leading zeros of the integer part become padding
            digit[rest == 0] = 0
        columns.append(digit)
        rest //= 10
        if decimals and position == decimals - 1:
            columns.append(np.full(len(values), ord("."), dtype=np.uint8))
    columns.append(np.where(negative, ord("-"), 0).astype(np.uint8))
    return np.column_stack(columns[::-1])


def _fixed(strings: np.ndarray) -> np.ndarray:
    """A bytes array (numpy ``S``) as a NUL-padded byte matrix."""
    return strings.view(np.uint8).reshape(len(strings), strings.dtype.itemsize)


def _datetime_matrix(values: np.ndarray, with_time: bool) -> np.ndarray:
    """datetime64 values (no NaT) as a byte matrix of ISO text, from look-up tables: no Python strings at all."""
    ticks = values.astype("datetime64[us]").view(np.int64)
    days = ticks // _DAY_US
    first = int(days.min(initial=0))
    day_table = np.datetime_as_string(np.arange(first, int(days.max(initial=first)) + 1).astype("datetime64[D]"))
    text = _fixed(day_table.astype("S10"))[days - first]
    within_day = ticks - days * _DAY_US
    if not with_time:
        return text
    if (within_day % 1_000_000).any():
        return _fixed(_datetime_text(values, with_time=True).astype("S"))
    return np.hstack([text, _fixed(_time_of_day_text().astype("S16"))[within_day // 1_000_000]])


_SPECIAL_BYTES = np.frombuffer(b',"\r\n', dtype=np.uint8)
_NULL_BYTES = np.frombuffer(_NULL.encode(), dtype=np.uint8)


def _plain_ascii(strings: np.ndarray) -> np.ndarray | None:
    """Python strings as a byte matrix when none needs quoting or escaping (ASCII, non-empty column), else None."""
    try:
        matrix = _fixed(np.asarray(strings, dtype="S"))
    except UnicodeEncodeError:
        return None
    width = matrix.shape[1]
    if width == 0 or np.isin(matrix, _SPECIAL_BYTES).any():
        return None
    if width >= len(_NULL_BYTES):
        is_null_marker = (matrix[:, : len(_NULL_BYTES)] == _NULL_BYTES).all(axis=1)
        if width > len(_NULL_BYTES):
            is_null_marker &= matrix[:, len(_NULL_BYTES)] == 0
        if is_null_marker.any():
            return None
    return matrix


def _csv_matrix(series: pd.Series, sql_type: Any) -> np.ndarray:
    """One column as a NUL-padded byte matrix of CSV fields, vectorised for numbers, dates, whole-cent amounts and
    plain ASCII text; anything else (missing values, quoting, non-ASCII) goes through the per-value path."""
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "O"
    if not series.isna().to_numpy().any():
        values = series.to_numpy()
        if kind in "iu":
            return _digits(values.astype(np.int64), 0)
        if kind == "f" and np.isfinite(values).all() and np.abs(values).max(initial=0) < 1e15:
            cents = np.rint(values * 100)
            if (cents / 100 == values).all():  # money: exact in cents, so the text is exact too
                return _digits(cents.astype(np.int64), 2)
        if kind == "M":
            return _datetime_matrix(values, with_time=isinstance(sql_type, DateTime))
        if kind == "O" and pd.api.types.infer_dtype(series, skipna=False) == "string":
            matrix = _plain_ascii(series.to_numpy(dtype=object))
            if matrix is not None:
                return matrix
    fields = _csv_fields(series, sql_type)
    try:
        return _fixed(np.array(fields, dtype="S"))
    except UnicodeEncodeError:
        return _fixed(np.array([f.encode() for f in fields], dtype="S"))


def _csv_bytes(part: pd.DataFrame, types: list[Any]) -> bytes:
    """A frame as CSV bytes: each column a byte matrix, separators between, padding dropped in one pass."""
    n = len(part)
    blocks = []
    for i, (name, sql_type) in enumerate(zip(part.columns, types, strict=True)):
        if i:
            blocks.append(np.full((n, 1), ord(","), dtype=np.uint8))
        blocks.append(_csv_matrix(part[name], sql_type))
    blocks.append(np.full((n, 1), ord("\n"), dtype=np.uint8))
    flat = np.hstack(blocks).ravel()
    return flat[flat != 0].tobytes()


class _ByteStream:
    """A file-like ``read()`` over byte chunks, so COPY streams while the next chunk is being formatted."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        size = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _frame_parts(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), _ROWS_PER_BATCH):
        yield frame.iloc[start : start + _ROWS_PER_BATCH]


def _copy_from(cursor: Any, driver: str, statement: str, chunks: Iterator[bytes]) -> None:
    """Stream ``chunks`` through ``COPY ... FROM STDIN`` with either driver a PostgreSQL URL may name (a plain
    ``postgresql://`` gets psycopg 3 from SQLAlchemy 2.1, ``postgresql+psycopg2://`` psycopg2): their COPY APIs
    differ."""
    if driver == "psycopg2":
        cursor.copy_expert(statement, _ByteStream(chunks), size=1 << 20)
    elif driver == "psycopg":
        with cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
    else:
        raise ValueError(
            f"bulk loading into PostgreSQL needs the psycopg or psycopg2 driver, not {driver!r}: "
            "use a postgresql://, postgresql+psycopg:// or postgresql+psycopg2:// URL"
        )


def bulk_insert(engine: Engine, table: Table, frame: pd.DataFrame) -> int:
    """Append the rows of ``frame`` (its columns name the target columns) to ``table``; returns the row count.

    The frame is converted column by column (vectorised) and streamed in batches, so millions of rows load without
    per-row Python formatting; its datetime64 columns load as dates or timestamps per the target column. Runs in its
    own transaction.
    """
    columns = list(frame.columns)
    types = [table.c[name].type for name in columns]
    # lazy generators: only the one for this engine's dialect runs
    text = (_csv_bytes(p, types) for p in _frame_parts(frame))
    records = itertools.chain.from_iterable(
        zip(*map(_driver_values, (p[c] for c in columns), types), strict=True) for p in _frame_parts(frame)
    )
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if is_postgres(engine):
            copy = f"COPY \"{table.name}\" ({cols}) FROM STDIN WITH (FORMAT csv, NULL '{_NULL}')"
            _copy_from(cur, engine.dialect.driver, copy, text)
        else:
            placeholders = ", ".join("?" for _ in columns)
            cur.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({placeholders})', records)
        raw.commit()
        return len(frame)
    except Exception:
        raw.rollback()
        raise
    finally:
        raw.close()

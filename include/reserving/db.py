"""Engines and bulk loading for the warehouse (SQLite or PostgreSQL)."""

from __future__ import annotations

import csv
import functools
import io
import itertools
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Table, create_engine, event
from sqlalchemy.engine import Engine, make_url


def redact(url: str) -> str:
    """The URL with its password masked, safe for logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """An engine for the warehouse; SQLite files get their folder created, WAL and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers work while a task writes
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


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
    kind = series.dtype.kind if isinstance(series.dtype, np.dtype) else "O"
    if kind in "fiub":  # numbers never need quotes; str() of a Python float is its shortest exact repr
        fields = list(map(str, series.to_numpy().tolist()))
        for i in np.flatnonzero(series.isna().to_numpy()).tolist():
            fields[i] = _NULL
        return fields
    values = _driver_values(series, sql_type)
    fields = [v if type(v) is str else _NULL if v is None else str(v) for v in values]
    if kind == "M":
        return fields
    joined = "\x00" + "\x00".join(fields) + "\x00"
    if _CSV_SPECIAL.search(joined) or f"\x00{_NULL}\x00" in joined:  # rare: quote just the fields that need it
        fields = [
            '"' + v.replace('"', '""') + '"' if type(v) is str and (v == _NULL or _CSV_SPECIAL.search(v)) else f
            for v, f in zip(values, fields, strict=True)
        ]
    return fields


class _TextStream:
    """A file-like ``read()`` over text chunks, so COPY streams while the next chunk is being formatted."""

    def __init__(self, chunks: Iterator[str]):
        self._chunks = chunks
        self._buffer = ""

    def read(self, size: int = -1) -> str:
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


def _tuple_csv(records: Iterable[Sequence[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for rec in records:
        writer.writerow([_NULL if v is None else v for v in rec])
    yield buf.getvalue()


def bulk_insert(
    engine: Engine, table: Table, rows: pd.DataFrame | Iterable[Sequence[Any]], columns: Sequence[str] | None = None
) -> int:
    """Append rows to ``table`` in bulk: COPY on PostgreSQL, one executemany on SQLite. Returns the row count.

    ``rows`` is a data frame (its columns name the target columns) or an iterable of tuples in ``columns`` order.
    A data frame is converted column by column (vectorised) and streamed in batches, so millions of rows load
    without per-row Python formatting; its datetime64 columns load as dates or timestamps per the target column.
    Runs in its own transaction; callers that need atomicity with other statements load into a staging table.
    """
    if isinstance(rows, pd.DataFrame):
        columns = list(rows.columns)
        count = len(rows)
        types = [table.c[name].type for name in columns]
        # lazy generators: only the one for this engine's dialect runs
        text = (
            "\n".join(map(",".join, zip(*map(_csv_fields, (p[c] for c in columns), types), strict=True))) + "\n"
            for p in _frame_parts(rows)
        )
        records = itertools.chain.from_iterable(
            zip(*map(_driver_values, (p[c] for c in columns), types), strict=True) for p in _frame_parts(rows)
        )
    else:
        if columns is None:
            raise ValueError("columns are required when rows are not a data frame")
        columns = list(columns)
        records = list(rows)
        count = len(records)
        text = _tuple_csv(records)
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if is_postgres(engine):
            copy = f"COPY \"{table.name}\" ({cols}) FROM STDIN WITH (FORMAT csv, NULL '{_NULL}')"
            cur.copy_expert(copy, _TextStream(text), size=1 << 20)
        else:
            placeholders = ", ".join("?" for _ in columns)
            cur.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({placeholders})', records)
        raw.commit()
        return count
    except Exception:
        raw.rollback()
        raise
    finally:
        raw.close()

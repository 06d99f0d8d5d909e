"""Engines and bulk loading for the warehouse (SQLite or PostgreSQL)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Table, create_engine, event
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


def bulk_insert(
    engine: Engine, table: Table, rows: pd.DataFrame | Iterable[Sequence[Any]], columns: Sequence[str] | None = None
) -> int:
    """Append rows to ``table`` in bulk: COPY on PostgreSQL, one executemany on SQLite. Returns the row count.

    ``rows`` is a data frame (its columns name the target columns) or an iterable of tuples in ``columns`` order.
    Runs in its own transaction; callers that need atomicity with other statements load into a staging table.
    """
    if isinstance(rows, pd.DataFrame):
        columns = list(rows.columns)
        records = rows.astype(object).where(rows.notna(), None).itertuples(index=False, name=None)
    else:
        if columns is None:
            raise ValueError("columns are required when rows are not a data frame")
        records = rows
    columns = list(columns)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if is_postgres(engine):
            buf = io.StringIO()
            writer = csv.writer(buf)
            count = 0
            for rec in records:
                writer.writerow(["\\N" if v is None else v for v in rec])
                count += 1
            buf.seek(0)
            cols = ", ".join(f'"{c}"' for c in columns)
            cur.copy_expert(f"COPY \"{table.name}\" ({cols}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
        else:
            placeholders = ", ".join("?" for _ in columns)
            cols = ", ".join(f'"{c}"' for c in columns)
            batch = list(records)
            cur.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({placeholders})', batch)
            count = len(batch)
        raw.commit()
        return count
    except Exception:
        raw.rollback()
        raise
    finally:
        raw.close()

"""Engines and the two helpers every warehouse module is written over.

- :func:`read_frame`: run a statement, get a data frame (columns named even when no row comes back);
- :func:`replace_rows`: delete the rows of a key and insert their replacement in one transaction, so a re-run or a
  retried task leaves exactly the rows of one clean run (idempotency);
- :func:`swap_staged`: the same from rows staged under a load id (large partitions: stage, then swap);
- :func:`insert_rows`: append rows, a data frame's included (how rows are staged).

Given an ``Engine`` they open their own connection or transaction; given a ``Connection`` they run inside the
caller's transaction, so several writes commit together.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, and_, create_engine, delete, event, insert, select
from sqlalchemy.engine import Connection, Engine, make_url

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Table
    from sqlalchemy.sql import Executable


def redact(url: str) -> str:
    """The URL with its password masked, safe for logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """An engine for the warehouse; SQLite files get their folder created, WAL and a busy timeout. PostgreSQL works
    through psycopg2 and psycopg 3 alike."""
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
    if parsed.get_driver_name() == "psycopg":  # psycopg 3: what a plain postgresql:// URL gets
        from psycopg import ClientCursor

        return create_engine(
            url,
            pool_pre_ping=True,
            # it binds parameters on the server, each occurrence its own $n: a parametrised expression in both
            # SELECT and GROUP BY no longer matches. Bind on the client, as psycopg2 does.
            connect_args={"cursor_factory": ClientCursor},
            # its cursor forgets the rowcount on close, before an INSERT ... SELECT's count is read (swap_staged)
            execution_options={"preserve_rowcount": True},
        )
    return create_engine(url, pool_pre_ping=True)


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def without_jit(conn: Connection) -> None:
    """Switch PostgreSQL's JIT off for the rest of ``conn``'s transaction (a no-op elsewhere): for statements that
    read a month's rows but whose estimates (a whole month's search of the source) make PostgreSQL compile them to
    machine code first, 0.2-0.4 s each, more than it saves."""
    if is_postgres(conn):
        conn.exec_driver_sql("SET LOCAL jit = off")


@contextmanager
def _connection(bind: Engine | Connection, write: bool):
    """The caller's connection as is, or a new one from an engine (a transaction when writing)."""
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.begin() if write else bind.connect() as conn:
            yield conn


def read_frame(
    bind: Engine | Connection, statement: Executable, params: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """The rows of ``statement`` as a data frame; its columns are the statement's even when no row matches."""
    import pandas as pd  # lazy: callbacks that only write a row never pay for pandas

    with _connection(bind, write=False) as conn:
        result = conn.execute(statement, dict(params or {}))
        return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))


def key_clause(table: Table, key: Mapping[str, Any]):
    """``table.k1 = v1 AND ...`` for a key given as a mapping of column name to value."""
    return and_(*[table.c[name] == value for name, value in key.items()])


def replace_rows(
    bind: Engine | Connection, table: Table, key: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]
) -> int:
    """Replace the rows of ``table`` matching ``key`` by ``rows`` in one transaction; returns the rows written.

    Each row is a mapping of column name to value; the key's columns are filled in where a row omits them.
    """
    rows = [{**key, **row} for row in rows]
    with _connection(bind, write=True) as conn:
        conn.execute(delete(table).where(key_clause(table, key)))
        if rows:
            conn.execute(insert(table), rows)
    return len(rows)


def _python_values(series: pd.Series, sql_type: Any) -> list[Any]:
    """A frame column as plain Python values: None for NaN/NaT/NA, dates or datetimes per the column's type."""
    import numpy as np

    if series.dtype.kind == "M":  # numpy's tolist gives date (day unit) or datetime (microseconds), None for NaT
        return series.to_numpy().astype("datetime64[D]" if isinstance(sql_type, Date) else "datetime64[us]").tolist()
    values = series.to_numpy(dtype=object)
    return [
        None if missing else value.item() if isinstance(value, np.generic) else value
        for value, missing in zip(values, series.isna().to_numpy(), strict=True)
    ]


def insert_rows(bind: Engine | Connection, table: Table, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> int:
    """Append ``rows`` to ``table`` with one executemany in a transaction; returns the row count.

    ``rows`` are mappings of column name to value, or a data frame whose columns name the target columns. Meant for
    the pipeline's own loads (thousands of rows); the synthetic book's millions load through ``devtools.bulk``.
    """
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        columns = {name: _python_values(rows[name], table.c[name].type) for name in rows.columns}
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    else:
        rows = list(rows)
    if rows:
        with _connection(bind, write=True) as conn:
            conn.execute(insert(table), rows)
    return len(rows)


def staging_load_id(scope: str) -> tuple[str, str]:
    """(prefix, load_id) for rows one task stages: the prefix is the task's ``scope`` (e.g. V and run id) hashed,
    so a retry of that task can clear what an earlier, killed try staged, and never what another run working on
    the same partition at this moment has staged (that run's swap would find nothing). load_id holds 64 chars."""
    prefix = hashlib.sha256(scope.encode()).hexdigest()[:23] + "-"
    return prefix, prefix + uuid.uuid4().hex


def swap_staged(
    conn: Connection, target: Table, staging: Table, key: Mapping[str, Any], load_id: str, expected: int
) -> None:
    """Replace ``target``'s rows of ``key`` by the ``expected`` rows staged under ``load_id`` (inside the caller's
    transaction); fewer found means something removed them: raise, so the caller's transaction rolls back."""
    cols = [col.name for col in target.columns]
    conn.execute(delete(target).where(key_clause(target, key)))
    moved = conn.execute(
        insert(target).from_select(cols, select(*[staging.c[n] for n in cols]).where(staging.c.load_id == load_id))
    ).rowcount
    check_swapped(target, moved, expected)
    conn.execute(delete(staging).where(staging.c.load_id == load_id))


def check_swapped(target: Table, moved: int, expected: int) -> None:
    if moved != expected:
        raise RuntimeError(
            f"{target.name}: {moved} of {expected} staged rows were found at the swap (something deleted them from "
            "the staging table); nothing was swapped in and the previous rows stay: re-run the task"
        )


def clear_staged(bind: Engine | Connection, staging: Table, prefix: str) -> None:
    """Drop the rows a killed try of the same task (load ids starting with ``prefix``) staged and never swapped."""
    with _connection(bind, write=True) as conn:
        conn.execute(delete(staging).where(staging.c.load_id.startswith(prefix, autoescape=True)))

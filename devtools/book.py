"""A claims book shaped like the source tables, and its bulk load: shared by the generator and the prism loader."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import delete
from sqlalchemy.engine import Engine

from devtools.bulk import bulk_insert
from include.reserving import schema

TARGET_LOSS_RATIO = 0.65  # premium is set (synthetic) or derived (prism) from losses at this ratio
CLAIM_COLUMNS = [c.name for c in schema.claims.columns]
TRANSACTION_COLUMNS = [c.name for c in schema.claim_transactions.columns]


@dataclass
class Book:
    """Frames shaped like the source tables claims, claim_transactions, earned_exposure and (optional)
    finance_control_totals."""

    claims: pd.DataFrame
    transactions: pd.DataFrame
    exposure: pd.DataFrame
    control_totals: pd.DataFrame | None = None


def reset_source_tables(engine: Engine) -> None:
    """Delete every row of the source tables (claims, claim_transactions, earned_exposure, control totals)."""
    tables = (schema.claim_transactions, schema.claims, schema.earned_exposure, schema.finance_control_totals)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # TRUNCATE: instant on millions of rows
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables))
        else:
            for table in tables:
                conn.execute(delete(table))


def load_book(engine: Engine, book: Book, reset: bool = False) -> None:
    """Bulk-load a book into the source tables (created if missing); ``reset`` empties them first."""
    schema.create_all(engine)
    if reset:
        reset_source_tables(engine)
    bulk_insert(engine, schema.claims, book.claims[CLAIM_COLUMNS])
    bulk_insert(engine, schema.claim_transactions, book.transactions[TRANSACTION_COLUMNS])
    bulk_insert(engine, schema.earned_exposure, book.exposure)
    if book.control_totals is not None:
        bulk_insert(engine, schema.finance_control_totals, book.control_totals)

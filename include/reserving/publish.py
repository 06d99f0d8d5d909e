"""Versioned, atomic publication of reserves for a valuation date.

Re-running the same Airflow run replaces its own version; another run for the same V (a backfill, a restatement)
adds a new version and becomes current; earlier versions stay for audit. Rows are staged first; one transaction
then writes the version's rows, moves the current flag and deletes the staged rows, so a publish killed half way
leaves the previous state untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.engine import Engine

from include.reserving import schema
from include.reserving.warehouse.core import insert_rows

log = logging.getLogger(__name__)

MONEY_COLUMNS = ["latest_paid", "latest_incurred", "ultimate", "ibnr", "std_err", "p75", "p95"]
PUBLISH_LOCK_KEY = 7_310_043


@dataclass(frozen=True)
class PublishResult:
    valuation_date: dt.date
    version: int
    rows: int
    ibnr_total: float
    is_new_version: bool

    def as_xcom(self) -> dict:
        return {
            "valuation_date": self.valuation_date.isoformat(),
            "version": self.version,
            "rows": self.rows,
            "ibnr_total": self.ibnr_total,
        }


def to_cents(values: pd.Series) -> pd.Series:
    """Round money to the cent, half away from zero (as an actuary rounds), from the float's decimal form."""
    arr = values.astype("float64").to_numpy()
    rounded = np.sign(arr) * np.floor(np.abs(arr) * 100 + 0.5 + 1e-9) / 100
    return pd.Series(rounded, index=values.index)


def reserve_rows(ultimates: pd.DataFrame, latest: pd.DataFrame) -> pd.DataFrame:
    """Published rows from a model's ``ultimates`` frame and the latest diagonal (paid and incurred).

    IBNR is derived from the rounded ultimate and latest paid, so ultimate = latest paid + IBNR holds to the cent.
    """
    latest = latest.rename(columns={"paid": "latest_paid", "incurred": "latest_incurred"})
    rows = ultimates.merge(latest[["segment", "origin", "latest_paid", "latest_incurred"]], on=["segment", "origin"])
    if len(rows) != len(ultimates):
        raise ValueError("ultimates and the latest diagonal do not cover the same (segment, origin) pairs")
    out = rows[["segment", "origin"]].copy()
    out["latest_paid"] = to_cents(rows["latest_paid"])
    out["latest_incurred"] = to_cents(rows["latest_incurred"])
    out["ultimate"] = to_cents(rows["ultimate"])
    out["ibnr"] = to_cents(out["ultimate"] - out["latest_paid"])
    for col in ("std_err", "p75", "p95"):
        out[col] = to_cents(rows[col]) if col in rows else np.nan
    return out.sort_values(["segment", "origin"]).reset_index(drop=True)


def publish_reserves(
    engine: Engine,
    valuation_date: dt.date,
    run_id: str,
    reserves: pd.DataFrame,
    model_version: str,
    basis: str = "as_recorded",
    approval_ref: str | None = None,
    status: str = "approved",
    before_swap: Callable[[], None] | None = None,
    published_at: dt.datetime | None = None,
) -> PublishResult:
    """Publish ``reserves`` (see :func:`reserve_rows`) for V as this run's version, atomically."""
    if reserves.empty:
        raise ValueError(f"no reserves to publish for {valuation_date}: nothing was published")
    if reserves[["segment", "origin"]].duplicated().any():
        raise ValueError("reserves hold duplicate (segment, origin) rows: nothing was published")
    load_id = uuid.uuid4().hex
    staged = reserves.copy()
    staged["valuation_date"] = valuation_date
    staged["version"] = 0  # the real version is chosen inside the swap transaction
    staged["model_version"] = model_version
    staged["approval_ref"] = approval_ref
    staged["load_id"] = load_id
    staged = staged.astype(object).where(staged.notna(), None)
    rs, stg, rv = schema.reserve_results, schema.reserve_results_staging, schema.reserve_versions
    with engine.begin() as conn:  # leftovers of a publish killed before its swap
        conn.execute(delete(stg).where(stg.c.valuation_date == valuation_date))
    insert_rows(engine, stg, staged)
    if before_swap is not None:
        before_swap()

    ibnr_total = round(float(sum(reserves["ibnr"])), 2)
    cols = [c.name for c in rs.columns]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK_KEY})
        existing = conn.execute(
            select(rv.c.version).where(rv.c.valuation_date == valuation_date, rv.c.run_id == run_id)
        ).scalar_one_or_none()
        if existing is None:
            latest = conn.execute(
                select(func.max(rv.c.version)).where(rv.c.valuation_date == valuation_date)
            ).scalar_one()
            version = (latest or 0) + 1
        else:
            version = existing
        conn.execute(delete(rs).where(rs.c.valuation_date == valuation_date, rs.c.version == version))
        conn.execute(
            insert(rs).from_select(
                cols,
                select(*[literal(version).label("version") if c == "version" else stg.c[c] for c in cols]).where(
                    stg.c.load_id == load_id
                ),
            )
        )
        conn.execute(delete(stg).where(stg.c.load_id == load_id))
        conn.execute(update(rv).where(rv.c.valuation_date == valuation_date).values(is_current=False))
        version_row = {
            "basis": basis,
            "run_id": run_id,
            "model_version": model_version,
            "approval_ref": approval_ref,
            "status": status,
            "is_current": True,
            "ibnr_total": ibnr_total,
            "published_at": published_at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        if existing is None:
            conn.execute(insert(rv).values(valuation_date=valuation_date, version=version, **version_row))
        else:
            conn.execute(
                update(rv).where(rv.c.valuation_date == valuation_date, rv.c.version == version).values(**version_row)
            )
    log.info(
        "published reserves V=%s version %d (%s): %d rows, IBNR %.2f, model %s",
        valuation_date,
        version,
        "new" if existing is None else "replaced",
        len(reserves),
        ibnr_total,
        model_version,
    )
    return PublishResult(valuation_date, version, len(reserves), ibnr_total, existing is None)


def current_reserves(engine: Engine, valuation_date: dt.date | None = None) -> pd.DataFrame:
    """The current published version's rows for V (default: the latest valuation date published)."""
    rs, rv = schema.reserve_results, schema.reserve_versions
    with engine.connect() as conn:
        if valuation_date is None:
            valuation_date = conn.execute(select(func.max(rv.c.valuation_date))).scalar_one()
            if valuation_date is None:
                return pd.DataFrame(columns=[c.name for c in rs.columns])
        query = (
            select(rs)
            .join(rv, (rv.c.valuation_date == rs.c.valuation_date) & (rv.c.version == rs.c.version))
            .where(rs.c.valuation_date == valuation_date, rv.c.is_current.is_(True))
            .order_by(rs.c.segment, rs.c.origin)
        )
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in rs.columns])


def versions(engine: Engine, valuation_date: dt.date | None = None) -> pd.DataFrame:
    rv = schema.reserve_versions
    query = select(rv).order_by(rv.c.valuation_date, rv.c.version)
    if valuation_date is not None:
        query = query.where(rv.c.valuation_date == valuation_date)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in rv.columns])

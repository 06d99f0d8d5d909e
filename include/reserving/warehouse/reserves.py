"""Versioned, atomic publication of reserves for a valuation date, and the reads of what is published; the analysis
of change (``reserve_movements``) and the numbers sign-off (``signoffs``) of held versions.

Re-running the same Airflow run replaces its own version; another run for the same V (a backfill, a restatement)
adds a new version and becomes current; earlier versions stay for audit. A HELD version is stored the same way but
does not become current: the current version of V (if any) stays until :func:`make_current` after a sign-off.
Rows are staged first; one transaction then writes the version's rows, moves the current flag and deletes the staged
rows, so a publish killed half way leaves the previous state untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import pandas as pd
from sqlalchemy import delete, func, insert, literal, select, text, update
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.domain import Basis, PublicationStatus
from include.reserving.publish import PublishResult, totals
from include.reserving.run_order import RunOrderError, later_valuation_refusal
from include.reserving.warehouse.core import (
    check_swapped,
    clear_staged,
    insert_rows,
    read_frame,
    replace_rows,
    staging_load_id,
)

log = logging.getLogger(__name__)

PUBLISH_LOCK_KEY = 7_310_043


def publish_reserves(
    engine: Engine,
    valuation_date: dt.date,
    run_id: str,
    reserves: pd.DataFrame,
    model_version: str,
    basis: str = Basis.AS_RECORDED,
    approval_ref: str | None = None,
    status: str = PublicationStatus.APPROVED,
    before_swap: Callable[[], None] | None = None,
    published_at: dt.datetime | None = None,
    ranges: pd.DataFrame | None = None,
    refuse_over_later: bool = False,
) -> PublishResult:
    """Publish ``reserves`` (see :func:`reserve_rows`) for V as this run's version, atomically; a HELD version is
    stored without touching which version is current. ``ranges`` (see :func:`include.reserving.publish.range_rows`:
    the selection rule and range per line and in total) are written with the rows, in the same transaction.
    ``refuse_over_later``: raise RunOrderError, publishing nothing, when a later valuation is current on ``basis``
    (checked under the publication lock)."""
    held = status == PublicationStatus.HELD
    if reserves.empty:
        raise ValueError(f"no reserves to publish for {valuation_date}: nothing was published")
    if reserves[["segment", "origin"]].duplicated().any():
        raise ValueError("reserves hold duplicate (segment, origin) rows: nothing was published")
    prefix, load_id = staging_load_id(f"reserves|{valuation_date}|{run_id}")
    staged = reserves.copy()
    staged["valuation_date"] = valuation_date
    staged["version"] = 0  # the real version is chosen inside the swap transaction
    # rows may name their own line's model and approval (each line has its own champion)
    if "model_version" not in staged:
        staged["model_version"] = model_version
    if "approval_ref" not in staged:
        staged["approval_ref"] = approval_ref
    staged["load_id"] = load_id
    rs, stg, rv = schema.reserve_results, schema.reserve_results_staging, schema.reserve_versions
    clear_staged(engine, stg, prefix)  # what this run's publish, killed before its swap, left
    insert_rows(engine, stg, staged)
    if before_swap is not None:
        before_swap()

    sums = totals(reserves)
    cols = [c.name for c in rs.columns]
    try:
        with engine.begin() as conn:
            _lock_publication(conn)
            if refuse_over_later:
                refusal = later_valuation_refusal(
                    valuation_date, basis, later_current_valuation(conn, valuation_date, basis)
                )
                if refusal:
                    raise RunOrderError(refusal)
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
            moved = conn.execute(
                insert(rs).from_select(
                    cols,
                    select(*[literal(version).label("version") if c == "version" else stg.c[c] for c in cols]).where(
                        stg.c.load_id == load_id
                    ),
                )
            ).rowcount
            check_swapped(rs, moved, len(staged))  # never fewer rows than staged: the transaction rolls back
            conn.execute(delete(stg).where(stg.c.load_id == load_id))
            rr = schema.reserve_ranges
            conn.execute(delete(rr).where(rr.c.valuation_date == valuation_date, rr.c.version == version))
            if ranges is not None and not ranges.empty:
                conn.execute(insert(rr), _range_records(ranges, valuation_date, version))
            if not held:
                conn.execute(update(rv).where(rv.c.valuation_date == valuation_date).values(is_current=False))
            version_row = {
                "basis": str(basis),
                "run_id": run_id,
                "model_version": model_version,
                "approval_ref": approval_ref,
                "status": str(status),
                "is_current": not held,
                **sums,
                "published_at": published_at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
            }
            if existing is None:
                conn.execute(insert(rv).values(valuation_date=valuation_date, version=version, **version_row))
            else:
                conn.execute(
                    update(rv)
                    .where(rv.c.valuation_date == valuation_date, rv.c.version == version)
                    .values(**version_row)
                )
    except RunOrderError:
        clear_staged(engine, stg, prefix)  # refused: nothing of this publication stays behind
        raise
    log.info(
        "published reserves V=%s version %d (%s%s): %d rows, unpaid %.2f (case reserves %s, IBNR %s), model %s",
        valuation_date,
        version,
        "new" if existing is None else "replaced",
        ", HELD: not current" if held else "",
        len(reserves),
        sums["unpaid_total"],
        sums["case_reserve_total"],
        sums["ibnr_total"],
        model_version,
    )
    return PublishResult(valuation_date, version, len(reserves), **sums, is_new_version=existing is None)


def _lock_publication(conn) -> None:
    """Serialise publications (first statement of the swap transaction): two runs swapping V at once must not both
    read the same latest version. PostgreSQL: an advisory lock; SQLite: a write that matches no row takes the
    database's write lock now (waiting on the busy timeout), before the version is read."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK_KEY})
    else:
        rv = schema.reserve_versions
        conn.execute(update(rv).where(rv.c.version < 0).values(version=rv.c.version))


def _range_records(ranges: pd.DataFrame, valuation_date: dt.date, version: int) -> list[dict]:
    frame = ranges.astype(object).where(ranges.notna(), None)
    return [{**r, "valuation_date": valuation_date, "version": version} for r in frame.to_dict("records")]


def ranges_of(engine: Engine, valuation_date: dt.date, version: int) -> pd.DataFrame:
    """The selection rule and range per line and in total (segment "Total", last) of a published version."""
    rr = schema.reserve_ranges
    found = read_frame(engine, select(rr).where(rr.c.valuation_date == valuation_date, rr.c.version == version))
    return found.assign(_total=found["segment"] == "Total").sort_values(["_total", "segment"]).drop(columns="_total")


def latest_valuation_date(engine: Engine) -> dt.date | None:
    """The latest valuation date with a current version (None before the first publication); a month whose only
    version is held does not count: downstream keeps reading the last current numbers."""
    rv = schema.reserve_versions
    with engine.connect() as conn:
        return conn.execute(select(func.max(rv.c.valuation_date)).where(rv.c.is_current.is_(True))).scalar_one()


def later_current_valuation(bind: Engine | Connection, valuation_date: dt.date, basis: str) -> dt.date | None:
    """The latest valuation date after V with a current version on ``basis``, or None."""
    rv = schema.reserve_versions
    query = select(func.max(rv.c.valuation_date)).where(
        rv.c.valuation_date > valuation_date, rv.c.basis == str(basis), rv.c.is_current.is_(True)
    )
    if isinstance(bind, Connection):
        return bind.execute(query).scalar_one()
    with bind.connect() as conn:
        return conn.execute(query).scalar_one()


def previous_valuation(engine: Engine, valuation_date: dt.date) -> dt.date | None:
    """The latest valuation date before V with a current version (the report's "previous")."""
    rv = schema.reserve_versions
    with engine.connect() as conn:
        return conn.execute(
            select(rv.c.valuation_date)
            .where(rv.c.valuation_date < valuation_date, rv.c.is_current.is_(True))
            .order_by(rv.c.valuation_date.desc())
            .limit(1)
        ).scalar_one_or_none()


def current_version(engine: Engine, valuation_date: dt.date) -> dict | None:
    """The current version's row of ``reserve_versions`` for V, or None."""
    rv = schema.reserve_versions
    with engine.connect() as conn:
        row = conn.execute(select(rv).where(rv.c.valuation_date == valuation_date, rv.c.is_current.is_(True))).first()
    return None if row is None else dict(row._mapping)


def current_reserves(engine: Engine, valuation_date: dt.date | None = None) -> pd.DataFrame:
    """The current published version's rows for V (default: the latest valuation date published)."""
    rs, rv = schema.reserve_results, schema.reserve_versions
    valuation_date = valuation_date or latest_valuation_date(engine)
    if valuation_date is None:
        return pd.DataFrame(columns=[c.name for c in rs.columns])
    return read_frame(
        engine,
        select(rs)
        .join(rv, (rv.c.valuation_date == rs.c.valuation_date) & (rv.c.version == rs.c.version))
        .where(rs.c.valuation_date == valuation_date, rv.c.is_current.is_(True))
        .order_by(rs.c.segment, rs.c.origin),
    )


def versions(engine: Engine, valuation_date: dt.date | None = None) -> pd.DataFrame:
    rv = schema.reserve_versions
    query = select(rv).order_by(rv.c.valuation_date, rv.c.version)
    if valuation_date is not None:
        query = query.where(rv.c.valuation_date == valuation_date)
    return read_frame(engine, query)


def make_current(
    engine: Engine,
    valuation_date: dt.date,
    version: int,
    status: str,
    basis: str = Basis.AS_RECORDED,
    refuse_over_later: bool = False,
) -> None:
    """Make a stored (held) version of V current with ``status``, in one transaction; the one it replaces stays on
    record, no longer current. ``refuse_over_later``: raise RunOrderError, changing nothing, when a later valuation
    is current on ``basis`` (checked under the publication lock, as a publication checks it)."""
    rv = schema.reserve_versions
    with engine.begin() as conn:
        _lock_publication(conn)
        if refuse_over_later:
            later = later_current_valuation(conn, valuation_date, basis)
            if later is not None:
                raise RunOrderError(
                    f"{valuation_date} version {version} was not made current: a later valuation, {later}, is "
                    f"already current on the same basis ({basis})"
                )
        found = conn.execute(
            select(rv.c.version).where(rv.c.valuation_date == valuation_date, rv.c.version == version)
        ).scalar_one_or_none()
        if found is None:
            raise LookupError(f"reserve_versions has no version {version} for {valuation_date}: nothing made current")
        conn.execute(update(rv).where(rv.c.valuation_date == valuation_date).values(is_current=False))
        conn.execute(
            update(rv)
            .where(rv.c.valuation_date == valuation_date, rv.c.version == version)
            .values(is_current=True, status=str(status))
        )
    log.info("reserves V=%s version %d made current (%s)", valuation_date, version, status)


def version_of_run(engine: Engine, valuation_date: dt.date, run_id: str) -> dict | None:
    """The ``reserve_versions`` row this run published for V, or None."""
    rv = schema.reserve_versions
    with engine.connect() as conn:
        row = conn.execute(select(rv).where(rv.c.valuation_date == valuation_date, rv.c.run_id == run_id)).first()
    return None if row is None else dict(row._mapping)


def current_publication(engine: Engine, valuation_date: dt.date, basis: str) -> tuple[dict, pd.DataFrame] | None:
    """The current version of V on ``basis`` and its rows, or None (nothing current on that basis)."""
    version = current_version(engine, valuation_date)
    if version is None or version["basis"] != str(basis):
        return None
    return version, current_reserves(engine, valuation_date)


def store_movements(engine: Engine, valuation_date: dt.date, basis: str, run_id: str, aoc: pd.DataFrame) -> int:
    """Replace this run's analysis of change for V (see :mod:`include.reserving.movement`)."""
    rows = [
        {
            "basis": str(basis),
            "segment": r.segment,
            "step_order": int(r.step_order),
            "step": r.step,
            "kind": r.kind,
            "amount": None if pd.isna(r.amount) else float(r.amount),
            "ratio": None if pd.isna(r.ratio) else float(r.ratio),
            "note": None if pd.isna(r.note) else r.note,
        }
        for r in aoc.itertuples(index=False)
    ]
    return replace_rows(engine, schema.reserve_movements, {"valuation_date": valuation_date, "run_id": run_id}, rows)


def movements(engine: Engine, valuation_date: dt.date, run_id: str) -> pd.DataFrame:
    """The analysis of change stored by ``run_id`` for V, line by line in step order."""
    rm = schema.reserve_movements
    return read_frame(
        engine,
        select(rm)
        .where(rm.c.valuation_date == valuation_date, rm.c.run_id == run_id)
        .order_by(rm.c.segment, rm.c.step_order),
    )


def record_signoff(
    engine: Engine,
    valuation_date: dt.date,
    basis: str,
    publication_version: int,
    decision: str,
    decided_by: str | None = None,
    comment: str | None = None,
    run_id: str | None = None,
    decided_at: dt.datetime | None = None,
) -> tuple[int, str]:
    """Record the sign-off decision on a held version once: ``(id, decision)``; a re-run reads the decision already
    written for that version instead of rewriting it."""
    so = schema.signoffs
    with engine.begin() as conn:
        found = conn.execute(
            select(so.c.id, so.c.decision).where(
                so.c.valuation_date == valuation_date, so.c.publication_version == publication_version
            )
        ).first()
        if found is not None:
            return int(found.id), found.decision
        result = conn.execute(
            insert(so).values(
                valuation_date=valuation_date,
                basis=str(basis),
                publication_version=publication_version,
                decision=str(decision),
                decided_by=decided_by,
                comment=comment,
                decided_at=decided_at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
                run_id=run_id,
            )
        )
        return int(result.inserted_primary_key[0]), str(decision)


def signoffs(engine: Engine, valuation_date: dt.date | None = None) -> pd.DataFrame:
    so = schema.signoffs
    query = select(so).order_by(so.c.id)
    if valuation_date is not None:
        query = query.where(so.c.valuation_date == valuation_date)
    return read_frame(engine, query)

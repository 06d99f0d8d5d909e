"""Decision codes: the one-time code issued with each model card and each held publication (``decision_codes``).

A code belongs to one run's card: a re-run of the month issues a new card with a new code, so a Variable left from
an earlier run never decides a later one. Issuing is idempotent within a run (a retried task keeps its code).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from include.reserving import schema
from include.reserving.approval import new_code

MODEL, NUMBERS = "model", "numbers"  # what the code decides on: a challenger's approval, a held month's sign-off


@dataclass(frozen=True)
class IssuedCode:
    id: int
    kind: str
    valuation_date: dt.date
    version: str
    run_id: str
    code: str
    issued_at: dt.datetime  # UTC, naive
    alerted_event_id: int | None


def _code(row) -> IssuedCode:
    return IssuedCode(
        row.id, row.kind, row.valuation_date, row.version, row.run_id, row.code, row.issued_at, row.alerted_event_id
    )


def issue(engine: Engine, kind: str, valuation_date: dt.date, version, run_id: str) -> IssuedCode:
    """The code of (kind, V, version) for this run: created now on first issue, the same one on a retry."""
    found = issued(engine, kind, valuation_date, version, run_id)
    if found is not None:
        return found
    dc = schema.decision_codes
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(dc).values(
                    kind=kind,
                    valuation_date=valuation_date,
                    version=str(version),
                    run_id=run_id,
                    code=new_code(),
                    issued_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
            )
    except IntegrityError:  # a concurrent try issued it first: keep that one
        pass
    return issued(engine, kind, valuation_date, version, run_id)


def issued(engine: Engine, kind: str, valuation_date: dt.date, version, run_id: str | None = None) -> IssuedCode | None:
    """The code issued for (kind, V, version) by ``run_id``, or the latest issued by any run when None."""
    dc = schema.decision_codes
    query = select(dc).where(dc.c.kind == kind, dc.c.valuation_date == valuation_date, dc.c.version == str(version))
    if run_id is not None:
        query = query.where(dc.c.run_id == run_id)
    with engine.connect() as conn:
        row = conn.execute(query.order_by(dc.c.id.desc()).limit(1)).first()
    return _code(row) if row else None


def note_alert(engine: Engine, code_id: int, event_id: int) -> bool:
    """Remember that the write ``event_id`` was alerted on; False when it already was (alert once per write)."""
    dc = schema.decision_codes
    with engine.begin() as conn:
        done = conn.execute(
            update(dc)
            .where(dc.c.id == code_id, (dc.c.alerted_event_id.is_(None)) | (dc.c.alerted_event_id < event_id))
            .values(alerted_event_id=event_id)
        )
    return done.rowcount == 1

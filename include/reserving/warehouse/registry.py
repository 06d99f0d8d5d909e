"""Model registry, champions per line and their history, promotion decisions, backtest results and approvals.

Exactly one champion per line of business: ``line_champions`` is keyed by the line, so the database enforces it; a
cross-segment model may champion several lines (``model_registry.status`` is 'champion' while it champions any).
Champion changes run in one transaction (serialised by an advisory lock on PostgreSQL, by taking SQLite's write lock
first) that points each line at its new champion, retires a model that champions no line any more and writes one
``champion_history`` row per line. An actuary's decision on a line is recorded in that same transaction (``decide``),
once per run and line: approval rows are never deleted or rewritten, so every history row's ``approval_id`` exists. A
decision belongs to the run that asked for it: version ids are deterministic, so a later run may ask again about a
version an earlier run's decision rejected, and its decision is a new one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.domain import ChampionAction, Decision, ModelStatus, Promotion
from include.reserving.governance import ModelEntry, PromotionDecision, canonical_spec, spec_hash
from include.reserving.warehouse.core import read_frame, replace_rows

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

CHAMPION_LOCK_KEY = 7_310_042  # pg_advisory_xact_lock key serialising champion changes


def _entry(row) -> ModelEntry:
    return ModelEntry(
        model_version=row.model_version,
        spec=json.loads(row.spec),
        artifact_uri=row.artifact_uri,
        trained_valuation_date=row.trained_valuation_date,
        basis=row.basis,
        train_rows=row.train_rows,
        data_hash=row.data_hash,
        code_version=row.code_version,
        metrics=json.loads(row.metrics) if row.metrics else None,
        status=row.status,
        method=row.method,
    )


def register(engine: Engine, entry: ModelEntry, run_id: str | None = None) -> ModelEntry:
    """Add a trained version as a candidate; re-registering the same version keeps its status (idempotent)."""
    mr = schema.model_registry
    values = {
        "method": entry.method,
        "spec": canonical_spec(entry.spec),
        "spec_hash": spec_hash(entry.spec),
        "artifact_uri": entry.artifact_uri,
        "trained_valuation_date": entry.trained_valuation_date,
        "basis": entry.basis,
        "train_rows": entry.train_rows,
        "data_hash": entry.data_hash,
        "code_version": entry.code_version,
        "metrics": json.dumps(entry.metrics, sort_keys=True) if entry.metrics is not None else None,
        "registered_run_id": run_id,
    }
    with engine.begin() as conn:
        existing = conn.execute(select(mr.c.status).where(mr.c.model_version == entry.model_version)).first()
        if existing is None:
            conn.execute(
                insert(mr).values(model_version=entry.model_version, **values, status=ModelStatus.CANDIDATE.value)
            )
        else:
            conn.execute(update(mr).where(mr.c.model_version == entry.model_version).values(**values))
    return get(engine, entry.model_version)


def get(engine: Engine, model_version: str) -> ModelEntry | None:
    mr = schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(select(mr).where(mr.c.model_version == model_version)).first()
    return _entry(row) if row else None


def champions(engine: Engine) -> dict[str, ModelEntry]:
    """Each line's champion, by line (empty before any approval)."""
    mr, lc = schema.model_registry, schema.line_champions
    with engine.connect() as conn:
        rows = conn.execute(
            select(lc.c.segment, mr).join(mr, mr.c.model_version == lc.c.model_version).order_by(lc.c.segment)
        ).all()
    return {row.segment: _entry(row) for row in rows}


def champion_of(engine: Engine, segment: str) -> ModelEntry | None:
    """The champion of one line, or None."""
    return champions(engine).get(segment)


def set_status(engine: Engine, model_version: str, status: str) -> None:
    """Mark a candidate rejected (or any non-champion status); the champion only moves through set_champion."""
    with engine.begin() as conn:
        _set_status(conn, model_version, status)


def _set_status(conn: Connection, model_version: str, status: str) -> None:
    if status == ModelStatus.CHAMPION:
        raise ValueError("use set_champion to crown a champion")
    mr = schema.model_registry
    conn.execute(
        update(mr)
        .where(mr.c.model_version == model_version, mr.c.status != ModelStatus.CHAMPION.value)
        .values(status=str(status))
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _lock_champion(conn: Connection) -> None:
    """Serialise champion changes: the first statement of their transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAMPION_LOCK_KEY})
    else:  # SQLite: a write first takes the database's write lock, so a racing change waits (busy timeout)
        lc = schema.line_champions
        conn.execute(update(lc).where(lc.c.segment.is_(None)).values(segment=lc.c.segment))


def set_champion(
    engine: Engine,
    model_version: str,
    valuation_date: dt.date,
    action: str,
    segments: list[str] | tuple[str, ...],
    approved_by: str | None = None,
    approval_id: int | None = None,
    run_id: str | None = None,
    changed_at: dt.datetime | None = None,
) -> list[str]:
    """Make ``model_version`` the champion of ``segments`` in one transaction; returns the lines that changed (none:
    it already was their champion, e.g. a re-run)."""
    with engine.begin() as conn:
        _lock_champion(conn)
        return _crown(
            conn, model_version, segments, valuation_date, action, approved_by, approval_id, run_id, changed_at
        )


def _crown(
    conn: Connection,
    model_version: str,
    segments,
    valuation_date: dt.date,
    action: str,
    approved_by: str | None,
    approval_id: int | None,
    run_id: str | None,
    changed_at: dt.datetime | None = None,
) -> list[str]:
    """Point each of ``segments`` at ``model_version``, retire the models that champion no line any more and write
    one history row per line changed, inside the caller's transaction (which holds the champion lock)."""
    if action not in tuple(ChampionAction):
        raise ValueError(f"action {action!r} must be one of {[a.value for a in ChampionAction]}")
    if not segments:
        raise ValueError(f"name the lines {model_version} becomes the champion of")
    mr, ch, lc = schema.model_registry, schema.champion_history, schema.line_champions
    target = conn.execute(select(mr.c.status).where(mr.c.model_version == model_version)).scalar_one_or_none()
    if target is None:
        raise LookupError(f"model version {model_version} is not in the registry")
    when = changed_at or _now()
    changed, previous = [], set()
    for segment in sorted(set(segments)):
        current = conn.execute(select(lc.c.model_version).where(lc.c.segment == segment)).scalar_one_or_none()
        if current == model_version:
            continue
        values = {"model_version": model_version, "valuation_date": valuation_date, "changed_at": when}
        if current is None:
            conn.execute(insert(lc).values(segment=segment, **values))
        else:
            conn.execute(update(lc).where(lc.c.segment == segment).values(**values))
            previous.add(current)
        conn.execute(
            insert(ch).values(
                valuation_date=valuation_date,
                segment=segment,
                model_version=model_version,
                previous_version=current,
                action=str(action),
                approved_by=approved_by,
                approval_id=approval_id,
                changed_at=when,
                run_id=run_id,
            )
        )
        changed.append(segment)
        log.info("champion of %s: %s -> %s (%s, approved by %s)", segment, current, model_version, action, approved_by)
    if changed:
        conn.execute(update(mr).where(mr.c.model_version == model_version).values(status=ModelStatus.CHAMPION.value))
    still = set(conn.execute(select(lc.c.model_version).distinct()).scalars())
    for version in previous - still:
        conn.execute(update(mr).where(mr.c.model_version == version).values(status=ModelStatus.RETIRED.value))
    return changed


def champion_history(engine: Engine, segment: str | None = None) -> pd.DataFrame:
    """Every champion change (of one line when ``segment`` is given), oldest first."""
    ch = schema.champion_history
    query = select(ch).order_by(ch.c.id)
    return read_frame(engine, query if segment is None else query.where(ch.c.segment == segment))


def approval_behind(engine: Engine, spec_hash_: str, segment: str) -> tuple[int, str | None] | None:
    """(approvals.id, approved_by) of the latest promotion of this spec on this line (routine refits inherit it), or
    None."""
    ch, mr = schema.champion_history, schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(
            select(ch.c.approval_id, ch.c.approved_by)
            .join(mr, mr.c.model_version == ch.c.model_version)
            .where(ch.c.action == ChampionAction.PROMOTED.value, mr.c.spec_hash == spec_hash_, ch.c.segment == segment)
            .order_by(ch.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None or row.approval_id is None else (row.approval_id, row.approved_by)


# --- promotion decisions and backtests ------------------------------------------------------------------------------


def record_decisions(
    engine: Engine, valuation_date: dt.date, decisions: list[PromotionDecision], run_id: str | None = None
) -> None:
    """Replace V's promotion decisions, one per line (a re-run of evaluate rewrites its own)."""
    rows = [{**asdict(d), "decision": str(d.decision), "run_id": run_id} for d in decisions]
    replace_rows(engine, schema.promotion_decisions, {"valuation_date": valuation_date}, rows)


def decisions_at(engine: Engine, valuation_date: dt.date) -> list:
    """The promotion decisions recorded for V, one row per line (the table's columns), by line."""
    pd_ = schema.promotion_decisions
    with engine.connect() as conn:
        return conn.execute(select(pd_).where(pd_.c.valuation_date == valuation_date).order_by(pd_.c.segment)).all()


def pending_decisions(engine: Engine) -> list[dict]:
    """Lines whose decision is to promote and whose challenger has no approvals row of the deciding run on that line
    yet, oldest first."""
    pd_, ap = schema.promotion_decisions, schema.approvals
    query = (
        select(pd_)
        .outerjoin(
            ap,
            and_(
                ap.c.valuation_date == pd_.c.valuation_date,
                ap.c.model_version == pd_.c.challenger_version,
                ap.c.segment == pd_.c.segment,
                _same_run(ap.c.run_id, pd_.c.run_id),
            ),
        )
        .where(pd_.c.decision == Promotion.PROMOTE.value, ap.c.id.is_(None))
        .order_by(pd_.c.valuation_date, pd_.c.segment)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings().all()]


def store_backtest(
    engine: Engine,
    valuation_date: dt.date,
    model_version: str,
    role: str,
    scores: pd.DataFrame,
    held_out_diagonals: int,
    run_id: str | None = None,
    line_roles: dict[str, str] | None = None,
) -> None:
    """Replace the backtest rows of (V, version); ``scores`` has segment ('ALL' overall), wape, rmse. ``line_roles``
    gives the version's role on the lines where it differs from ``role`` (champion of one line, challenger on
    another)."""
    import pandas as pd

    line_roles = line_roles or {}
    rows = [
        {
            "role": str(line_roles.get(r.segment, role)),
            "segment": str(r.segment),
            "wape": None if pd.isna(r.wape) else float(r.wape),
            "rmse": None if pd.isna(r.rmse) else float(r.rmse),
            "held_out_diagonals": held_out_diagonals,
            "run_id": run_id,
        }
        for r in scores.itertuples()
    ]
    key = {"valuation_date": valuation_date, "model_version": model_version}
    replace_rows(engine, schema.backtest_results, key, rows)


def backtests(engine: Engine, valuation_date: dt.date) -> pd.DataFrame:
    """The backtest rows of V: model_version, role, segment, wape, rmse."""
    bt = schema.backtest_results
    return read_frame(
        engine,
        select(bt.c.model_version, bt.c.role, bt.c.segment, bt.c.wape, bt.c.rmse)
        .where(bt.c.valuation_date == valuation_date)
        .order_by(bt.c.role, bt.c.segment),
    )


# --- approvals -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedDecision:
    """The decision on (V, version) of one run as recorded (first write wins), and what this call did about it."""

    approval_id: int
    decision: str
    decided_by: str | None
    decided_at: dt.datetime
    newly_recorded: bool  # False: a re-run found it already recorded (and left the row as it was)
    promoted: bool  # this call crowned the version


def decide(
    engine: Engine,
    valuation_date: dt.date,
    model_version: str,
    decision: str,
    variable_key: str,
    segment: str,
    decided_by: str | None = None,
    comment: str | None = None,
    decided_at: dt.datetime | None = None,
    run_id: str | None = None,
) -> RecordedDecision:
    """Record the outcome (approve, reject, timeout) on (V, version) for ``run_id`` and one line, and act on it, in
    ONE transaction.

    Approve crowns the version on that line, its champion_history row naming this approval; reject marks it rejected
    unless it champions or is pending on another line (the status is the model's, the decision the line's). A crash
    therefore leaves either nothing or everything. The recorded decision is immutable: a re-run finds it, never
    deletes or rewrites it (history rows point at its id), acts on the recorded decision rather than the one passed
    in, and completes a promotion that an older, non-atomic run recorded but never made. Another run's decision on
    the same (V, version) is not this run's: a run retraining after a rejection gets a decision of its own.
    """
    if decision not in tuple(Decision):
        raise ValueError(f"decision {decision!r} must be one of {[d.value for d in Decision]}")
    ap, ch = schema.approvals, schema.champion_history
    with engine.begin() as conn:
        _lock_champion(conn)  # also serialises two tries of a run deciding the same (V, version)
        row = _approval(conn, valuation_date, model_version, run_id, segment)
        newly_recorded = row is None
        if newly_recorded:
            conn.execute(
                insert(ap).values(
                    valuation_date=valuation_date,
                    segment=segment,
                    model_version=model_version,
                    decision=str(decision),
                    decided_by=decided_by,
                    decided_at=decided_at or _now(),
                    comment=comment,
                    variable_key=variable_key,
                    run_id=run_id,
                )
            )
            row = _approval(conn, valuation_date, model_version, run_id, segment)
        promoted = False
        if row.decision == Decision.APPROVE:
            done = conn.execute(select(ch.c.id).where(ch.c.approval_id == row.id).limit(1)).first()
            if done is None:
                promoted = bool(
                    _crown(
                        conn,
                        model_version,
                        [segment],
                        valuation_date,
                        ChampionAction.PROMOTED,
                        row.decided_by,
                        row.id,
                        run_id,
                    )
                )
        elif row.decision == Decision.REJECT and not _approved_elsewhere(conn, valuation_date, model_version, run_id):
            _set_status(conn, model_version, ModelStatus.REJECTED)
    if not newly_recorded and row.decision != decision:
        log.warning(
            "%s on %s for %s on %s was already recorded as %s (approvals.id=%s): kept, not rewritten",
            decision,
            model_version,
            segment,
            valuation_date,
            row.decision,
            row.id,
        )
    return RecordedDecision(row.id, row.decision, row.decided_by, row.decided_at, newly_recorded, promoted)


def _same_run(column, run_id):
    """``column`` names the run ``run_id`` (a value or another column); NULL matches NULL (outside a run)."""
    if isinstance(run_id, str) or run_id is None:
        return column.is_(None) if run_id is None else column == run_id
    return or_(column == run_id, and_(column.is_(None), run_id.is_(None)))


def _approval(conn: Connection, valuation_date: dt.date, model_version: str, run_id: str | None, segment: str):
    ap = schema.approvals
    return conn.execute(
        select(ap).where(
            ap.c.valuation_date == valuation_date,
            ap.c.model_version == model_version,
            _same_run(ap.c.run_id, run_id),
            ap.c.segment == segment,
        )
    ).first()


def _approved_elsewhere(conn: Connection, valuation_date: dt.date, model_version: str, run_id: str | None) -> bool:
    """Whether this run approved ``model_version`` on another line (then a rejection on one line keeps its status)."""
    ap = schema.approvals
    return (
        conn.execute(
            select(ap.c.id)
            .where(
                ap.c.valuation_date == valuation_date,
                ap.c.model_version == model_version,
                _same_run(ap.c.run_id, run_id),
                ap.c.decision == Decision.APPROVE.value,
            )
            .limit(1)
        ).first()
        is not None
    )


def decision_on(
    engine: Engine, valuation_date: dt.date, model_version: str, run_id: str | None, segment: str
) -> str | None:
    """The decision ``run_id`` recorded on (V, version) for one line, or None while pending."""
    ap = schema.approvals
    with engine.connect() as conn:
        return conn.execute(
            select(ap.c.decision).where(
                ap.c.valuation_date == valuation_date,
                ap.c.model_version == model_version,
                _same_run(ap.c.run_id, run_id),
                ap.c.segment == segment,
            )
        ).scalar_one_or_none()


def approvals(engine: Engine) -> pd.DataFrame:
    ap = schema.approvals
    return read_frame(engine, select(ap).order_by(ap.c.valuation_date, ap.c.id))

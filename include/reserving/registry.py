"""Model registry, champion pointer, promotion rule, backtest results and approvals (the audit trail).

Exactly one champion at any time: a unique partial index on ``model_registry.status = 'champion'`` enforces it in
the database, and champion changes run in one transaction (serialised by an advisory lock on PostgreSQL) that
retires the old champion, crowns the new one and writes ``champion_history``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from include.reserving import schema
from include.reserving.config import PROJECT_ROOT

log = logging.getLogger(__name__)

CHAMPION_LOCK_KEY = 7_310_042  # pg_advisory_xact_lock key serialising champion changes
SCORE_EPS = 1e-12  # a challenger exactly delta better (up to float noise) is not better by more than delta


def canonical_spec(spec: dict[str, Any]) -> str:
    """The spec as canonical JSON: equal specs give equal strings (and hashes)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_spec(spec).encode()).hexdigest()


def model_version_id(spec: dict[str, Any], valuation_date: dt.date, data_hash: str) -> str:
    """Deterministic version id: the same spec fitted on the same data at V is the same version (re-runs)."""
    digest = hashlib.sha256((spec_hash(spec) + data_hash).encode()).hexdigest()[:10]
    return f"{valuation_date:%Y%m%d}-{spec['method']}-{digest}"


@cache
def code_version() -> str:
    """Git SHA of the code that trains (``RESERVING_CODE_VERSION`` in images without .git)."""
    if os.environ.get("RESERVING_CODE_VERSION"):
        return os.environ["RESERVING_CODE_VERSION"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@dataclass(frozen=True)
class ModelEntry:
    model_version: str
    spec: dict[str, Any]
    artifact_uri: str
    trained_valuation_date: dt.date
    basis: str
    train_rows: int
    data_hash: str
    code_version: str
    metrics: dict[str, Any] | None = None
    status: str = "candidate"
    method: str = field(default="")

    def __post_init__(self) -> None:
        if not self.method:
            object.__setattr__(self, "method", self.spec["method"])


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
        "model_version": entry.model_version,
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
            conn.execute(insert(mr).values(**values, status="candidate"))
        else:
            values.pop("model_version")
            conn.execute(update(mr).where(mr.c.model_version == entry.model_version).values(**values))
    return get(engine, entry.model_version)


def get(engine: Engine, model_version: str) -> ModelEntry | None:
    mr = schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(select(mr).where(mr.c.model_version == model_version)).first()
    return _entry(row) if row else None


def champion(engine: Engine) -> ModelEntry | None:
    mr = schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(select(mr).where(mr.c.status == "champion")).first()
    return _entry(row) if row else None


def set_status(engine: Engine, model_version: str, status: str) -> None:
    """Mark a candidate rejected (or any non-champion status); the champion only moves through set_champion."""
    if status == "champion":
        raise ValueError("use set_champion to crown a champion")
    mr = schema.model_registry
    with engine.begin() as conn:
        conn.execute(
            update(mr).where(mr.c.model_version == model_version, mr.c.status != "champion").values(status=status)
        )


def _lock_champion(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAMPION_LOCK_KEY})


def set_champion(
    engine: Engine,
    model_version: str,
    valuation_date: dt.date,
    action: str,
    approved_by: str | None = None,
    approval_id: int | None = None,
    run_id: str | None = None,
    changed_at: dt.datetime | None = None,
) -> bool:
    """Make ``model_version`` the champion in one transaction; returns False if it already was (re-run)."""
    if action not in ("promoted", "refitted"):
        raise ValueError(f"action {action!r} must be promoted or refitted")
    mr, ch = schema.model_registry, schema.champion_history
    with engine.begin() as conn:
        _lock_champion(conn)
        current = conn.execute(select(mr.c.model_version).where(mr.c.status == "champion")).scalar_one_or_none()
        if current == model_version:
            return False
        target = conn.execute(select(mr.c.status).where(mr.c.model_version == model_version)).scalar_one_or_none()
        if target is None:
            raise LookupError(f"model version {model_version} is not in the registry")
        if current is not None:
            conn.execute(update(mr).where(mr.c.model_version == current).values(status="retired"))
        conn.execute(update(mr).where(mr.c.model_version == model_version).values(status="champion"))
        conn.execute(
            insert(ch).values(
                valuation_date=valuation_date,
                model_version=model_version,
                previous_version=current,
                action=action,
                approved_by=approved_by,
                approval_id=approval_id,
                changed_at=changed_at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
                run_id=run_id,
            )
        )
    log.info("champion: %s -> %s (%s, approved by %s)", current, model_version, action, approved_by)
    return True


def champion_history(engine: Engine) -> pd.DataFrame:
    ch = schema.champion_history
    with engine.connect() as conn:
        rows = conn.execute(select(ch).order_by(ch.c.id)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in ch.columns])


# --- promotion rule ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionDecision:
    valuation_date: dt.date
    champion_version: str | None
    challenger_version: str | None
    champion_score: float | None
    challenger_score: float | None
    delta: float
    decision: str  # promote (pending approval), keep, none
    reason: str


def decide_promotion(
    valuation_date: dt.date,
    champion_version: str | None,
    champion_score: float | None,
    challenger_version: str | None,
    challenger_score: float | None,
    delta: float,
) -> PromotionDecision:
    """Promote iff score(challenger) > score(champion) + delta (scores: higher is better, e.g. -WAPE).

    No challenger: nothing to decide. No champion yet: the challenger goes to approval like any other.
    """
    if challenger_version is None:
        decision, reason = "none", "no challenger this month (no retraining, or the best spec is the champion's)"
    elif champion_version is None:
        decision, reason = "promote", "no champion yet: the first challenger needs approval"
    elif challenger_score > champion_score + delta + SCORE_EPS:
        decision = "promote"
        reason = f"challenger {challenger_score:.6f} > champion {champion_score:.6f} + delta {delta}"
    else:
        decision = "keep"
        reason = f"challenger {challenger_score:.6f} <= champion {champion_score:.6f} + delta {delta}"
    return PromotionDecision(
        valuation_date,
        champion_version,
        challenger_version,
        champion_score,
        challenger_score,
        delta,
        decision,
        reason,
    )


def record_decision(engine: Engine, decision: PromotionDecision, run_id: str | None = None) -> None:
    pd_ = schema.promotion_decisions
    with engine.begin() as conn:
        conn.execute(delete(pd_).where(pd_.c.valuation_date == decision.valuation_date))
        conn.execute(insert(pd_).values(**asdict(decision), run_id=run_id))


def store_backtest(
    engine: Engine,
    valuation_date: dt.date,
    model_version: str,
    role: str,
    scores: pd.DataFrame,
    held_out_diagonals: int,
    run_id: str | None = None,
) -> None:
    """Replace the backtest rows of (V, version); ``scores`` has segment ('ALL' overall), wape, rmse."""
    bt = schema.backtest_results
    rows = [
        {
            "valuation_date": valuation_date,
            "model_version": model_version,
            "role": role,
            "segment": str(r.segment),
            "wape": None if pd.isna(r.wape) else float(r.wape),
            "rmse": None if pd.isna(r.rmse) else float(r.rmse),
            "held_out_diagonals": held_out_diagonals,
            "run_id": run_id,
        }
        for r in scores.itertuples()
    ]
    with engine.begin() as conn:
        conn.execute(delete(bt).where(bt.c.valuation_date == valuation_date, bt.c.model_version == model_version))
        if rows:
            conn.execute(insert(bt), rows)


# --- approvals ---------------------------------------------------------------------------------------------------


def record_approval(
    engine: Engine,
    valuation_date: dt.date,
    model_version: str,
    decision: str,
    variable_key: str,
    decided_by: str | None = None,
    comment: str | None = None,
    decided_at: dt.datetime | None = None,
    run_id: str | None = None,
) -> int:
    """Write the outcome (approve, reject, timeout) for (V, version), replacing a re-run's; returns its id."""
    if decision not in ("approve", "reject", "timeout"):
        raise ValueError(f"decision {decision!r} must be approve, reject or timeout")
    ap = schema.approvals
    key = and_(ap.c.valuation_date == valuation_date, ap.c.model_version == model_version)
    with engine.begin() as conn:
        conn.execute(delete(ap).where(key))
        conn.execute(
            insert(ap).values(
                valuation_date=valuation_date,
                model_version=model_version,
                decision=decision,
                decided_by=decided_by,
                decided_at=decided_at or dt.datetime.now(dt.UTC).replace(tzinfo=None),
                comment=comment,
                variable_key=variable_key,
                run_id=run_id,
            )
        )
        return conn.execute(select(ap.c.id).where(key)).scalar_one()


def approvals(engine: Engine) -> pd.DataFrame:
    ap = schema.approvals
    with engine.connect() as conn:
        rows = conn.execute(select(ap).order_by(ap.c.valuation_date, ap.c.id)).mappings().all()
    return pd.DataFrame(rows, columns=[c.name for c in ap.columns])

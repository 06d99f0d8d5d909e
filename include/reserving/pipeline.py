"""The stages of the monthly run as plain functions: each takes the run's facts and returns a small JSON-able dict
(table keys, versions, artifact URIs) for XCom. The DAG file only wires them; tests call them directly too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine

from include.reserving import approval as approvalmod
from include.reserving import artifacts, registry, schema
from include.reserving.cells import latest_diagonal
from include.reserving.config import Settings, load_settings, warehouse_url
from include.reserving.dates import parse_valuation_date
from include.reserving.domain import Basis
from include.reserving.ingest import ingest, load_cells
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.warehouse.core import make_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFacts:
    """What every stage needs to know about the run: the valuation date V, the data basis and the run id."""

    valuation_date: dt.date
    basis: str
    run_id: str
    settings: Settings

    @classmethod
    def create(cls, valuation_date: dt.date | str, run_id: str, restated: bool = False, **overrides: Any):
        return cls(
            parse_valuation_date(valuation_date),
            Basis.RESTATED if restated else Basis.AS_RECORDED,
            run_id,
            load_settings(**overrides),
        )

    def engine(self) -> Engine:
        return make_engine(warehouse_url(self.settings))

    @property
    def run_dir(self) -> str:
        return artifacts.run_dir(self.settings.artifact_root, self.valuation_date, self.run_id)


# --- ingest, validate, drift ---------------------------------------------------------------------------------------


def stage_ingest(facts: RunFacts) -> dict:
    engine = facts.engine()
    result = ingest(
        engine,
        facts.valuation_date,
        basis=facts.basis,
        origin_months=facts.settings.origin_months,
        development_months=facts.settings.development_months,
        run_id=facts.run_id,
    )
    return result.as_xcom()


def stage_validate(facts: RunFacts, alert=None) -> dict:
    """The Great Expectations gate: raises QualityGateError (naming every failed check) on bad data."""
    from include.reserving.quality import (
        previous_row_count,
        raise_for_failures,
        run_quality_gate,
        store_quality_results,
    )

    engine = facts.engine()
    report = run_quality_gate(
        warehouse_url(facts.settings),
        facts.valuation_date,
        facts.basis,
        previous_row_count(engine, facts.valuation_date, facts.basis),
        facts.settings,
        artifacts.join(facts.run_dir, "quality"),
        run_id=facts.run_id,
    )
    store_quality_results(engine, report)
    log.info(report.summary())
    raise_for_failures(report, alert=alert)
    return {"checks": len(report.checks), "row_count": report.row_count, "artifact_uri": report.artifact_uri}


def actual_vs_expected_breach(cells: pd.DataFrame, champion: registry.ModelEntry, tolerance: float):
    """Concept-drift hook: actual vs expected paid on the newest diagonal per segment, from the champion's spec."""
    from include.reserving.backtest import actual_vs_expected

    ave = actual_vs_expected(cells, champion.spec)
    breaches = ave[(ave["ratio"] - 1).abs() > tolerance]
    detail = ", ".join(f"{r.segment} A/E {r.ratio:.3f}" for r in breaches.itertuples())
    return (not breaches.empty), detail, ave


def stage_drift(facts: RunFacts, force_retrain: bool = False) -> dict:
    """PSI/KS per feature against the champion's reference window, stored; the retraining decision."""
    from include.reserving.drift import decide_retrain, drift_report, reference_window, store_drift_metrics

    engine = facts.engine()
    champion = registry.champion(engine)
    reference = reference_window(facts.valuation_date, champion.trained_valuation_date if champion else None)
    report = drift_report(engine, facts.valuation_date, facts.basis, facts.settings.psi_threshold, reference)
    store_drift_metrics(engine, report, run_id=facts.run_id)
    ave_breach, ave_detail = None, None
    if champion is not None:
        cells = load_cells(engine, facts.valuation_date, facts.basis)
        ave_breach, ave_detail, _ = actual_vs_expected_breach(cells, champion, facts.settings.ave_tolerance)
    decision = decide_retrain(
        report, facts.settings.psi_threshold, force_retrain=force_retrain, ave_breach=ave_breach, ave_detail=ave_detail
    )
    reasons = list(decision.reasons)
    retrain = decision.retrain
    if champion is None:
        retrain = True
        reasons.append("no champion yet: the first model must be trained")
    log.info("drift decision for %s: %s", facts.valuation_date, "; ".join(reasons))
    return {"retrain": retrain, "reasons": reasons}


# --- train, evaluate ---------------------------------------------------------------------------------------------


def fit_and_register(engine: Engine, facts: RunFacts, spec: dict, cells: pd.DataFrame, metrics=None):
    """Fit ``spec`` on V's cells, store it as JSON artifacts, register it (idempotent: same data, same version)."""
    from include.reserving.ingest import cells_hash
    from include.reserving.models import build_model

    data_hash = cells_hash(cells)
    version = registry.model_version_id(spec, facts.valuation_date, data_hash)
    existing = registry.get(engine, version)
    if existing is not None:
        return existing
    model = build_model(spec).fit(cells)
    uri = artifacts.model_dir(facts.settings.artifact_root, version)
    local = artifacts.writable_dir(uri)
    model.save(local)
    artifacts.publish_dir(local, uri)
    entry = registry.ModelEntry(
        model_version=version,
        spec=spec,
        artifact_uri=uri,
        trained_valuation_date=facts.valuation_date,
        basis=facts.basis,
        train_rows=len(cells),
        data_hash=data_hash,
        code_version=registry.code_version(),
        metrics=metrics,
    )
    return registry.register(engine, entry, run_id=facts.run_id)


def stage_train(facts: RunFacts) -> dict:
    """The training search (time-series CV over past diagonals); a best spec unlike the champion's is the challenger."""
    from include.reserving.backtest import select_spec

    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    best, table = select_spec(cells)
    champion = registry.champion(engine)
    search = table.to_dict(orient="records")
    if champion is not None and registry.spec_hash(best) == registry.spec_hash(champion.spec):
        log.info("training search picked the champion's spec %s: no challenger", registry.canonical_spec(best))
        return {"challenger_version": None, "best_spec": best, "search": search}
    entry = fit_and_register(engine, facts, best, cells, metrics={"search": search})
    log.info("challenger %s: %s", entry.model_version, registry.canonical_spec(best))
    return {"challenger_version": entry.model_version, "best_spec": best, "search": search}


def stage_evaluate(facts: RunFacts, trained: dict) -> dict:
    """Backtest challenger and champion on the same held-out diagonals and apply the promotion rule."""
    from include.reserving.backtest import backtest

    engine = facts.engine()
    k = facts.settings.backtest_diagonals
    champion = registry.champion(engine)
    challenger_version = trained.get("challenger_version")
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    scores: dict[str, float | None] = {"champion": None, "challenger": None}
    for role, entry in (
        ("champion", champion),
        ("challenger", challenger_version and registry.get(engine, challenger_version)),
    ):
        if not entry:
            continue
        result = backtest(cells, entry.spec, k=k)
        registry.store_backtest(
            engine,
            facts.valuation_date,
            entry.model_version,
            role,
            result.scores[["segment", "wape", "rmse"]],
            k,
            facts.run_id,
        )
        scores[role] = result.score
    decision = registry.decide_promotion(
        facts.valuation_date,
        champion.model_version if champion else None,
        scores["champion"],
        challenger_version,
        scores["challenger"],
        facts.settings.promotion_delta,
    )
    registry.record_decision(engine, decision, run_id=facts.run_id)
    log.info("promotion rule for %s: %s (%s)", facts.valuation_date, decision.decision, decision.reason)
    return {key: (v.isoformat() if isinstance(v, dt.date) else v) for key, v in asdict(decision).items()}


# --- approval ----------------------------------------------------------------------------------------------------


def stage_apply_approval(facts: RunFacts, evaluation: dict, outcome: dict, alert=None) -> dict:
    """Record the actuary's decision (or the timeout) and promote on approval; every outcome is audited."""
    engine = facts.engine()
    version = evaluation["challenger_version"]
    key = approvalmod.approval_key(facts.valuation_date)
    decision = outcome.get("decision", "timeout")
    approval_id = registry.record_approval(
        engine,
        facts.valuation_date,
        version,
        decision,
        key,
        decided_by=outcome.get("by"),
        comment=outcome.get("comment"),
        run_id=facts.run_id,
    )
    if decision == "approve":
        registry.set_champion(
            engine,
            version,
            facts.valuation_date,
            "promoted",
            approved_by=outcome.get("by"),
            approval_id=approval_id,
            run_id=facts.run_id,
        )
        message = f"Model {version} approved by {outcome.get('by')} and promoted to champion for {facts.valuation_date}"
    elif decision == "reject":
        registry.set_status(engine, version, "rejected")
        message = f"Model {version} rejected by {outcome.get('by')} for {facts.valuation_date}: champion kept"
    else:
        message = (
            f"Approval of model {version} for {facts.valuation_date} timed out: champion kept. "
            + ApprovalInstruction(facts.valuation_date, version).text
        )
    log.info(message)
    if alert is not None:
        alert(message)
    return {"decision": decision, "model_version": version, "approval_id": approval_id, "message": message}


# --- reserve, publish --------------------------------------------------------------------------------------------


def approval_reference(engine: Engine, spec: dict) -> str | None:
    """The approval behind the champion's spec (routine refits inherit it): 'approvals.id=N (by WHO)'."""
    ch, mr = schema.champion_history, schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(
            select(ch.c.approval_id, ch.c.approved_by)
            .join(mr, mr.c.model_version == ch.c.model_version)
            .where(ch.c.action == "promoted", mr.c.spec_hash == registry.spec_hash(spec))
            .order_by(ch.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None or row.approval_id is None else f"approvals.id={row.approval_id} ({row.approved_by})"


def preliminary_candidate(engine: Engine, valuation_date: dt.date) -> registry.ModelEntry | None:
    """Without any approved champion, the newest candidate trained at V produces preliminary reserves."""
    mr = schema.model_registry
    with engine.connect() as conn:
        version = conn.execute(
            select(mr.c.model_version)
            .where(mr.c.trained_valuation_date == valuation_date, mr.c.status == "candidate")
            .order_by(mr.c.model_version)
            .limit(1)
        ).scalar_one_or_none()
    return registry.get(engine, version) if version else None


def stage_refit(facts: RunFacts) -> dict:
    """The model that reserves V: a routine refit of the champion's spec on V's data (recorded, no approval
    needed), or, before any champion was approved, this month's candidate for PRELIMINARY reserves."""
    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    champion = registry.champion(engine)
    status = "approved"
    if champion is None:
        model_entry = preliminary_candidate(engine, facts.valuation_date)
        if model_entry is None:
            raise RuntimeError(
                f"no champion and no candidate model for {facts.valuation_date}: run with force_retrain to train one"
            )
        status = "preliminary"
        log.warning(
            "no approved champion yet: reserves for %s are PRELIMINARY, from candidate %s",
            facts.valuation_date,
            model_entry.model_version,
        )
    else:
        model_entry = fit_and_register(engine, facts, champion.spec, cells)
        if model_entry.model_version != champion.model_version:
            registry.set_champion(
                engine, model_entry.model_version, facts.valuation_date, "refitted", run_id=facts.run_id
            )
    return {
        "model_version": model_entry.model_version,
        "artifact_uri": model_entry.artifact_uri,
        "status": status,
        "approval_ref": approval_reference(engine, model_entry.spec) if status == "approved" else None,
        "segments": sorted(cells["segment"].unique().tolist()),
    }


def stage_reserve_segment(facts: RunFacts, refit: dict, segment: str) -> dict:
    """Ultimates, IBNR and ranges per origin for one segment (a mapped task: segments spread over workers)."""
    from include.reserving.models import load_model
    from include.reserving.publish import reserve_rows

    cells = load_cells(facts.engine(), facts.valuation_date, facts.basis)
    cells = cells[cells["segment"] == segment].reset_index(drop=True)
    if cells.empty:
        raise LookupError(f"segment {segment!r} has no cells at {facts.valuation_date}")
    model = load_model(artifacts.local_dir(refit["artifact_uri"]))
    rows = reserve_rows(model.ultimates(cells), latest_diagonal(cells))
    uri = artifacts.join(facts.run_dir, "reserves", f"{artifacts.safe(segment)}.json")
    payload = rows.assign(origin=rows["origin"].astype(str)).to_dict(orient="records")
    artifacts.write_text(uri, json.dumps(payload, indent=1))
    log.info(
        "reserved %s at %s: IBNR %.2f over %d origins", segment, facts.valuation_date, rows["ibnr"].sum(), len(rows)
    )
    return {"segment": segment, "reserves_uri": uri, "ibnr_total": round(float(rows["ibnr"].sum()), 2)}


def stage_publish(facts: RunFacts, refit: dict, reserved: list[dict]) -> dict:
    """Atomically publish every segment's reserve rows as this run's version for V."""
    from include.reserving.publish import publish_reserves

    missing = sorted(set(refit["segments"]) - {r["segment"] for r in reserved})
    if missing:
        raise RuntimeError(f"segments {missing} have no reserves: nothing was published")
    rows = pd.concat(
        [pd.DataFrame(json.loads(artifacts.read_text(r["reserves_uri"]))) for r in reserved], ignore_index=True
    )
    rows["origin"] = pd.to_datetime(rows["origin"]).dt.date
    rows = rows.sort_values(["segment", "origin"]).reset_index(drop=True)
    result = publish_reserves(
        facts.engine(),
        facts.valuation_date,
        facts.run_id,
        rows,
        refit["model_version"],
        basis=facts.basis,
        approval_ref=refit["approval_ref"],
        status=refit["status"],
    )
    return {**result.as_xcom(), "status": refit["status"], "model_version": refit["model_version"]}

"""The training group: the spec search (the expensive step drift gates), then champion vs challenger backtests and
the margin-delta rule."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict

import pandas as pd
from sqlalchemy.engine import Engine

from include.reserving import artifacts, governance
from include.reserving.domain import BASELINE, Role
from include.reserving.governance import ModelEntry
from include.reserving.stages import RunFacts
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import load_cells

log = logging.getLogger(__name__)


def fit_and_register(
    engine: Engine, facts: RunFacts, spec: dict, cells: pd.DataFrame, metrics: dict | None = None
) -> ModelEntry:
    """Fit ``spec`` on V's cells, store it as JSON artifacts, register it (idempotent: same data, same version)."""
    from include.reserving.ingest import cells_hash
    from include.reserving.models import build_model

    data_hash = cells_hash(cells)
    version = governance.model_version_id(spec, facts.valuation_date, data_hash)
    existing = registry.get(engine, version)
    if existing is not None:
        return existing
    model = build_model(spec).fit(cells)
    uri = artifacts.model_dir(facts.settings.artifact_root, version)
    local = artifacts.writable_dir(uri)
    model.save(local)
    artifacts.publish_dir(local, uri)
    entry = ModelEntry(
        model_version=version,
        spec=spec,
        artifact_uri=uri,
        trained_valuation_date=facts.valuation_date,
        basis=facts.basis,
        train_rows=len(cells),
        data_hash=data_hash,
        code_version=governance.code_version(),
        metrics=metrics,
    )
    return registry.register(engine, entry, run_id=facts.run_id)


def train(facts: RunFacts) -> dict:
    """The training search (time-series CV over past diagonals); a best spec unlike the champion's is the challenger."""
    from include.reserving.backtest import select_spec

    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    best, table = select_spec(cells)
    champion = registry.champion(engine)
    search = table.to_dict(orient="records")
    if champion is not None and governance.spec_hash(best) == governance.spec_hash(champion.spec):
        log.info("training search picked the champion's spec %s: no challenger", governance.canonical_spec(best))
        return {"challenger_version": None, "best_spec": best, "search": search}
    entry = fit_and_register(engine, facts, best, cells, metrics={"search": search})
    log.info("challenger %s: %s", entry.model_version, governance.canonical_spec(best))
    return {"challenger_version": entry.model_version, "best_spec": best, "search": search}


def evaluate(facts: RunFacts, trained: dict) -> dict:
    """Backtest challenger and champion on the same held-out diagonals and apply the promotion rule."""
    from include.reserving.backtest import backtest

    engine = facts.engine()
    k = facts.settings.backtest_diagonals
    champion = registry.champion(engine)
    challenger_version = trained.get("challenger_version")
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    scores: dict[str, float | None] = {Role.CHAMPION: None, Role.CHALLENGER: None}
    challenger = challenger_version and registry.get(engine, challenger_version)
    for role, entry in ((Role.CHAMPION, champion), (Role.CHALLENGER, challenger)):
        if not entry:
            continue
        result = backtest(cells, entry.spec, k=k)
        scores_frame = result.scores[["segment", "wape", "rmse"]]
        registry.store_backtest(engine, facts.valuation_date, entry.model_version, role, scores_frame, k, facts.run_id)
        scores[role] = result.score
    fallback_hash = governance.spec_hash(governance.FALLBACK_SPEC)
    if challenger and champion is None and governance.spec_hash(challenger.spec) != fallback_hash:
        # a first challenger is shown against paid chain ladder, which reserves the month without an approval; the
        # id is the one the fallback's refit on V's data registers
        from include.reserving.ingest import cells_hash

        version = governance.model_version_id(governance.FALLBACK_SPEC, facts.valuation_date, cells_hash(cells))
        baseline = backtest(cells, governance.FALLBACK_SPEC, k=k).scores[["segment", "wape", "rmse"]]
        registry.store_backtest(engine, facts.valuation_date, version, BASELINE, baseline, k, facts.run_id)
    decision = governance.decide_promotion(
        facts.valuation_date,
        champion.model_version if champion else None,
        scores[Role.CHAMPION],
        challenger_version,
        scores[Role.CHALLENGER],
        facts.settings.promotion_delta,
    )
    registry.record_decision(engine, decision, run_id=facts.run_id)
    log.info("promotion rule for %s: %s (%s)", facts.valuation_date, decision.decision, decision.reason)
    return {key: (v.isoformat() if isinstance(v, dt.date) else v) for key, v in asdict(decision).items()}

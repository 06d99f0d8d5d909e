"""The training group: the spec search (the expensive step drift gates), then champion vs challenger backtests and
the margin-delta rule."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pandas as pd
from sqlalchemy.engine import Engine

from include.reserving import artifacts, governance
from include.reserving.config import Settings
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


def search_candidates(settings: Settings) -> list[dict]:
    """The training search's grid: every registered method's ``search_grid()``, only the methods the setting
    ``search_methods`` names when it names any."""
    from include.reserving.backtest import default_candidates
    from include.reserving.models import registered_methods

    candidates = default_candidates(settings)
    if not settings.search_methods:
        return candidates
    unknown = sorted(set(settings.search_methods) - set(registered_methods()))
    if unknown:
        raise ValueError(
            f"setting search_methods names {unknown}, which no registered method is: use some of "
            f"{sorted(registered_methods())}"
        )
    return [spec for spec in candidates if spec["method"] in settings.search_methods]


def run_search(cells: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The training search on ``cells`` as the settings configure it (candidates, rolling origins, bias margin, blend
    weights, one-standard-error rule): :func:`include.reserving.backtest.search`'s table."""
    from include.reserving.backtest import search

    return search(
        cells,
        search_candidates(settings),
        k=settings.backtest_diagonals,
        bias_margin=settings.promotion_bias_margin,
        blend_weights=settings.search_blend_weights,
        se_multiple=settings.search_se_multiple,
    )


def train(facts: RunFacts) -> dict:
    """The training search per line (rolling-origin backtests of every candidate): a line whose best spec is not
    its champion's gets that spec as its challenger; a spec that wins several lines is fitted once."""
    from include.reserving.backtest import best_per_line
    from include.reserving.ingest import cells_hash

    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    k = facts.settings.backtest_diagonals
    table = run_search(cells, facts.settings)
    records = table.to_dict(orient="records")
    champions = registry.champions(engine)
    challengers: dict[str, str] = {}
    fitted: dict[str, ModelEntry] = {}
    for line, spec in best_per_line(table).items():
        champion = champions.get(line)
        if champion is not None and governance.spec_hash(spec) == governance.spec_hash(champion.spec):
            log.info(
                "%s: the search picked the champion's spec %s: no challenger", line, governance.canonical_spec(spec)
            )
            continue
        key = governance.spec_hash(spec)
        if key not in fitted:
            fitted[key] = fit_and_register(engine, facts, spec, cells, metrics={"search": records})
        challengers[line] = fitted[key].model_version
        log.info("%s: challenger %s (%s)", line, challengers[line], governance.canonical_spec(spec))
    # the backtests' cells and rolling origins: evaluate reuses the search's scores when it sees the same
    return {"challengers": challengers, "search": records, "backtest_diagonals": k, "data_hash": cells_hash(cells)}


def _searched_scores(trained: dict, k: int, data_hash: str) -> dict[str, pd.DataFrame]:
    """The search's backtest scores by spec hash when it ran on these cells with these rolling origins (a backtest
    is deterministic: refitting the same spec on the same folds gives the same numbers); none when the cells or
    ``k`` differ (e.g. the month was ingested again in between)."""
    if trained.get("data_hash") != data_hash or trained.get("backtest_diagonals") != k:
        return {}
    table = pd.DataFrame(trained.get("search") or [])
    columns = ["segment", "wape", "bias", "rmse", "score"]
    return {
        governance.spec_hash(json.loads(spec)): rows[columns].reset_index(drop=True)
        for spec, rows in table.groupby("spec", sort=False)
    }


def _line_scores(scores: pd.DataFrame, line: str) -> tuple[float, float]:
    """(score, bias) of a backtest on one line; NaN when nothing emerged there to score."""
    row = scores.loc[scores["segment"] == line]
    return (float(row["score"].iloc[0]), float(row["bias"].iloc[0])) if len(row) else (float("nan"), float("nan"))


def evaluate(facts: RunFacts, trained: dict) -> dict:
    """Backtest each line's challenger and champion on the same rolling origins (each spec once: the training
    search's backtest when it has one, else a refit) and apply the margin-delta rule and the bias guard per line,
    against that line's champion; the decisions recorded per line."""
    from include.reserving.backtest import backtest
    from include.reserving.ingest import cells_hash

    engine = facts.engine()
    settings = facts.settings
    k = settings.backtest_diagonals
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    lines = sorted(cells["segment"].unique())
    # champions of segments V does not have (another segment_by) are neither scored nor decided here
    champions = {line: e for line, e in registry.champions(engine).items() if line in lines}
    challengers = trained.get("challengers") or {}
    entries = {e.model_version: e for e in champions.values()}
    entries.update({v: registry.get(engine, v) for v in set(challengers.values())})
    data_hash = cells_hash(cells)
    by_spec = _searched_scores(trained, k, data_hash)

    def scored(spec: dict) -> pd.DataFrame:
        key = governance.spec_hash(spec)
        if key not in by_spec:  # not a candidate of this search (e.g. a champion from an earlier grid)
            by_spec[key] = backtest(cells, spec, k=k).scores
        return by_spec[key]

    for version, entry in entries.items():
        # a version may champion one line and challenge another: its role is stored per line
        roles = {line: Role.CHAMPION for line, e in champions.items() if e.model_version == version}
        roles |= {line: Role.CHALLENGER for line, v in challengers.items() if v == version}
        role = Role.CHALLENGER if version in challengers.values() else Role.CHAMPION
        frame = scored(entry.spec)[["segment", "wape", "rmse"]]
        registry.store_backtest(engine, facts.valuation_date, version, role, frame, k, facts.run_id, roles)
    baseline = scored(governance.FALLBACK_SPEC)
    if any(line not in champions for line in challengers):
        # a first challenger is shown against paid chain ladder, which reserves a line without an approved model;
        # the id is the one the fallback's refit on V's data registers
        version = governance.model_version_id(governance.FALLBACK_SPEC, facts.valuation_date, data_hash)
        if version not in entries:
            frame = baseline[["segment", "wape", "rmse"]]
            registry.store_backtest(engine, facts.valuation_date, version, BASELINE, frame, k, facts.run_id)
    decisions = []
    for line in lines:
        champion, challenger = champions.get(line), challengers.get(line)
        champion_score = _line_scores(scored(champion.spec), line)[0] if champion else None
        challenger_score, challenger_bias = (
            _line_scores(scored(entries[challenger].spec), line) if challenger else (None, None)
        )
        decisions.append(
            governance.decide_promotion(
                facts.valuation_date,
                champion.model_version if champion else None,
                champion_score,
                challenger,
                challenger_score,
                settings.promotion_delta,
                challenger_bias=challenger_bias,
                baseline_bias=_line_scores(baseline, line)[1],
                bias_margin=settings.promotion_bias_margin,
                segment=line,
            )
        )
        log.info(
            "promotion rule for %s at %s: %s (%s)",
            line,
            facts.valuation_date,
            decisions[-1].decision,
            decisions[-1].reason,
        )
    decisions = [_stored(d) for d in decisions]
    registry.record_decisions(engine, facts.valuation_date, decisions, run_id=facts.run_id)
    return governance.evaluation(facts.valuation_date, decisions, settings.promotion_delta)


def _stored(decision: governance.PromotionDecision) -> governance.PromotionDecision:
    """NaN scores (nothing emerged on the line) stored as NULL."""
    return replace(
        decision,
        champion_score=_finite(decision.champion_score),
        challenger_score=_finite(decision.challenger_score),
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)

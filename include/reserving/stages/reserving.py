"""The reserving group: the model that reserves V, ultimates per line (mapped tasks), one atomic publication."""

from __future__ import annotations

import json
import logging

import pandas as pd

from include.reserving import artifacts, governance
from include.reserving.cells import latest_diagonal
from include.reserving.domain import ChampionAction, PublicationStatus
from include.reserving.stages import RunFacts
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import registry, reserves
from include.reserving.warehouse.cells import load_cells

log = logging.getLogger(__name__)


def approval_reference(engine, spec: dict) -> str | None:
    """The approval behind the champion's spec (routine refits inherit it): 'approvals.id=N (by WHO)'."""
    found = registry.approval_behind(engine, governance.spec_hash(spec))
    return None if found is None else f"approvals.id={found[0]} ({found[1]})"


def refit(facts: RunFacts) -> dict:
    """The model that reserves V: a routine refit of the champion's spec on V's data (recorded, no approval
    needed), or, before any champion was approved, this month's candidate for PRELIMINARY reserves."""
    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    champion = registry.champion(engine)
    status = PublicationStatus.APPROVED.value
    if champion is None:
        model_entry = registry.candidate_trained_at(engine, facts.valuation_date)
        if model_entry is None:
            raise RuntimeError(
                f"no champion and no candidate model for {facts.valuation_date}: run with force_retrain to train one"
            )
        status = PublicationStatus.PRELIMINARY.value
        log.warning(
            "no approved champion yet: reserves for %s are PRELIMINARY, from candidate %s",
            facts.valuation_date,
            model_entry.model_version,
        )
    else:
        model_entry = fit_and_register(engine, facts, champion.spec, cells)
        if model_entry.model_version != champion.model_version:
            registry.set_champion(
                engine, model_entry.model_version, facts.valuation_date, ChampionAction.REFITTED, run_id=facts.run_id
            )
    return {
        "model_version": model_entry.model_version,
        "artifact_uri": model_entry.artifact_uri,
        "status": status,
        "approval_ref": approval_reference(engine, model_entry.spec) if status == PublicationStatus.APPROVED else None,
        "segments": sorted(cells["segment"].unique().tolist()),
    }


def reserve_segment(facts: RunFacts, refitted: dict, segment: str) -> dict:
    """Ultimates, IBNR and ranges per origin for one segment (a mapped task: segments spread over workers)."""
    from include.reserving.models import load_model
    from include.reserving.publish import reserve_rows

    cells = load_cells(facts.engine(), facts.valuation_date, facts.basis)
    cells = cells[cells["segment"] == segment].reset_index(drop=True)
    if cells.empty:
        raise LookupError(f"segment {segment!r} has no cells at {facts.valuation_date}")
    model = load_model(artifacts.local_dir(refitted["artifact_uri"]))
    rows = reserve_rows(model.ultimates(cells), latest_diagonal(cells))
    uri = artifacts.join(facts.run_dir, "reserves", f"{artifacts.safe(segment)}.json")
    payload = rows.assign(origin=rows["origin"].astype(str)).to_dict(orient="records")
    artifacts.write_text(uri, json.dumps(payload, indent=1))
    log.info(
        "reserved %s at %s: IBNR %.2f over %d origins", segment, facts.valuation_date, rows["ibnr"].sum(), len(rows)
    )
    return {"segment": segment, "reserves_uri": uri, "ibnr_total": round(float(rows["ibnr"].sum()), 2)}


def publish(facts: RunFacts, refitted: dict, reserved: list[dict]) -> dict:
    """Atomically publish every segment's reserve rows as this run's version for V."""
    missing = sorted(set(refitted["segments"]) - {r["segment"] for r in reserved})
    if missing:
        raise RuntimeError(f"segments {missing} have no reserves: nothing was published")
    rows = pd.concat(
        [pd.DataFrame(json.loads(artifacts.read_text(r["reserves_uri"]))) for r in reserved], ignore_index=True
    )
    rows["origin"] = pd.to_datetime(rows["origin"]).dt.date
    rows = rows.sort_values(["segment", "origin"]).reset_index(drop=True)
    result = reserves.publish_reserves(
        facts.engine(),
        facts.valuation_date,
        facts.run_id,
        rows,
        refitted["model_version"],
        basis=facts.basis,
        approval_ref=refitted["approval_ref"],
        status=refitted["status"],
    )
    return {**result.as_xcom(), "status": refitted["status"], "model_version": refitted["model_version"]}

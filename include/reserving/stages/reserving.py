"""The reserving group: the model that reserves V, ultimates per line (mapped tasks), the analysis of change against
the previous month, one atomic publication (held when a movement is beyond the hold tolerance), and the month's
acceptance (the refitted champion recorded) once its numbers are current; the sign-off of held numbers."""

from __future__ import annotations

import json
import logging

import pandas as pd

from include.reserving import artifacts, governance, methods, movement
from include.reserving.approval import NUMBERS_SIGNOFF, decided_at
from include.reserving.cells import latest_diagonal
from include.reserving.dates import previous_month_end
from include.reserving.domain import ChampionAction, Decision, PublicationStatus
from include.reserving.presentation.instruction import SignoffInstruction
from include.reserving.stages import RunFacts
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import decisions, registry, reserves
from include.reserving.warehouse.cells import load_cells

log = logging.getLogger(__name__)


def approval_reference(engine, spec: dict) -> str | None:
    """The approval behind the champion's spec (routine refits inherit it): 'approvals.id=N (by WHO)'."""
    found = registry.approval_behind(engine, governance.spec_hash(spec))
    return None if found is None else f"approvals.id={found[0]} ({found[1]})"


def refit(facts: RunFacts) -> dict:
    """The model that reserves V: a routine refit of the champion's spec on V's data (recorded, no approval
    needed), or, while no model was ever approved, the chain-ladder fallback fitted on V's data for PRELIMINARY
    reserves (whatever became of this run's challenger: rejected, timed out, or none trained)."""
    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    champion = registry.champion(engine)
    if champion is None:
        # a candidate, never the champion: the next run's challenger still goes to approval
        model_entry = fit_and_register(engine, facts, governance.FALLBACK_SPEC, cells)
        status = PublicationStatus.PRELIMINARY.value
        log.warning(
            "no champion yet: preliminary reserves from the %s for %s (model %s)",
            governance.FALLBACK_NAME,
            facts.valuation_date,
            model_entry.model_version,
        )
    else:
        # recorded as the champion only once the month is accepted (accept_month): a held month may be rejected
        model_entry = fit_and_register(engine, facts, champion.spec, cells)
        status = PublicationStatus.APPROVED.value
    return {
        "model_version": model_entry.model_version,
        "artifact_uri": model_entry.artifact_uri,
        "status": status,
        "approval_ref": approval_reference(engine, model_entry.spec) if status == PublicationStatus.APPROVED else None,
        "segments": sorted(cells["segment"].unique().tolist()),
    }


def reserve_segment(facts: RunFacts, refitted: dict, segment: str) -> dict:
    """Every method's ultimate per origin for one segment, the model's among them, and the selected ultimate by the
    settings' rule with case reserves, IBNR, unpaid and its range (a mapped task: segments spread over workers)."""
    from include.reserving.models import load_model
    from include.reserving.publish import reserve_rows, selected_ultimates, totals

    segments = refitted["segments"]
    # mapped tasks log apart: the position says how far the month's lines are
    position = segments.index(segment) + 1 if segment in segments else "?"
    log.info("line %s of %d: %s at %s", position, len(segments), segment, facts.valuation_date)
    cells = load_cells(facts.engine(), facts.valuation_date, facts.basis)
    cells = cells[cells["segment"] == segment].reset_index(drop=True)
    if cells.empty:
        raise LookupError(f"segment {segment!r} has no cells at {facts.valuation_date}")
    model = load_model(artifacts.local_dir(refitted["artifact_uri"]))
    reserved = methods.reserve_segment(cells, facts.settings, model_ultimates=model.ultimates(cells))
    rows = reserve_rows(selected_ultimates(reserved.origins), latest_diagonal(cells))
    uri = artifacts.join(facts.run_dir, "reserves", f"{artifacts.safe(segment)}.json")
    payload = {
        "rows": rows.assign(origin=rows["origin"].astype(str)).to_dict(orient="records"),
        "summary": reserved.summary.to_dict(orient="records")[0],
    }
    artifacts.write_text(uri, json.dumps(payload, indent=1))
    sums = totals(rows)
    log.info(
        "reserved %s at %s over %d origins (%s): unpaid %.2f = case reserves %s + IBNR %s",
        segment,
        facts.valuation_date,
        len(rows),
        rows["method"].value_counts().to_dict(),
        sums["unpaid_total"],
        sums["case_reserve_total"],
        sums["ibnr_total"],
    )
    return {"segment": segment, "reserves_uri": uri, **sums}


def _reserved(refitted: dict, reserved: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every segment's reserve rows and methods summaries (written by reserve_segment); raises when a segment has
    none."""
    missing = sorted(set(refitted["segments"]) - {r["segment"] for r in reserved})
    if missing:
        raise RuntimeError(f"segments {missing} have no reserves: nothing was published")
    payloads = [json.loads(artifacts.read_text(r["reserves_uri"])) for r in reserved]
    rows = pd.concat([pd.DataFrame(p["rows"]) for p in payloads], ignore_index=True)
    rows["origin"] = pd.to_datetime(rows["origin"]).dt.date
    summary = pd.DataFrame([p["summary"] for p in payloads]).sort_values("segment").reset_index(drop=True)
    return rows.sort_values(["segment", "origin"]).reset_index(drop=True), summary


def _previous_model_views(engine, facts: RunFacts, previous_model: str, model_changed: bool):
    """The previous model's expected emergence from V-1 and, when the model changed, the rows V would publish with it
    (the selection on V's data, its ultimates as the model's).

    Either is None when it cannot be computed (e.g. the previous artifact is gone): the analysis then says so.
    """
    from include.reserving.models import load_model
    from include.reserving.publish import reserve_rows, selected_ultimates

    try:
        model = load_model(artifacts.local_dir(registry.get(engine, previous_model).artifact_uri))
    except Exception as exc:  # an unreadable artifact only costs the split, never the month
        log.warning(
            "previous model %s cannot be loaded (%s): no expected emergence, no model change", previous_model, exc
        )
        return None, None
    expected = on_current = None
    try:
        before = load_cells(engine, previous_month_end(facts.valuation_date), facts.basis)
        expected = movement.expected_emergence(model.predict(before), 1, facts.settings.development_months)
    except Exception as exc:
        log.warning("expected emergence from V-1 not available (%s): A/E not computed", exc)
    if model_changed:
        try:
            cells = load_cells(engine, facts.valuation_date, facts.basis)
            grain = facts.settings.development_months
            if set(cells["development"] % grain) != set(model.training_cells_["development"] % grain):
                # a month later every age sits elsewhere in the development period (2, 5, 8 -> 3, 6, 9 months for
                # quarters): the previous model's factors do not apply to V's ages, so its view of V is meaningless
                log.info(
                    "previous model %s was fitted on other development ages: change of model not separated",
                    previous_model,
                )
                return expected, None
            known = cells[cells["segment"].isin(set(model.training_cells_["segment"]))].reset_index(drop=True)
            # its view of V is what V would publish with it: the same selection, its ultimates in the model column
            selected = methods.reserve_book(known, facts.settings, model_ultimates=model.ultimates(known))
            on_current = reserve_rows(selected_ultimates(selected.origins), latest_diagonal(known))
        except Exception as exc:
            log.warning(
                "previous model %s cannot be applied to V's data (%s): change of model not separated",
                previous_model,
                exc,
            )
    return expected, on_current


def analyse(facts: RunFacts, refitted: dict, reserved: list[dict]) -> dict:
    """The analysis of change per line against the previous current publication at V-1 (same basis), stored for this
    run; returns the hold reasons (empty: within tolerance, or the first month)."""
    engine = facts.engine()
    rows, _ = _reserved(refitted, reserved)
    previous_v = previous_month_end(facts.valuation_date)
    previous = reserves.current_publication(engine, previous_v, facts.basis)
    if previous is None:
        aoc = movement.analysis_of_change(rows, None)
        reasons: list[str] = []
        log.info("no current %s publication at %s: first month, no movement hold", facts.basis, previous_v)
    else:
        version, previous_rows = previous
        changed = version["model_version"] != refitted["model_version"]
        expected, on_current = _previous_model_views(engine, facts, version["model_version"], changed)
        aoc = movement.analysis_of_change(rows, previous_rows, expected, on_current, model_changed=changed)
        reasons = movement.hold_reasons(aoc, facts.settings)
    if not movement.ties(aoc):
        raise RuntimeError(f"analysis of change for {facts.valuation_date} does not tie to the cent: nothing published")
    reserves.store_movements(engine, facts.valuation_date, facts.basis, facts.run_id, aoc)
    for reason in reasons:
        log.warning("hold: %s", reason)
    return {
        "valuation_date": facts.valuation_date.isoformat(),
        "previous_valuation_date": None if previous is None else previous_v.isoformat(),
        "first_month": previous is None,
        "hold_reasons": reasons,
    }


def accept_month(engine, facts: RunFacts, refitted: dict) -> None:
    """The month's numbers are current: record the refitted champion as the month's model (routine, no approval)."""
    if refitted["status"] != PublicationStatus.APPROVED:
        return  # preliminary reserves come from the fallback, never recorded as champion
    champion = registry.champion(engine)
    if champion is not None and champion.model_version != refitted["model_version"]:
        registry.set_champion(
            engine, refitted["model_version"], facts.valuation_date, ChampionAction.REFITTED, run_id=facts.run_id
        )


def publish(
    facts: RunFacts, refitted: dict, reserved: list[dict], analysis: dict, alert=None, refuse_over_later: bool = False
) -> dict:
    """Atomically publish every segment's reserve rows as this run's version for V: current (and the month accepted)
    when within tolerance, else HELD (stored, not current) with an alert naming the reasons and the sign-off.
    ``refuse_over_later``: raise RunOrderError, publishing nothing, if a later valuation became current on the basis
    since ``input.run_order`` checked (the DAG sets it unless the run is a backfill, restatement or intended re-run)."""
    engine = facts.engine()
    from include.reserving.publish import range_rows

    rows, summary = _reserved(refitted, reserved)
    held = bool(analysis["hold_reasons"])
    result = reserves.publish_reserves(
        engine,
        facts.valuation_date,
        facts.run_id,
        rows,
        refitted["model_version"],
        basis=facts.basis,
        approval_ref=refitted["approval_ref"],
        status=PublicationStatus.HELD.value if held else refitted["status"],
        ranges=range_rows(summary, rows, facts.settings),
        refuse_over_later=refuse_over_later,
    )
    out = {
        **result.as_xcom(),
        "status": PublicationStatus.HELD.value if held else refitted["status"],
        "accepted_status": refitted["status"],  # the status it takes once signed off
        "model_version": refitted["model_version"],
        "held": held,
    }
    if not held:
        accept_month(engine, facts, refitted)
        return out
    # the sign-off must quote this code, issued now: a value written before the hold never signs it off
    issued = decisions.issue(engine, decisions.NUMBERS, facts.valuation_date, result.version, facts.run_id)
    out["signoff_code"] = issued.code
    message = (
        f"Reserves for {facts.valuation_date} are HELD as version {result.version} (not current) for sign-off: "
        + "; ".join(analysis["hold_reasons"])
        + ". "
        + SignoffInstruction(facts.valuation_date, result.version, issued.code).text
    )
    log.warning(message)
    if alert is not None:
        alert(message)
    return out


def apply_signoff(facts: RunFacts, published: dict, outcome: dict, alert=None) -> dict:
    """Record the sign-off of the held version (or its timeout) once; on approval make it current and accept the
    month, otherwise it stays held and the previous current version stays."""
    engine = facts.engine()
    version = int(published["version"])
    signoff_id, decision = reserves.record_signoff(
        engine,
        facts.valuation_date,
        facts.basis,
        version,
        outcome.get("decision", Decision.TIMEOUT),
        decided_by=outcome.get("by"),
        comment=outcome.get("comment"),
        run_id=facts.run_id,
        decided_at=decided_at(outcome),
    )
    if decision == Decision.APPROVE:
        reserves.make_current(engine, facts.valuation_date, version, published["accepted_status"])
        accept_month(
            engine, facts, {"model_version": published["model_version"], "status": published["accepted_status"]}
        )
        message = (
            f"Reserves for {facts.valuation_date} version {version} signed off by {outcome.get('by')}: now current"
        )
    elif decision == Decision.REJECT:
        message = (
            f"Reserves for {facts.valuation_date} version {version} rejected by {outcome.get('by')}: they stay held, "
            "the previous current version and the champion are unchanged"
        )
    else:
        message = (
            f"Sign-off of reserves for {facts.valuation_date} version {version} timed out: they stay held, the "
            "previous current version and the champion are unchanged. To decide later, run the month again: it "
            "publishes a new "
            f"version to sign off through Variable {NUMBERS_SIGNOFF.key(facts.valuation_date)}."
        )
    log.info(message)
    if alert is not None:
        alert(message)
    return {"decision": str(decision), "version": version, "signoff_id": signoff_id, "message": message}

"""The reserving group: the model that reserves each line at V (its champion's refit), ultimates per line (mapped
tasks), the analysis of change against the previous month, one atomic publication (held when a movement is beyond
the hold tolerance), and the month's acceptance (each line's refitted champion recorded) once its numbers are
current; the sign-off of held numbers."""

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
from include.reserving.warehouse.cells import load_cells, segment_definition, segment_definition_at

log = logging.getLogger(__name__)


def approval_reference(engine, spec: dict, segment: str) -> str | None:
    """The approval behind a line's champion's spec (routine refits inherit it): 'approvals.id=N (by WHO)'."""
    found = registry.approval_behind(engine, governance.spec_hash(spec), segment)
    return None if found is None else f"approvals.id={found[0]} ({found[1]})"


def publication_model(lines: dict[str, dict]) -> str:
    """What a publication's version row names as its model: the one model that reserved every line, else how many
    (each row names its line's model)."""
    versions = sorted({line["model_version"] for line in lines.values()})
    return versions[0] if len(versions) == 1 else f"per line: {len(versions)} models"


def refit(facts: RunFacts) -> dict:
    """The models that reserve V, per line: a routine refit of the line's champion's spec on V's data (recorded, no
    approval needed), or, on a line whose model was never approved, the chain-ladder fallback fitted on V's data for
    PRELIMINARY reserves (whatever became of this run's challenger: rejected, timed out, or none trained). A spec
    that several lines share is fitted once; the publication is preliminary when any line is."""
    engine = facts.engine()
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    champions = registry.champions(engine)
    fitted: dict[str, object] = {}
    lines: dict[str, dict] = {}
    for segment in sorted(cells["segment"].unique().tolist()):
        champion = champions.get(segment)
        spec = champion.spec if champion is not None else governance.FALLBACK_SPEC
        key = governance.spec_hash(spec)
        if key not in fitted:
            # a fallback fit is a candidate, never the champion: the next run's challenger still goes to approval;
            # a champion's refit is recorded as the line's champion only once the month is accepted (accept_month)
            fitted[key] = fit_and_register(engine, facts, spec, cells)
        entry = fitted[key]
        if champion is None:
            log.warning(
                "%s has no champion yet: preliminary reserves from the %s for %s (model %s)",
                segment,
                governance.FALLBACK_NAME,
                facts.valuation_date,
                entry.model_version,
            )
        lines[segment] = {
            "model_version": entry.model_version,
            "artifact_uri": entry.artifact_uri,
            "status": (PublicationStatus.APPROVED if champion else PublicationStatus.PRELIMINARY).value,
            "approval_ref": approval_reference(engine, spec, segment) if champion else None,
        }
    approved = all(line["status"] == PublicationStatus.APPROVED for line in lines.values())
    return {
        "lines": lines,
        "model_version": publication_model(lines),
        "status": (PublicationStatus.APPROVED if approved else PublicationStatus.PRELIMINARY).value,
        "segments": sorted(lines),
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
    model = load_model(artifacts.local_dir(refitted["lines"][segment]["artifact_uri"]))
    reserved = methods.reserve_segment(
        cells, facts.settings, model_ultimates=model.ultimates(cells), model_tail_included=model.includes_tail()
    )
    rows = reserve_rows(selected_ultimates(reserved.origins), latest_diagonal(cells))
    uri = artifacts.join(facts.run_dir, "reserves", f"{artifacts.safe(segment)}.json")
    payload = {
        "rows": rows.assign(origin=rows["origin"].astype(str)).to_dict(orient="records"),
        "summary": reserved.summary.to_dict(orient="records")[0],
    }
    artifacts.write_text(uri, json.dumps(payload, indent=1))
    sums = totals(rows)
    log.info(
        "reserved %s at %s with model %s over %d origins (%s): unpaid %.2f = case reserves %s + IBNR %s",
        segment,
        facts.valuation_date,
        refitted["lines"][segment]["model_version"],
        len(rows),
        rows["method"].value_counts().to_dict(),
        sums["unpaid_total"],
        sums["case_reserve_total"],
        sums["ibnr_total"],
    )
    return {"segment": segment, "reserves_uri": uri, **sums}


def _reserved(refitted: dict, reserved: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every segment's reserve rows (each naming its line's model and the approval behind it) and methods summaries
    (written by reserve_segment); raises when a segment has none."""
    missing = sorted(set(refitted["segments"]) - {r["segment"] for r in reserved})
    if missing:
        raise RuntimeError(f"segments {missing} have no reserves: nothing was published")
    payloads = [json.loads(artifacts.read_text(r["reserves_uri"])) for r in reserved]
    rows = pd.concat([pd.DataFrame(p["rows"]) for p in payloads], ignore_index=True)
    rows["origin"] = pd.to_datetime(rows["origin"]).dt.date
    for column in ("model_version", "approval_ref"):
        rows[column] = rows["segment"].map({s: line[column] for s, line in refitted["lines"].items()})
    summary = pd.DataFrame([p["summary"] for p in payloads]).sort_values("segment").reset_index(drop=True)
    return rows.sort_values(["segment", "origin"]).reset_index(drop=True), summary


def _previous_model_views(
    engine, facts: RunFacts, previous_model: str, lines: set[str], changed: set[str], published: pd.DataFrame
):
    """On the ``lines`` the previous model reserved at V-1: the expected emergence of the reserve ``published`` at V-1
    on its pattern and, on the ``changed``
    ones (another model reserves them at V), the rows V would publish with it (the selection on V's data, its
    ultimates as the model's).

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
        expected = movement.expected_emergence(model.predict(before), published, 1, facts.settings.development_months)
        expected = expected[expected["segment"].isin(lines)]
    except Exception as exc:
        log.warning("expected emergence from V-1 not available (%s): A/E not computed", exc)
    if changed:
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
            seen = changed & set(model.training_cells_["segment"])
            known = cells[cells["segment"].isin(seen)].reset_index(drop=True)
            # its view of V is what V would publish with it: the same selection, its ultimates in the model column
            selected = methods.reserve_book(
                known, facts.settings, model_ultimates=model.ultimates(known), model_tail_included=model.includes_tail()
            )
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
    run; the change of model per line (a line reserved by another model than at V-1). Returns the hold reasons
    (empty: within tolerance, or the first month)."""
    engine = facts.engine()
    rows, _ = _reserved(refitted, reserved)
    previous_v = previous_month_end(facts.valuation_date)
    previous = reserves.current_publication(engine, previous_v, facts.basis)
    before = segment_definition_at(engine, previous_v, facts.basis) if previous is not None else None
    now = segment_definition(facts.settings.segment_by)
    if previous is not None and before is not None and before != now:
        # other segments: no line-for-line comparison, so the first month of the new segmentation (never held)
        note = (
            f"the publication at V-1 is cut into segments by {before}, this one by {now} (setting segment_by): "
            "no movement to analyse (first month of these segments)"
        )
        aoc = movement.analysis_of_change(rows, None, no_previous_note=note)
        reasons: list[str] = []
        log.warning("%s: not held", note)
        previous = None
    elif previous is None:
        aoc = movement.analysis_of_change(rows, None)
        reasons = []
        log.info("no current %s publication at %s: first month, no movement hold", facts.basis, previous_v)
    else:
        _, previous_rows = previous
        before = previous_rows.groupby("segment")["model_version"].first().to_dict()
        now = {segment: line["model_version"] for segment, line in refitted["lines"].items()}
        changed = {s for s in now if s in before and before[s] != now[s]}
        expected, on_current = [], []
        for model in sorted(set(before.values())):
            its_lines = {s for s, m in before.items() if m == model}
            views = _previous_model_views(engine, facts, model, its_lines, changed & its_lines, previous_rows)
            expected.append(views[0])
            on_current.append(views[1])
        aoc = movement.analysis_of_change(
            rows, previous_rows, _concat(expected), _concat(on_current), model_changed=changed
        )
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


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    """The frames that could be computed, together; None when none could."""
    found = [f for f in frames if f is not None]
    return pd.concat(found, ignore_index=True) if found else None


def accept_month(engine, facts: RunFacts, lines: dict[str, dict]) -> None:
    """The month's numbers are current: each approved line's refitted champion recorded as its champion (routine, no
    approval); a line reserved by the fallback is never recorded as champion."""
    champions = registry.champions(engine)
    refitted: dict[str, list[str]] = {}
    for segment, line in sorted(lines.items()):
        champion = champions.get(segment)
        if line["status"] == PublicationStatus.APPROVED and champion is not None:
            if champion.model_version != line["model_version"]:
                refitted.setdefault(line["model_version"], []).append(segment)
    for version, segments in sorted(refitted.items()):
        registry.set_champion(
            engine, version, facts.valuation_date, ChampionAction.REFITTED, segments, run_id=facts.run_id
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
    refs = sorted({f"{s}: {line['approval_ref']}" for s, line in refitted["lines"].items() if line["approval_ref"]})
    result = reserves.publish_reserves(
        engine,
        facts.valuation_date,
        facts.run_id,
        rows,
        refitted["model_version"],
        basis=facts.basis,
        approval_ref="; ".join(refs)[:250] or None,  # each row carries its own line's
        status=PublicationStatus.HELD.value if held else refitted["status"],
        ranges=range_rows(summary, rows, facts.settings),
        refuse_over_later=refuse_over_later,
    )
    out = {
        **result.as_xcom(),
        "status": PublicationStatus.HELD.value if held else refitted["status"],
        "accepted_status": refitted["status"],  # the status it takes once signed off
        "model_version": refitted["model_version"],
        "models": {segment: line["model_version"] for segment, line in refitted["lines"].items()},
        "lines": refitted["lines"],
        "held": held,
    }
    if not held:
        accept_month(engine, facts, refitted["lines"])
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


def apply_signoff(facts: RunFacts, published: dict, outcome: dict, alert=None, refuse_over_later: bool = False) -> dict:
    """Record the sign-off of the held version (or its timeout) once; on approval make it current and accept the
    month, otherwise it stays held and the previous current version stays.

    ``refuse_over_later`` (the DAG sets it unless the run is a backfill, restatement or intended re-run): a version
    signed off after a later valuation became current on the basis is not made current, as it would not have been
    published current (the run-order rule): its sign-off is recorded and it stays on record, held; the month is not
    accepted; the message says how to make it current."""
    from include.reserving.run_order import RERUN_PARAM, RunOrderError

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
    current = False
    if decision == Decision.APPROVE:
        try:
            reserves.make_current(
                engine,
                facts.valuation_date,
                version,
                published["accepted_status"],
                basis=facts.basis,
                refuse_over_later=refuse_over_later,
            )
        except RunOrderError as refused:
            v = facts.valuation_date
            message = (
                f"Reserves for {v} version {version} signed off by {outcome.get('by')}, but NOT made current: "
                f"{refused}. An earlier month's numbers do not become current after a later month's. They stay on "
                f"record, held, with this sign-off; the current numbers are unchanged. To make them current, run "
                f"{v} again as a backfill (airflow backfill create ... --from-date {v:%Y-%m-01} --to-date {v}), a "
                f"restatement (param restated) or with the param {RERUN_PARAM}=true, and sign off the version it "
                "publishes"
            )
        else:
            current = True
            accept_month(engine, facts, published["lines"])
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
    # signed off but not current: the actuary's numbers did not take effect, which the operator must see
    (log.warning if decision == Decision.APPROVE and not current else log.info)(message)
    if alert is not None:
        alert(message)
    return {
        "decision": str(decision),
        "version": version,
        "signoff_id": signoff_id,
        "current": current,
        "message": message,
    }

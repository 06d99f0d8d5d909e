"""The input group: check the source tables against the data contract, refuse a month the run may not value (a
stale book, a later valuation already current), reconcile the month to the finance control totals, ingest the book
as at V, validate it (the quality gate), measure drift and decide on retraining."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
from sqlalchemy.engine import Engine

from include.reserving import artifacts, governance
from include.reserving import drift as drift_stats
from include.reserving.config import claims_source_url, warehouse_url
from include.reserving.dates import previous_month_end
from include.reserving.domain import Basis
from include.reserving.governance import ModelEntry
from include.reserving.ingest import ingest as ingest_book
from include.reserving.sourcemap import SourceMapping
from include.reserving.stages import RunFacts
from include.reserving.warehouse import cells as cells_store
from include.reserving.warehouse import drift as drift_store
from include.reserving.warehouse import quality as quality_store
from include.reserving.warehouse import registry
from include.reserving.warehouse.core import is_postgres, make_engine, redact

log = logging.getLogger(__name__)


def _source(facts: RunFacts) -> tuple[Engine | None, SourceMapping]:
    """The claims system's engine when it is not the warehouse's own contract tables (another connection, or a
    mapping to other names); None when the warehouse holds the contract tables itself."""
    mapping = SourceMapping.parse(facts.settings.source_mapping)
    url = claims_source_url(facts.settings)
    if url == warehouse_url(facts.settings) and mapping.identity:
        return None, mapping
    return make_engine(url), mapping


def contract(facts: RunFacts) -> dict:
    """The source tables against the data contract: raises ContractViolation naming every breach, before any read.
    With a claims system of its own (``claims_source``, ``source_mapping``) that is what is checked, by its names."""
    from include.reserving import contract as data_contract
    from include.reserving.warehouse import source

    engine, mapping = _source(facts)
    engine = engine or facts.engine()
    found = source.describe(engine, mapping)
    # PostgreSQL enforces declared types; SQLite stores anything anywhere, so its values are checked instead
    breaches, readable = data_contract.structure_breaches(found, check_declared_types=is_postgres(engine))
    values = source.value_breaches(engine, readable, mapping, segment_by=facts.settings.segment_by)
    malformed = {(b.table, b.column) for b in values if b.rule == "values"}
    clean = {(name, col) for name, cols in readable.items() for col in cols} - malformed
    breaches = breaches + values + source.key_breaches(engine, readable, clean, mapping)
    report = data_contract.ContractReport(
        breaches=[mapping.annotate(b) for b in breaches],
        tables_checked=[mapping.source_table(name) for name in sorted(readable)],
    )
    log.info("%s", report.summary())
    data_contract.raise_for_breaches(report)
    return {"tables": sorted(readable), "violations": 0}


def land(facts: RunFacts) -> dict:
    """The claims system's new rows copied into the warehouse's contract tables (nothing to do when the warehouse
    holds them itself)."""
    from include.reserving.warehouse.landing import land as land_rows

    engine, mapping = _source(facts)
    if engine is None:
        log.info(
            "the warehouse holds the contract tables itself (no %s connection, no source_mapping): nothing to land",
            facts.settings.claims_source_conn_id,
        )
        return {"landed": False}
    for line in mapping.describe():
        log.info("source mapping: %s", line)
    result = land_rows(engine, facts.engine(), mapping, facts.valuation_date, restated=facts.basis == Basis.RESTATED)
    log.info("%s from %s", result.summary(), redact(claims_source_url(facts.settings)))
    return {"landed": True, "transactions": result.transactions, "claims": result.claims}


def run_order(facts: RunFacts, exemption: str | None = None) -> dict:
    """May this run value V? Raises RunOrderError when the book shows no activity in V's month (the plausibility
    check ``extract_stalled``, or no earned exposure for the month: the extract ends before V) or when a later
    valuation is current on the basis, unless ``exemption`` (:func:`include.reserving.run_order.exemption`) says
    why the run may. Runs before anything is ingested, so a refused run costs seconds."""
    from include.reserving import plausibility
    from include.reserving import run_order as rules
    from include.reserving.dates import month_index
    from include.reserving.warehouse import history, reserves

    engine = facts.engine()
    later = reserves.later_current_valuation(engine, facts.valuation_date, facts.basis)
    if exemption is None:
        refusal = rules.later_valuation_refusal(facts.valuation_date, facts.basis, later)
        if refusal:
            raise rules.RunOrderError(refusal)
    elif later is not None:
        log.warning("%s is current after %s: this run publishes anyway as %s", later, facts.valuation_date, exemption)
    arrivals = history.month_arrivals(engine, facts.valuation_date, facts.basis)
    stall = plausibility.stall_check(
        arrivals, month_index(facts.valuation_date), facts.valuation_date, facts.settings.plausibility_stall_days
    )
    found = arrivals.iloc[0]
    last_exposure = None if pd.isna(found["last_exposure"]) else f"{pd.Timestamp(found['last_exposure']):%Y-%m}"
    # a book in run-off earns no premium any more: there, a month without exposure is no sign of a stale extract
    ended = None if facts.settings.book_in_run_off else rules.book_ends_before(found["exposure_rows"], last_exposure)
    why = "; ".join(filter(None, [stall.explain() if stall.passed is False else None, ended]))
    if why:
        raise rules.RunOrderError(rules.stale_book_refusal(facts.valuation_date, facts.basis, why))
    log.info(
        "run order for %s (%s): %s; %d earned_exposure rows for the month",
        facts.valuation_date,
        facts.basis,
        stall.detail,
        found["exposure_rows"],
    )
    return {
        "later_current": later.isoformat() if later else None,
        "exemption": exemption,
        "month_rows": int(found["rows"]),
        "exposure_rows": int(found["exposure_rows"]),
    }


def reconcile(facts: RunFacts) -> dict:
    """The month's extract against the finance control totals: raises ReconciliationError naming each line that
    does not reconcile; without control totals for the month, passes with a stored note."""
    from include.reserving import reconciliation
    from include.reserving.warehouse import reconciliation as store

    engine = facts.engine()
    month = facts.valuation_date.replace(day=1)
    control = store.control_totals(engine, month)
    if control is None or control.empty:
        outcome = reconciliation.not_available(facts.valuation_date, table_exists=control is not None)
    else:
        extract = store.extract_totals(engine, facts.valuation_date)
        outcome = reconciliation.reconcile(
            facts.valuation_date,
            extract,
            control,
            abs_tolerance=facts.settings.reconciliation_abs_tolerance,
            rel_tolerance=facts.settings.reconciliation_rel_tolerance,
        )
    store.store_results(engine, facts.valuation_date, facts.basis, facts.run_id, outcome.rows)
    log.info("%s", outcome.summary())
    reconciliation.raise_for_failures(outcome)
    return {"available": outcome.available, "lines": outcome.lines, "passed": outcome.success}


def ingest(facts: RunFacts) -> dict:
    """Snapshot the book as at V into triangle cells and claim features (replaces V's partition)."""
    result = ingest_book(
        facts.engine(),
        facts.valuation_date,
        basis=facts.basis,
        origin_months=facts.settings.origin_months,
        development_months=facts.settings.development_months,
        run_id=facts.run_id,
        incremental=facts.settings.incremental_ingest,
        segment_by=facts.settings.segment_by,
    )
    return result.as_xcom()


def validate(facts: RunFacts, alert=None, reingest: bool = False) -> dict:
    """The Great Expectations gate: raises QualityGateError (naming every failed check) on bad data.

    ``reingest``: take V's snapshot again first. The gate judges the snapshot ``ingest`` wrote, so a ``validate``
    cleared on its own after the source was fixed must re-read the source, or it would judge the old rows again.
    """
    from include.reserving.quality.report import raise_for_failures
    from include.reserving.quality.runner import previous_gate, run_quality_gate

    if reingest:
        log.info("validate runs again: taking V's snapshot again from the source tables first")
        ingest(facts)
    engine = facts.engine()
    report = run_quality_gate(
        warehouse_url(facts.settings),
        facts.valuation_date,
        facts.basis,
        facts.settings,
        artifacts.join(facts.run_dir, "quality"),
        previous=previous_gate(engine, facts.valuation_date, facts.basis),
        run_id=facts.run_id,
    )
    quality_store.store_results(engine, report)
    raise_for_failures(report, alert=alert)
    return {"checks": len(report.checks), "row_count": report.row_count, "artifact_uri": report.artifact_uri}


def plausibility(facts: RunFacts) -> dict:
    """Month-level plausibility per line of business, stored; raises PlausibilityError listing every failed check."""
    from include.reserving import plausibility as checks_module
    from include.reserving.warehouse import history
    from include.reserving.warehouse import plausibility as plausibility_store

    engine = facts.engine()
    txn, claims, exposure = plausibility_aggregates(engine, facts.valuation_date, facts.basis, facts.settings)
    known = history.ingested_lines(engine, previous_month_end(facts.valuation_date), facts.basis)
    checks = checks_module.evaluate(txn, claims, exposure, facts.valuation_date, facts.settings, known_lines=known)
    plausibility_store.store_results(engine, facts.valuation_date, facts.basis, checks, run_id=facts.run_id)
    log.info("%s", checks_module.summary(checks, facts.valuation_date, facts.basis))
    checks_module.raise_for_failures(checks, facts.valuation_date, facts.basis)
    return {"checks": len(checks), "skipped": sum(c.passed is None for c in checks)}


def plausibility_aggregates(
    engine: Engine, valuation_date: dt.date, basis: str, settings
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Plausibility's monthly aggregates of V (``warehouse.history.monthly_aggregates``), stored for the next month.

    When the months before V's are as the previous month end P aggregated them (:func:`aggregates_full_because`),
    they are P's stored ones plus V's month: the same frames for a read of one month instead of the history window.
    Otherwise the full path; the log says which path ran and why.
    """
    from include.reserving.dates import month_index
    from include.reserving.warehouse import history

    median_months = settings.plausibility_history_months + 1
    previous = previous_month_end(valuation_date)
    stored = history.stored_aggregates(engine, previous, basis)
    full_because = aggregates_full_because(engine, valuation_date, basis, settings, stored)
    if full_because:
        log.info("plausibility aggregates V=%s basis=%s: full path (%s)", valuation_date, basis, full_because)
        txn, claims, exposure = history.monthly_aggregates(engine, valuation_date, basis, median_months=median_months)
    else:
        log.info(
            "plausibility aggregates V=%s basis=%s: incremental path (%s's months as stored, plus the month of V)",
            valuation_date,
            basis,
            previous,
        )
        txn, claims, exposure = history.aggregates_since(engine, valuation_date, basis, stored[:2], median_months)
    history.store_aggregates(engine, valuation_date, basis, txn, claims, month_index(valuation_date) - median_months)
    return txn, claims, exposure


def aggregates_full_because(engine: Engine, valuation_date: dt.date, basis: str, settings, stored) -> str | None:
    """Why plausibility must aggregate V's history window in full (a sentence for the log), or None when the months
    before V's may be taken from the previous month end P's stored aggregates (``stored``).

    The ingest's premise (:func:`include.reserving.ingest.incremental_premise`: the book as recorded, P ingested and
    gated clean, P's rows and claims still in the source) makes every month before V's as P saw it, but for rows P
    recorded that joined the extract since (dated after P, or on a claim reported after P): they count in the month
    they were recorded in, so while there are any, the full path runs.
    """
    from include.reserving.dates import month_index
    from include.reserving.ingest import incremental_premise
    from include.reserving.quality.suite import ROW_COUNT_CHECK
    from include.reserving.warehouse import history

    previous = previous_month_end(valuation_date)
    if not settings.incremental_ingest:
        return "incremental ingest is switched off (setting incremental_ingest)"
    why = incremental_premise(basis, cells_store.previous_ingest(engine, previous, basis, ROW_COUNT_CHECK))
    if why:
        return why
    if stored is None:
        return f"{previous} has no stored plausibility aggregates on basis {basis}"
    needed = month_index(valuation_date) - settings.plausibility_history_months - 1
    if stored[2] > needed:
        return (
            f"{previous}'s stored aggregates start at month {stored[2]}, V's window at {needed} "
            "(plausibility_history_months grew)"
        )
    joined = history.rows_joining_before(engine, previous, valuation_date)
    if joined:
        return (
            f"{joined} rows recorded by {previous} joined the extract since (dated after it, or on claims reported "
            "since): they change months before V's"
        )
    return None


def actual_vs_expected_breach(cells: pd.DataFrame, champions: dict[str, ModelEntry], tolerance: float):
    """Concept-drift hook: actual vs expected paid on the newest diagonal per segment, each line from its champion's
    spec (a spec shared by several lines computed once)."""
    from include.reserving.backtest import actual_vs_expected

    by_spec: dict[str, list[str]] = {}
    specs = {}
    for segment, champion in champions.items():
        key = governance.spec_hash(champion.spec)
        by_spec.setdefault(key, []).append(segment)
        specs[key] = champion.spec
    frames = [
        actual_vs_expected(cells, specs[key]).query("segment in @lines") for key, lines in sorted(by_spec.items())
    ]
    ave = pd.concat(frames, ignore_index=True).sort_values("segment").reset_index(drop=True)
    breaches = ave[(ave["ratio"] - 1).abs() > tolerance]
    detail = ", ".join(f"{r.segment} A/E {r.ratio:.3f}" for r in breaches.itertuples())
    return (not breaches.empty), detail, ave


def drift_report_at(
    engine: Engine,
    valuation_date: dt.date,
    basis: str,
    psi_threshold: float,
    min_sample: int,
    reference: drift_stats.Window | None = None,
) -> drift_stats.DriftReport:
    """The drift report of V from the snapshot's claims in the windows it compares."""
    reference = reference or drift_stats.reference_window(valuation_date)
    columns = [column for _, column, _, _ in drift_stats.FEATURES]
    windows = drift_stats.windows_to_read(valuation_date, reference)
    claims = cells_store.claim_features(engine, valuation_date, basis, columns, windows)
    return drift_stats.drift_report(claims, valuation_date, basis, psi_threshold, min_sample, reference)


def drift(facts: RunFacts, force_retrain: bool = False) -> dict:
    """PSI/KS per feature against the champions' reference window (the oldest champion's training data), stored; the
    retraining decision: also when a line has no champion yet."""
    engine = facts.engine()
    champions = registry.champions(engine)
    trained = min((c.trained_valuation_date for c in champions.values()), default=None)
    reference = drift_stats.reference_window(facts.valuation_date, trained)
    report = drift_report_at(
        engine,
        facts.valuation_date,
        facts.basis,
        facts.settings.psi_threshold,
        facts.settings.drift_min_sample,
        reference,
    )
    drift_store.store_drift_metrics(engine, report, run_id=facts.run_id)
    ave_breach, ave_detail, unchampioned = None, None, []
    if champions:
        cells = cells_store.load_cells(engine, facts.valuation_date, facts.basis)
        segments = set(cells["segment"])
        # champions of segments V does not have (another segment_by) reserve nothing here
        current = {s: champion for s, champion in champions.items() if s in segments}
        if current:
            ave_breach, ave_detail, _ = actual_vs_expected_breach(cells, current, facts.settings.ave_tolerance)
        unchampioned = sorted(segments - set(champions))
    decision = drift_stats.decide_retrain(
        report, facts.settings.psi_threshold, force_retrain=force_retrain, ave_breach=ave_breach, ave_detail=ave_detail
    )
    reasons = list(decision.reasons)
    retrain = decision.retrain
    if not champions:
        retrain = True
        reasons.append("no champion yet: the first model must be trained")
    elif unchampioned:  # a new line of business
        retrain = True
        reasons.append(f"no champion yet on {', '.join(unchampioned)}: a first model for it must be trained")
    log.info("drift decision for %s: %s", facts.valuation_date, "; ".join(reasons))
    return {"retrain": retrain, "reasons": reasons}

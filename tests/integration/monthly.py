"""A month end run the way the DAG's tasks run it, for scenario tests that need many months and no scheduler."""

from __future__ import annotations

import json

import pandas as pd

from include.reserving.domain import PublicationStatus
from include.reserving.stages import RunFacts, governance, input, reserving, training


def run_month(facts: RunFacts) -> dict:
    """The month's tasks in DAG order, without training: a challenger needs an approval before it reserves
    anything, so the champion's refit is what publishes."""
    input.contract(facts)
    input.land(facts)
    input.run_order(facts)
    input.reconcile(facts)
    input.ingest(facts)
    input.validate(facts)
    input.plausibility(facts)
    input.drift(facts)
    refitted = reserving.refit(facts)
    reserved = [reserving.reserve_segment(facts, refitted, segment) for segment in refitted["segments"]]
    analysis = reserving.analyse(facts, refitted, reserved)
    return {**reserving.publish(facts, refitted, reserved, analysis), "hold_reasons": analysis["hold_reasons"]}


def publish_first_month(facts: RunFacts) -> dict:
    """The first month: train, approve the first model on every line, publish approved.

    The first model is the search's best spec over all lines, champion of every line: these scenarios are about the
    data checks and holds month after month, and a champion per line picked by the search (test_monthly_sequence.py
    and test_dag_run.py run that) would make their books' holds depend on the selection.
    """
    from include.reserving.backtest import ranked
    from include.reserving.domain import OVERALL
    from include.reserving.governance import decide_promotion, evaluation
    from include.reserving.stages.training import fit_and_register
    from include.reserving.warehouse.cells import load_cells

    input.contract(facts)
    input.land(facts)
    input.ingest(facts)
    input.validate(facts)
    searched = pd.DataFrame(training.train(facts)["search"])
    best = json.loads(ranked(searched, OVERALL)["spec"].iloc[0])
    cells = load_cells(facts.engine(), facts.valuation_date, facts.basis)
    version = fit_and_register(facts.engine(), facts, best, cells).model_version
    lines = sorted(cells["segment"].unique())
    first = [decide_promotion(facts.valuation_date, None, None, version, None, 0.0, segment=line) for line in lines]
    governance.apply_approval(
        facts,
        evaluation(facts.valuation_date, first, 0.0),
        {"decision": "approve", "by": "Scenario", "comment": "first model"},
    )
    published = run_month(facts)
    assert published["status"] == PublicationStatus.APPROVED, published
    return published

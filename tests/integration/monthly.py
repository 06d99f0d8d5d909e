"""A month end run the way the DAG's tasks run it, for scenario tests that need many months and no scheduler."""

from __future__ import annotations

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
    """The first month: train, approve the first model, publish approved."""
    input.contract(facts)
    input.land(facts)
    input.ingest(facts)
    input.validate(facts)
    evaluation = training.evaluate(facts, training.train(facts))
    governance.apply_approval(facts, evaluation, {"decision": "approve", "by": "Scenario", "comment": "first model"})
    published = run_month(facts)
    assert published["status"] == PublicationStatus.APPROVED, published
    return published

"""Twelve consecutive months on a synthetic book with covariate drift from month 6.

Each month runs the stage functions the DAG's tasks call, in DAG order (the sensor's outcome is given directly:
its own behaviour is covered by test_approval_sensor.py). The actuary's policy: approve the first model, reject the
challenger of the drift month, approve any later one. The test then checks that the registry, the approvals table,
the champion history and the publications record exactly what the rule and those approvals imply.
"""

from __future__ import annotations

import datetime as dt

import pytest

from devtools.synth import BookSpec, CovariateDrift, write_book
from include.reserving import schema
from include.reserving.dates import month_end
from include.reserving.stages import RunFacts, governance, input, reserving, training
from include.reserving.warehouse import registry
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import versions
from tests.integration.conftest import CHEAP_SEARCH

pytestmark = pytest.mark.slow

MONTHS = [month_end(2024 * 12 + i) for i in range(12)]  # 2024-01-31 .. 2024-12-31
DRIFT_MONTH = 6  # 2024-06-30: claims with accidents from June 2024 are younger and more often bodily injury
BOOK = BookSpec(
    claims=40_000,
    start="2019-01",
    end="2024-12",
    seed=23,
    covariate_drift=CovariateDrift(start="2024-06", younger_by=15.0, bi_shift=0.3),
)


def _policy(month: int) -> str:
    return "reject" if month == DRIFT_MONTH else "approve"


def _run_month(month: int, valuation_date: dt.date) -> dict:
    facts = RunFacts.create(valuation_date, f"sequence__{valuation_date}")
    input.ingest(facts)
    drift = input.drift(facts)
    record = {"month": month, "retrain": drift["retrain"], "reasons": drift["reasons"], "decision": None}
    if drift["retrain"]:
        evaluation = training.evaluate(facts, training.train(facts))
        record["decision"] = evaluation["decision"]
        record["promote"] = evaluation["promote"]  # the lines on the card and their challengers
        if evaluation["decision"] == "promote":
            outcome = {"decision": _policy(month), "by": f"Actuary {month}", "comment": "sequence test"}
            record["approval"] = governance.apply_approval(facts, evaluation, outcome)["decision"]
    refit = reserving.refit(facts)
    reserved = [reserving.reserve_segment(facts, refit, segment) for segment in refit["segments"]]
    analysis = reserving.analyse(facts, refit, reserved)
    record["hold_reasons"] = analysis["hold_reasons"]
    record["published"] = reserving.publish(facts, refit, reserved, analysis)
    return record


def test_twelve_months_record_exactly_what_the_rule_and_the_approvals_imply(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    schema.create_all(make_engine(url))
    write_book(url, BOOK, progress=False)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    for name, value in CHEAP_SEARCH.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(url)

    records = [_run_month(month, v) for month, v in enumerate(MONTHS, start=1)]

    def psi_alarm(record):
        return any(reason.startswith("PSI of") for reason in record["reasons"])

    # month 1 has no champion: trains, the rule asks for approval, approved
    assert records[0]["retrain"] and records[0]["decision"] == "promote" and records[0]["approval"] == "approve"
    # no false PSI alarm before the drift; the drift month raises one
    assert [m["month"] for m in records if psi_alarm(m)][:1] == [DRIFT_MONTH]
    assert not any(psi_alarm(m) for m in records[: DRIFT_MONTH - 1])

    # the first month puts every line on the card (no champion anywhere yet)
    lines = sorted(registry.champions(engine))
    assert sorted(records[0]["promote"]) == lines and len(lines) > 1
    # approvals: exactly one row per line sent to approval, with the policy's outcome, nothing else
    approvals = registry.approvals(engine)
    expected = [
        (line, version, _policy(m["month"]))
        for m in records
        if m["decision"] == "promote"
        for line, version in sorted(m["promote"].items())
    ]
    assert list(zip(approvals.segment, approvals.model_version, approvals.decision, strict=True)) == expected
    # promotions in the history: exactly the approved lines, in order
    history = registry.champion_history(engine)
    promoted = history[history.action == "promoted"]
    assert list(zip(promoted.segment, promoted.model_version, strict=True)) == [
        (line, version) for line, version, decision in expected if decision == "approve"
    ]
    # a rejected challenger never became the champion of the line it was rejected on (the same fitted model may be
    # another line's champion refitted: version ids are spec and data); no line's champion moved to another spec
    # without an approval
    for line, challenger, decision in expected:
        if decision == "reject":
            assert challenger not in history[history.segment == line].model_version.tolist(), (line, challenger)
            elsewhere = challenger in history.model_version.tolist()  # another line's refit, same spec and data
            expected_status = ("champion", "retired") if elsewhere else ("rejected",)
            assert registry.get(engine, challenger).status in expected_status, (line, challenger)
    for line in lines:
        own = history[history.segment == line].model_version.tolist()
        spec_changes = [
            (a, b)
            for a, b in zip(own[:-1], own[1:], strict=True)
            if registry.get(engine, a).spec != registry.get(engine, b).spec
        ]
        assert len(spec_changes) == (promoted.segment == line).sum() - 1, line
    # the clean months (drift included) move within the hold tolerances: nothing waits for a sign-off
    assert [(r["month"], r["hold_reasons"]) for r in records if r["hold_reasons"]] == []
    # every month published exactly one current version, each by that month's champion
    for record, valuation_date in zip(records, MONTHS, strict=True):
        table = versions(engine, valuation_date)
        assert table.is_current.tolist() == [True]
        assert table.model_version.iloc[0] == record["published"]["model_version"]
        assert table.status.iloc[0] == "approved"
    # each line's champion is the model that reserved it in the last month
    last = records[-1]["published"]["models"]
    assert {line: entry.model_version for line, entry in registry.champions(engine).items()} == last

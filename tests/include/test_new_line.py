"""A new line of business through the stages, on a tiny warehouse book: admitted by plausibility, then drift (A/E
against the champion), the champion's refit, one mapped reserve task per line and the publication, with the new
line's single cell reserved by factors borrowed from the rest of the book."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest
from sqlalchemy import text

from devtools import synth
from include.reserving import schema
from include.reserving.domain import ChampionAction
from include.reserving.stages import RunFacts, input, reserving
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import current_reserves, ranges_of

V = dt.date(2023, 12, 31)


def test_a_new_line_with_one_claim_is_admitted_reserved_and_published(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = make_engine(url)
    schema.create_all(engine)
    synth.write_book(url, synth.BookSpec(claims=1_500, start="2021-01", end="2023-12", seed=5), progress=False)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RESERVING_ADMITTED_NEW_LINES", "Marine")

    # last month: the champion, fitted on November's three lines
    november = RunFacts.create(dt.date(2023, 11, 30), "november")
    input.ingest(november)
    champion = fit_and_register(
        engine, november, {"method": "chain_ladder", "params": {}}, load_cells(engine, november.valuation_date)
    )
    november_lines = ["Liability", "Motor", "Property"]
    registry.set_champion(
        engine, champion.model_version, november.valuation_date, ChampionAction.PROMOTED, november_lines
    )

    # December: Marine's first claim, reported and paid 1,000.00 in the month, with its earned exposure
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO claims VALUES ('M1', 'MA-1', 'Marine', 'PropertyDamage', '2023-12-02', '2023-12-05', 40, "
                "'North')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO claim_transactions VALUES ('M1-000', 'M1', '2023-12-05', '2023-12-05 10:00:00.000000', "
                "1000.00, 500.00, 'open')"
            )
        )
        conn.execute(text("INSERT INTO earned_exposure VALUES ('Marine', '2023-12-01', 5000.00, 50.0)"))
    facts = RunFacts.create(V, "december")
    input.ingest(facts)
    checked = input.plausibility(facts)
    assert checked["skipped"] == 8  # Marine's volume checks and its case-reserve raises: no history yet
    decision = input.drift(facts)
    # the new line has no champion: the search must train one for it
    assert decision["retrain"] and decision["reasons"][-1] == (
        "no champion yet on Marine: a first model for it must be trained"
    )
    refitted = reserving.refit(facts)
    assert refitted["segments"] == ["Liability", "Marine", "Motor", "Property"]
    # each line by its own champion; Marine, without one, by the chain-ladder fallback (preliminary until approved)
    statuses = {line: refitted["lines"][line]["status"] for line in refitted["segments"]}
    assert statuses == {"Liability": "approved", "Marine": "preliminary", "Motor": "approved", "Property": "approved"}
    assert refitted["status"] == "preliminary"
    # a handler of the test's own on the stage's logger: Airflow's logging set-up (run by the stages above) replaces
    # the root handlers that caplog listens on, and what else still propagates depends on the tests run before
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    stage_log = logging.getLogger(reserving.__name__)
    level = stage_log.level
    stage_log.addHandler(handler)
    stage_log.setLevel(logging.INFO)
    try:
        reserved = [reserving.reserve_segment(facts, refitted, segment) for segment in refitted["segments"]]
    finally:
        stage_log.removeHandler(handler)
        stage_log.setLevel(level)
    # each mapped task says which line of how many it reserves
    progress = [line for line in lines if line.startswith("line ")]
    assert progress == [f"line {k} of 4: {s} at 2023-12-31" for k, s in enumerate(refitted["segments"], 1)]
    analysis = reserving.analyse(facts, refitted, reserved)
    assert analysis["hold_reasons"] == []  # no previous publication: nothing to hold against
    published = reserving.publish(facts, refitted, reserved, analysis)
    assert published["status"] == "preliminary"  # a line without an approved model: the month is not approved

    rows = current_reserves(engine, V)
    marine = rows[rows["segment"] == "Marine"]
    assert marine[["latest_paid", "ultimate"]].values.tolist()[0][0] == 1000.00
    assert marine["ultimate"].iloc[0] > 1000.00 and marine["std_err"].isna().all()
    # too young for the methods: the model's ultimate (borrowed factors) is selected, and says so
    assert marine["method"].tolist() == ["model"] and marine["ultimate"].tolist() == marine["model_ultimate"].tolist()
    assert marine[["paid_cl_ultimate", "bf_ultimate"]].isna().all().all()
    assert set(rows.loc[rows["segment"] != "Marine", "method"]) <= {"paid_cl", "bf"}
    ranges = ranges_of(engine, V, published["version"]).set_index("segment")
    assert ranges.loc["Marine", "selection_rule"].startswith("too young") and pd.isna(ranges.loc["Marine", "std_err"])
    assert ranges.loc["Total", "unpaid"] == round(rows["unpaid"].sum(), 2)
    assert rows.groupby("segment")["unpaid"].sum().drop("Marine").gt(0).all()
    assert sum(r["unpaid_total"] for r in reserved) == pytest.approx(rows["unpaid"].sum(), abs=0.05)
    assert sum(r["ibnr_total"] for r in reserved) == pytest.approx(rows["ibnr"].sum(), abs=0.05)
    assert ((rows["case_reserve"] + rows["ibnr"] - rows["unpaid"]).abs() < 0.005).all()

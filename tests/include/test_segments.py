"""Segments defined by the setting ``segment_by``: line x region cells that tie to the line totals to the cent, the
incremental ingest that follows the definition, the attributes the contract and ingest require, the methods that
need premium (per line only) below line level, and a month reserved per (line, region) pair whose paid and case
reserves equal the line-level run's."""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from devtools.book import CLAIM_COLUMNS, TRANSACTION_COLUMNS, load_book
from devtools.synth import BookSpec, generate_book
from include.reserving import methods, schema
from include.reserving.config import load_settings
from include.reserving.contract import ContractViolation
from include.reserving.domain import ChampionAction
from include.reserving.ingest import SegmentDefinitionError, ingest
from include.reserving.stages import RunFacts, input, reserving
from include.reserving.warehouse import history, registry
from include.reserving.warehouse.cells import load_cells
from include.reserving.warehouse.core import insert_rows, make_engine, read_frame
from include.reserving.warehouse.reserves import current_reserves, movements, ranges_of, version_of_run
from tests.include.test_incremental_ingest import record_gate

D, T = dt.date, dt.datetime
PAIR = ("line_of_business", "region")
# The hand book of test_ingest.py: three claims, each alone in its (line, region) pair
CLAIMS = [
    ("M1", "P1", "Motor", "PropertyDamage", D(2023, 2, 10), D(2023, 2, 20), 40, "North"),
    ("M2", "P2", "Motor", "BodilyInjury", D(2023, 4, 5), D(2023, 6, 1), 30, "South"),
    ("L1", "P3", "Liability", "BodilyInjury", D(2023, 1, 15), D(2023, 3, 1), 55, "North"),
]
TXNS = [
    ("t1", "M1", D(2023, 2, 25), T(2023, 2, 25, 9), 100.0, 400.0, "open"),
    ("t2", "M1", D(2023, 5, 10), T(2023, 5, 10, 9), 200.0, -200.0, None),
    ("t3", "M1", D(2023, 8, 15), T(2023, 8, 15, 9), 300.0, -200.0, "closed"),
    ("t4", "M2", D(2023, 6, 15), T(2023, 6, 15, 9), 50.0, 150.0, "open"),
    ("t5", "M2", D(2023, 7, 31), T(2023, 8, 2, 9), 25.0, 0.0, None),
    ("t6", "L1", D(2023, 3, 10), T(2023, 3, 10, 9), 10.0, 990.0, "open"),
    ("t7", "L1", D(2023, 9, 1), T(2023, 9, 1, 9), 500.0, -500.0, None),
]
KEYS = ["origin", "development"]
SUMMED = ["paid", "incurred", "reported_count", "closed_count"]


def hand_book(engine) -> None:
    insert_rows(engine, schema.claims, pd.DataFrame(CLAIMS, columns=CLAIM_COLUMNS))
    insert_rows(engine, schema.claim_transactions, pd.DataFrame(TXNS, columns=TRANSACTION_COLUMNS))
    exposure = [("Motor", D(2023, m, 1), 1000.0, 10.0) for m in range(1, 10)]
    columns = ["line_of_business", "month", "earned_premium", "exposure_units"]
    insert_rows(engine, schema.earned_exposure, pd.DataFrame(exposure, columns=columns))


def rolled_up(pair_cells: pd.DataFrame) -> pd.DataFrame:
    """Pair cells summed to their line (the label's first part), in the line cells' order."""
    line = pair_cells["segment"].str.split(" | ", regex=False).str[0]
    summed = pair_cells.assign(segment=line).groupby(["segment", *KEYS], as_index=False)[SUMMED].sum()
    summed[["paid", "incurred"]] = summed[["paid", "incurred"]].round(2)
    return summed.sort_values(["segment", *KEYS]).reset_index(drop=True)


def test_the_setting_names_claim_attributes_line_first(monkeypatch):
    assert load_settings().segment_by == ("line_of_business",)
    monkeypatch.setenv("RESERVING_SEGMENT_BY", "line_of_business, region")
    assert load_settings().segment_by == PAIR
    # the Variable (outside a task Airflow reads it from AIRFLOW_VAR_*) before the environment, as a JSON list
    monkeypatch.setenv("AIRFLOW_VAR_RESERVING_SETTINGS", '{"segment_by": ["line_of_business", "claim_type"]}')
    assert load_settings().segment_by == ("line_of_business", "claim_type")
    monkeypatch.delenv("AIRFLOW_VAR_RESERVING_SETTINGS")
    monkeypatch.setenv("RESERVING_SEGMENT_BY", "line_of_business,colour")
    with pytest.raises(ValidationError, match=r"setting segment_by: unknown attributes \['colour'\]: name distinct"):
        load_settings()
    for bad in (["region"], ["region", "line_of_business"], ["line_of_business", "region", "region"], []):
        with pytest.raises(ValidationError, match=r"setting segment_by: .*line_of_business first \(segments nest"):
            load_settings(segment_by=bad)


def test_line_by_region_cells_by_hand_and_tied_to_the_line_cells(warehouse):
    hand_book(warehouse)
    v = D(2023, 9, 30)
    ingest(warehouse, v, incremental=False)
    lines = load_cells(warehouse, v)
    ingest(warehouse, v, incremental=False, segment_by=PAIR)
    pairs = load_cells(warehouse, v)
    assert sorted(pairs["segment"].unique()) == ["Liability | North", "Motor | North", "Motor | South"]
    latest = pairs[pairs["development"] == pairs.groupby(["segment", "origin"])["development"].transform("max")]
    # by hand: M1 paid 100 + 200 + 300, its case reserve 400 - 200 - 200 released; M2 paid 50 + 25 (t5 recorded by
    # V), case 150; L1 paid 10 + 500, case 990 - 500
    by_pair = latest.groupby("segment")[["paid", "incurred"]].sum().round(2).to_dict("index")
    assert by_pair == {
        "Liability | North": {"paid": 510.0, "incurred": 1000.0},
        "Motor | North": {"paid": 600.0, "incurred": 600.0},
        "Motor | South": {"paid": 75.0, "incurred": 225.0},
    }
    # earned premium is per line: the pairs have none
    assert lines.loc[lines["segment"] == "Motor", "earned_premium"].notna().all()
    assert pairs["earned_premium"].isna().all()
    expected = lines[["segment", *KEYS, *SUMMED]].sort_values(["segment", *KEYS]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rolled_up(pairs), expected, check_dtype=False, check_exact=True)


@pytest.fixture(scope="module")
def synthetic_book():
    return generate_book(BookSpec(claims=400, start="2021-01", end="2024-06", seed=29, control_totals=False))


def test_pairs_tie_to_lines_and_the_incremental_ingest_follows_the_definition(warehouse, synthetic_book, caplog):
    """On a synthetic book: every (line, origin, development) cell is the sum of its regions' cells to the cent; a
    changed definition takes the full path and says why; the next month end adds to the pairs incrementally and
    equals their full recomputation."""
    load_book(warehouse, synthetic_book)
    p, v = D(2024, 4, 30), D(2024, 5, 31)
    ingest(warehouse, p)
    record_gate(warehouse, p)
    lines = load_cells(warehouse, p)
    with caplog.at_level(logging.INFO, logger="include.reserving.ingest"):
        ingest(warehouse, v, segment_by=PAIR)
    assert (
        f"full path ({p} was cut into segments by line_of_business, this run by line_of_business,region "
        "(setting segment_by))" in caplog.text
    )
    ingest(warehouse, p, segment_by=PAIR)
    record_gate(warehouse, p)
    pairs = load_cells(warehouse, p)
    # next month's plausibility expects the lines, not the pairs, of P (a pair is no line gone missing)
    assert history.ingested_lines(warehouse, p, "as_recorded") == ["Liability", "Motor", "Property"]
    assert pairs["segment"].str.contains(" | ", regex=False).all() and pairs["segment"].nunique() == 15
    expected = lines[["segment", *KEYS, *SUMMED]].sort_values(["segment", *KEYS]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rolled_up(pairs), expected, check_dtype=False, check_exact=True)

    assert ingest(warehouse, v, segment_by=PAIR).path == "incremental"
    incremental = load_cells(warehouse, v)
    assert ingest(warehouse, v, segment_by=PAIR, incremental=False).path == "full"
    pd.testing.assert_frame_equal(incremental, load_cells(warehouse, v), check_exact=True)
    segment_by = read_frame(warehouse, select(schema.snapshots.c.valuation_date, schema.snapshots.c.segment_by))
    assert set(segment_by["segment_by"]) == {"line_of_business,region"}


def test_a_claim_without_a_segment_attribute_fails_the_contract_and_ingest(warehouse, monkeypatch, tmp_path):
    hand_book(warehouse)
    with warehouse.begin() as conn:
        conn.execute(text("UPDATE claims SET region = NULL WHERE claim_id IN ('M2', 'L1')"))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse.url.render_as_string(hide_password=False))
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    v = D(2023, 9, 30)
    assert input.contract(RunFacts.create(v, "by-line"))["violations"] == 0  # region may be NULL otherwise
    with pytest.raises(ContractViolation) as raised:
        input.contract(RunFacts.create(v, "by-pair", segment_by=list(PAIR)))
    message = str(raised.value)
    assert (
        "claims.region: expected a value on every claim (a segment attribute: setting segment_by); found 2 NULL "
        "values, e.g. [{'claim_id': " in message
    )
    assert "To fix: fill the values in the extract, or take the column out of the setting segment_by" in message
    with pytest.raises(
        SegmentDefinitionError,
        match=r"setting segment_by \['line_of_business', 'region'\]: claims.region is NULL on 2 claims reported by "
        r"2023-09-30: fill the column in the extract, or take it out of segment_by",
    ):
        ingest(warehouse, v, segment_by=PAIR)


def test_a_segment_without_premium_selects_the_chain_ladder_and_says_why():
    """BF and Cape Cod need premium, which is per line: a segment below line level gets the paid chain ladder where
    the rule asks for BF, under the chain ladder's name, and the rule the report prints says why."""
    rows = []
    for i in range(8):  # eight quarterly origins, paid 40% / 70% / 90% / 100% of 1,000 x (1 + i/10) by age
        ultimate = 1000.0 * (1 + i / 10)
        for k, share in enumerate((0.4, 0.7, 0.9, 1.0)[: 8 - i]):
            paid = round(ultimate * share, 2)
            rows.append(("Motor | North", D(2022 + i // 4, 3 * (i % 4) + 1, 1), 3 + 3 * k, paid, paid * 1.1, 5, k))
    cells = pd.DataFrame(
        rows, columns=["segment", "origin", "development", "paid", "incurred", "reported_count", "closed_count"]
    ).assign(earned_premium=float("nan"), exposure=float("nan"))
    settings = load_settings(tail_method="none")
    reserved = methods.reserve_segment(cells, settings)
    origins = reserved.origins.set_index("origin")
    assert set(origins["selected_method"]) == {"paid_cl"}
    youngest = origins.loc[D(2023, 10, 1)]
    assert youngest["pct_developed_paid"] < 0.9
    assert youngest["rationale"].endswith(
        "< 90%: Bornhuetter-Ferguson on premium; no earned premium: paid chain ladder instead"
    )
    assert youngest["selected_ultimate"] == pytest.approx(youngest["paid_cl"])
    assert origins[["bf", "cape_cod"]].isna().all().all()  # n/a without premium, not a copy of the chain ladder
    summary = reserved.summary.iloc[0]
    assert summary["selection_rule"] == (
        "paid chain ladder where at least 90% developed on the paid pattern, else Bornhuetter-Ferguson; no earned "
        "premium for this segment (earned_exposure is per line of business; segment_by cuts below it), so the paid "
        "chain ladder instead of Bornhuetter-Ferguson"
    )
    assert pd.isna(summary["bf_apriori_loss_ratio"]) and pd.isna(summary["cape_cod_elr"])
    # unpaid = case reserves + IBNR on every origin
    assert ((origins["case_reserves"] + origins["ibnr"] - origins["unpaid"]).abs() < 1e-6).all()


def _run_month(facts: RunFacts) -> tuple[dict, dict]:
    """The month's stages from the contract to the publication (no training: each segment's champion refit, or the
    chain-ladder fallback where it has none)."""
    input.contract(facts)
    input.ingest(facts)
    input.plausibility(facts)  # per line of business whatever the segments
    refitted = reserving.refit(facts)
    reserved = [reserving.reserve_segment(facts, refitted, segment) for segment in refitted["segments"]]
    analysis = reserving.analyse(facts, refitted, reserved)
    return refitted, {**reserving.publish(facts, refitted, reserved, analysis), **analysis}


def _rows_of(engine, facts: RunFacts) -> pd.DataFrame:
    version = version_of_run(engine, facts.valuation_date, facts.run_id)["version"]
    rs = schema.reserve_results
    query = select(rs).where(rs.c.valuation_date == facts.valuation_date, rs.c.version == version)
    return read_frame(engine, query.order_by(rs.c.segment, rs.c.origin))


def test_a_month_reserved_per_line_and_region_ties_to_the_line_level_run(warehouse, tmp_path, monkeypatch):
    """November by line, its model approved as every line's champion; December by line x region: one row set per
    pair, preliminary (no pair has a champion: the chain-ladder fallback, and drift asks for a model), the change of
    segmentation not held; its paid and case reserves per line equal December's line-level run to the cent, which
    the lines' champions reserve again."""
    load_book(warehouse, generate_book(BookSpec(claims=1_200, start="2021-01", end="2023-12", seed=5)))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse.url.render_as_string(hide_password=False))
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    november, december = D(2023, 11, 30), D(2023, 12, 31)
    first, _ = _run_month(RunFacts.create(november, "november"))
    (model,) = {line["model_version"] for line in first["lines"].values()}
    lines = ["Liability", "Motor", "Property"]
    registry.set_champion(warehouse, model, november, ChampionAction.PROMOTED, lines, approved_by="ada")

    by_pair = RunFacts.create(december, "december-by-pair", segment_by=list(PAIR))
    refitted, published = _run_month(by_pair)
    rows = current_reserves(warehouse, december)
    pairs = sorted(rows["segment"].unique())
    assert pairs == refitted["segments"] and len(pairs) == 15
    assert all(" | " in s for s in pairs) and rows.groupby(["segment", "origin"]).size().eq(1).all()
    assert published["status"] == "preliminary" and not published["held"] and published["first_month"]
    assert {line["status"] for line in refitted["lines"].values()} == {"preliminary"}
    decision = input.drift(by_pair)
    assert decision["retrain"] and decision["reasons"][-1].startswith("no champion yet on Liability | Central, ")
    aoc = movements(warehouse, december, by_pair.run_id)
    assert set(aoc["segment"]) == set(pairs)
    assert (
        aoc["note"]
        .dropna()
        .str.startswith(
            "the publication at V-1 is cut into segments by line_of_business, this one by line_of_business,region"
        )
        .all()
    )
    # no premium below line level: BF is never selected, and every pair's rule says so
    assert "bf" not in set(rows["method"]) and rows[["bf_ultimate", "cape_cod_ultimate"]].isna().all().all()
    ranges = ranges_of(warehouse, december, published["version"]).set_index("segment")
    assert ranges.drop("Total")["selection_rule"].str.contains("no earned premium for this segment").all()
    assert ((rows["case_reserve"] + rows["ibnr"] - rows["unpaid"]).abs() < 0.005).all()

    by_line = RunFacts.create(december, "december-by-line")
    refitted, _ = _run_month(by_line)
    assert {s: line["status"] for s, line in refitted["lines"].items()} == dict.fromkeys(lines, "approved")
    assert registry.champions(warehouse).keys() == set(lines)  # the pairs' month changed no champion
    line_rows = _rows_of(warehouse, by_line)
    assert sorted(line_rows["segment"].unique()) == ["Liability", "Motor", "Property"]
    per_line = rows.assign(segment=rows["segment"].str.split(" | ", regex=False).str[0])
    for column in ("latest_paid", "latest_incurred", "case_reserve"):
        pair_totals = per_line.groupby("segment")[column].sum().round(2)
        line_totals = line_rows.groupby("segment")[column].sum().round(2)
        pd.testing.assert_series_equal(pair_totals, line_totals, check_exact=True, obj=column)
    assert round(rows["latest_paid"].sum(), 2) == round(line_rows["latest_paid"].sum(), 2)


def test_the_migration_widens_segments_and_adds_the_snapshot_definition(warehouse):
    with warehouse.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE snapshots DROP COLUMN segment_by")
        if warehouse.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE line_champions ALTER COLUMN segment TYPE VARCHAR(32)")
    steps = schema.create_all(warehouse)
    expected = ["snapshots.segment_by added"]
    if warehouse.dialect.name == "postgresql":
        expected.append(f"line_champions.segment widened to {schema.SEGMENT_LENGTH} characters")
    assert steps == expected
    assert schema.create_all(warehouse) == []
    long = "Commercial Property and Casualty | North-East Metropolitan Area"
    with warehouse.begin() as conn:
        conn.execute(
            schema.line_champions.insert().values(
                segment=long, model_version="m1", valuation_date=D(2023, 12, 31), changed_at=T(2024, 1, 1)
            )
        )
    assert read_frame(warehouse, select(schema.line_champions.c.segment))["segment"].tolist() == [long]


def test_a_mapped_region_is_landed_and_segments_the_cells(tmp_path, synthetic_book, monkeypatch):
    """A claims system that calls the region ``sales_area``: source_mapping maps it, landing copies it into the
    warehouse's claims, and the cells are cut by it; a NULL there fails the contract by the source's name."""
    source_url, warehouse_url = f"sqlite:///{tmp_path / 'claims.db'}", f"sqlite:///{tmp_path / 'warehouse.db'}"
    source = make_engine(source_url)
    load_book(source, synthetic_book)
    with source.begin() as conn:
        conn.execute(text("ALTER TABLE claims RENAME COLUMN region TO sales_area"))
    schema.create_all(make_engine(warehouse_url))
    mapping = '{"claims": {"columns": {"region": "sales_area"}}}'
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", warehouse_url)
    monkeypatch.setenv("AIRFLOW_CONN_CLAIMS_SOURCE", source_url)
    monkeypatch.setenv("RESERVING_SOURCE_MAPPING", mapping)
    monkeypatch.setenv("RESERVING_SEGMENT_BY", "line_of_business,region")
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    v = D(2024, 5, 31)
    facts = RunFacts.create(v, "mapped")
    input.contract(facts)
    assert input.land(facts)["landed"]
    input.ingest(facts)
    warehouse = make_engine(warehouse_url)
    cells = load_cells(warehouse, v)
    regions = read_frame(source, text("SELECT DISTINCT line_of_business, sales_area FROM claims"))
    assert set(cells["segment"]) <= {f"{r.line_of_business} | {r.sales_area}" for r in regions.itertuples()}
    assert cells["segment"].nunique() == 15
    with source.begin() as conn:
        conn.execute(text("UPDATE claims SET sales_area = NULL WHERE claim_id = (SELECT MIN(claim_id) FROM claims)"))
    with pytest.raises(
        ContractViolation,
        match=r"claims \(source claims\).region \(source sales_area\): expected a value on every claim",
    ):
        input.contract(RunFacts.create(v, "mapped-again"))

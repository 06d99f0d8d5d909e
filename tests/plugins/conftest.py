"""A small published book in a SQLite warehouse for the Reserving view, and a real Airflow api-server serving it.

The book: reserves published for 2024-01-31 (one version) and 2024-02-29 (two versions, the second current), a
champion promoted at 2024-01-31, a challenger waiting for approval at 2024-02-29 with its model card written under
the artifact root, and two pipeline runs.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from include.reserving import artifacts, governance, movement, schema
from include.reserving.publish import PublishResult, reserve_rows
from include.reserving.warehouse import registry, reserves, runs
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import publish_reserves
from tests.conftest import model_entry
from tests.servers import AirflowApi, running_api_server

PROJECT = Path(__file__).resolve().parents[2]
V1, V2 = dt.date(2024, 1, 31), dt.date(2024, 2, 29)
PENDING_RUN = "scheduled__2024-03-01T00:00:00+00:00"
LINES = ("Liability", "Motor")
SERVER_START_TIMEOUT = 240


def _model_output(scale: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    origins = [dt.date(2023, m, 1) for m in (1, 4, 7, 10)]
    latest = [100_000.0, 80_000.0, 50_000.0, 10_000.0, 300_000.0, 120_000.0, 60_000.0, 5_000.0]
    ultimate = [100_004.0, 95_555.5, 90_125.25, 60_333.33, 600_000.0, 420_100.1, 300_456.78, 250_004.9]
    ultimates = pd.DataFrame(
        {
            "segment": ["Motor"] * 4 + ["Liability"] * 4,
            "origin": origins * 2,
            "latest": latest,
            "ultimate": [u * scale for u in ultimate],
            "std_err": [0.0, 3_333.3, 5_500.0, 9_999.99, 10_000.0, 20_000.0, 30_000.0, 40_000.0],
            "p75": 1.0,
            "p95": 2.0,
        }
    )
    ultimates["unpaid"] = ultimates["ultimate"] - ultimates["latest"]
    # as selected by the methods: each method's ultimate beside the selected one, which names its method
    ultimates["method"] = ["paid_cl", "paid_cl", "bf", "bf"] * 2
    ultimates["paid_cl_ultimate"] = ultimates["ultimate"]
    ultimates["bf_ultimate"] = ultimates["ultimate"] * 1.01
    ultimates["flags"] = ""
    diagonal = ultimates[["segment", "origin"]].assign(paid=latest, incurred=[x * 1.5 for x in latest])
    return ultimates, diagonal


DAG_ID = "monthly_reserving_pipeline"
# Pipeline health as the DAG's callbacks record it: run, V, clear number, state, start, minutes, failed task. The
# pending run failed its gate, was cleared and then succeeded: both executions stay on record.
HEALTH = [
    ("scheduled__2024-02-01T00:00:00+00:00", V1, 0, "success", dt.datetime(2024, 2, 1, 0, 0, 5), 12.5, None),
    ("manual__first", V2, 0, "failed", dt.datetime(2024, 3, 1, 0, 0, 5), 3, "quality.validate"),
    (PENDING_RUN, V2, 0, "failed", dt.datetime(2024, 3, 1, 1, 0, 0), 2, "input.validate"),
    (PENDING_RUN, V2, 1, "success", dt.datetime(2024, 3, 1, 2, 0, 0), 15, None),
]
# The pending run's analysis of change (reserve_movements rows, hand-made): each line ties, Liability
# 1,000 - 200 + 50 + 0 + 130 = 980 and Motor 500 - 100 + 0 + 20 - 10 = 410; A/E = 200 / 250 and 100 / 80.
_AOC = {"Liability": ([1_000, -200, 50, 0, 130, 980, 250], 0.8), "Motor": ([500, -100, 0, 20, -10, 410, 80], 1.25)}
MOVEMENTS = pd.DataFrame(
    [
        (segment, order, step, kind, amount, None, movement.EXPECTED_NOTE if step == movement.EXPECTED else None)
        for segment, (amounts, _) in _AOC.items()
        for (order, step, kind), amount in zip(movement.STEPS, amounts, strict=False)
    ]
    + [(segment, 8, movement.AE, movement.MEMO, None, ratio, None) for segment, (_, ratio) in _AOC.items()],
    columns=movement.COLUMNS,
)

# the restated February version's ranges (reserve_ranges rows; hand-made: the view only reads them back)
RANGES = pd.DataFrame(
    {
        "segment": ["Liability", "Motor", "Total"],
        "selection_rule": ["paid chain ladder where at least 90% developed on the paid pattern, else BF"] * 2 + [None],
        "tail_method": ["exponential", "exponential", None],
        "range_basis": ["Mack, paid chain ladder", "Mack, paid chain ladder", "independent lines"],
        "unpaid": [1_000.0, 300.0, 1_300.0],
        "std_err": [30.0, 40.0, 50.0],
        "cv": [0.03, 0.1333, 0.0385],
        "p75": [1_020.0, 326.0, 1_333.0],
        "p95": [1_050.0, 367.0, 1_383.0],
    }
)


@dataclass
class Book:
    url: str
    artifact_root: Path
    published: dict[dt.date, tuple[PublishResult, pd.DataFrame]]  # current version and its rows, per V
    champion: str
    challenger: str
    card_md: Path
    card_pdf: Path


def populate(url: str, artifact_root: Path) -> Book:
    engine = make_engine(url)
    schema.create_all(engine)
    published = {}
    rows = reserve_rows(*_model_output(1.0))
    published[V1] = (publish_reserves(engine, V1, "scheduled__2024-02-01T00:00:00+00:00", rows, "m-cl"), rows)
    publish_reserves(engine, V2, "manual__first", reserve_rows(*_model_output(1.05)), "m-cl")
    restated = reserve_rows(*_model_output(1.1))
    published[V2] = (
        publish_reserves(engine, V2, PENDING_RUN, restated, "m-cl", basis="restated", ranges=RANGES),
        restated,
    )

    champ = registry.register(engine, model_entry("chain_ladder", V1))
    challenger = registry.register(engine, model_entry("xgboost_development", V2))
    # January: the first model approved on both lines; February: a challenger beats it on Motor only
    first = [governance.decide_promotion(V1, None, None, champ.model_version, -0.12, 0.01, segment=s) for s in LINES]
    registry.record_decisions(engine, V1, first, run_id="run-jan")
    for line in LINES:
        registry.decide(
            engine, V1, champ.model_version, "approve", "reserving_approval__2024-01-31", line, "ada", run_id="run-jan"
        )
    registry.record_decisions(
        engine,
        V2,
        [
            governance.decide_promotion(V2, champ.model_version, -0.12, challenger.model_version, s, 0.01, segment=line)
            for line, s in (("Liability", -0.125), ("Motor", -0.08))
        ],
        run_id=PENDING_RUN,
    )
    reserves.store_movements(engine, V2, "restated", PENDING_RUN, MOVEMENTS)
    for run_id, v, clear_number, state, started, minutes, failed in HEALTH:
        runs.record_run(
            engine, run_id, DAG_ID, v, state, started, started + dt.timedelta(minutes=minutes), failed, clear_number
        )
    engine.dispose()

    folder = Path(artifacts.run_dir(str(artifact_root), V2, PENDING_RUN))
    folder.mkdir(parents=True)
    card_md = folder / f"model_card_{challenger.model_version}.md"
    card_md.write_text(f"# Model card {challenger.model_version}\n\nChallenger for 2024-02-29.\n", encoding="utf-8")
    card_pdf = folder / f"model_card_{challenger.model_version}.pdf"
    card_pdf.write_bytes(b"%PDF-1.4\n% model card\n%%EOF\n")
    return Book(url, artifact_root, published, champ.model_version, challenger.model_version, card_md, card_pdf)


@pytest.fixture
def book(tmp_path) -> Book:
    return populate(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path / "artifacts")


@pytest.fixture(scope="session")
def gate_artifacts(tmp_path_factory) -> Path:
    """A real gate run's quality folder (validation_results.json, GX Data Docs): the quality tests' book with a
    negative claimant age, so one check fails. Built once (GX takes seconds to import)."""
    from tests.include.quality.book import defective_book, gate, load

    root = tmp_path_factory.mktemp("gate")
    engine = make_engine(f"sqlite:///{root / 'gate.db'}")
    schema.create_all(engine)
    load(engine, *defective_book("negative_age"))
    report = gate(engine, root, folder="quality")
    assert [c.key for c in report.failures] == ["snapshot_claims.claimant_age.between"], report.summary()
    engine.dispose()
    return root / "quality"


def install_data_docs(book: Book, quality: Path) -> Path:
    """Copy a gate run's quality folder to where the pending run's gate writes it; returns the run's folder."""
    folder = Path(artifacts.run_dir(str(book.artifact_root), V2, PENDING_RUN))
    shutil.copytree(quality, folder / "quality")
    return folder


# --- a real api-server ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    base: str
    home: Path
    username: str
    password: str
    book: Book
    log: Path
    api: AirflowApi  # the same server's REST API, for the operator's (admin's) changes

    def token(self) -> str:
        """A JWT the way the UI's login page gets one: POST /auth/token with username and password."""
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        request = urllib.request.Request(
            f"{self.base}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    def point_warehouse_at(self, sqlite_file: str) -> None:
        """Set the ``reserving_db`` connection in Airflow's metadata database as an operator does (Admin >
        Connections, i.e. the REST API), to a SQLite warehouse file."""
        body = {"connection_id": "reserving_db", "conn_type": "sqlite", "host": sqlite_file}
        with self.api.client(OPERATOR) as api:
            done = api.patch("/connections/reserving_db", json=body)
            if done.status_code == 404:
                done = api.post("/connections", json=body)
            done.raise_for_status()


OPERATOR = "operator"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, gate_artifacts) -> Server:
    """``airflow api-server`` on 127.0.0.1 with the project's plugins, its own Airflow home and a published book with
    the pending run's Data Docs. The warehouse connection lives in the server's metadata database (not in its
    environment), so a test can switch it while the server runs."""
    root = tmp_path_factory.mktemp("reserving-api")
    home = root / "airflow-home"
    (home / "dags").mkdir(parents=True)
    book = populate(f"sqlite:///{root / 'warehouse.db'}", root / "artifacts")
    install_data_docs(book, gate_artifacts)
    settings = {
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
        "RESERVING_ARTIFACT_ROOT": str(book.artifact_root),
    }
    users = f"actuary:viewer,{OPERATOR}:admin"
    with running_api_server(home, users, settings, timeout=SERVER_START_TIMEOUT) as (base, passwords):
        server = Server(
            base, home, "actuary", passwords["actuary"], book, home / "api-server.log", AirflowApi(base, passwords)
        )
        server.point_warehouse_at(str(root / "warehouse.db"))
        yield server

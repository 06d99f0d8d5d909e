"""The defect catalogue: from a cleanly published month, each kind of damaged next-month extract is stopped.

A small synthetic book (3,000 claims, as a hostile new user tried it) is published approved at 2024-10-31 with an
approved champion, once per backend; each case copies that warehouse, damages November's extract one way
(``tests/integration/defects.py``) and runs November's stages in DAG order, as the tasks call them. Every defect
must fail the contract check, the run-order check, the reconciliation, the row-level gate or the month-level
plausibility with an error that names what is wrong, or be held for sign-off; the previous month's publication and
the champion stay as they were, and nothing is published approved for November. Training is left out: a
challenger needs an approval before it reserves anything, so the champion's refit is what would publish.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from devtools.synth import BookSpec, write_book
from include.reserving import schema
from include.reserving.contract import ContractViolation
from include.reserving.domain import PublicationStatus
from include.reserving.plausibility import PlausibilityError
from include.reserving.quality.report import QualityGateError
from include.reserving.reconciliation import ReconciliationError
from include.reserving.run_order import RunOrderError
from include.reserving.stages import RunFacts
from include.reserving.warehouse import registry
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import current_reserves, versions
from tests.conftest import PG_ADMIN_URL, _pg_admin_engine
from tests.integration.conftest import CHEAP_SEARCH
from tests.integration.defects import CATALOGUE, Defect, Month
from tests.integration.monthly import publish_first_month, run_month

pytestmark = pytest.mark.slow

CLEAN = dt.date(2024, 10, 31)
MONTH = Month(dt.date(2024, 11, 1), dt.date(2024, 11, 30))
# Without the ledger's control totals (they are optional), so each defect meets the check meant for its kind; the
# reconciliation has its own case, which writes control totals that disagree.
BOOK = BookSpec(claims=3_000, start="2019-01", end="2024-12", seed=12, control_totals=False)
STOPPED = (ContractViolation, RunOrderError, ReconciliationError, QualityGateError, PlausibilityError)


class Template:
    """A warehouse with the clean month published; ``copy()`` gives a case its own database."""

    def __init__(self, backend: str, tmp_path_factory):
        self.backend, self.dir, self.copies = backend, tmp_path_factory.mktemp(f"catalogue-{backend}"), []
        if backend == "sqlite":
            self.url = f"sqlite:///{self.dir / 'template.db'}"
        else:
            self.admin = _pg_admin_engine()
            self.name = f"reserving_cat_{uuid.uuid4().hex[:10]}"
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
            # a finished case's copy is dropped while the next case runs (a drop takes seconds on a busy server)
            self.dropper = ThreadPoolExecutor(max_workers=1)

    def copy(self) -> str:
        if self.backend == "sqlite":  # the backup API copies what the WAL holds too
            path = self.dir / f"case-{len(self.copies)}.db"
            with sqlite3.connect(self.dir / "template.db") as source, sqlite3.connect(path) as target:
                source.backup(target)
            self.copies.append(path)
            return f"sqlite:///{path}"
        if self.copies:  # the previous case is over
            self.dropper.submit(self._drop, self.copies[-1])
        name = f"{self.name}_{len(self.copies)}"
        with self.admin.connect() as conn:
            # a template must have no sessions: the stages' engines may still hold pooled connections to it
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.name},
            )
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"'))
        self.copies.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop(self) -> None:
        if self.backend == "postgresql":
            self.dropper.shutdown(wait=True)
            for name in [*self.copies, self.name]:  # the last copy, the template, any a background drop missed
                self._drop(name)
            self.admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def template(request, tmp_path_factory):
    template = Template(request.param, tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESERVING_ARTIFACT_ROOT", str(template.dir / "artifacts"))
        mp.setenv("AIRFLOW_CONN_RESERVING_DB", template.url)
        for name, value in CHEAP_SEARCH.items():
            mp.setenv(name, value)
        engine = make_engine(template.url)
        schema.create_all(engine)
        write_book(template.url, BOOK, progress=False)
        publish_first_month(RunFacts.create(CLEAN, "catalogue__clean"))
        template.baseline = {
            "reserves": current_reserves(engine, CLEAN),
            "versions": versions(engine, CLEAN),
            "champions": {line: e.model_version for line, e in registry.champions(engine).items()},
            "history": len(registry.champion_history(engine)),
        }
        engine.dispose()
        yield template
    template.drop()


def _case(template, monkeypatch, defect: Defect | None):
    url = template.copy()
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(template.dir / "artifacts"))
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    engine = make_engine(url)
    if defect is not None:
        with engine.begin() as conn:
            defect.apply(conn, MONTH)
    facts = RunFacts.create(MONTH.end, f"catalogue__{uuid.uuid4().hex[:8]}")
    try:
        return engine, run_month(facts), None
    except STOPPED as stopped:
        return engine, None, stopped


def _assert_nothing_moved(engine, template) -> None:
    baseline = template.baseline
    assert current_reserves(engine, CLEAN).equals(baseline["reserves"]), "the previous month's reserves changed"
    assert versions(engine, CLEAN).equals(baseline["versions"]), "the previous month's versions changed"
    champions = {line: e.model_version for line, e in registry.champions(engine).items()}
    assert champions == baseline["champions"], "a champion moved"
    assert len(registry.champion_history(engine)) == baseline["history"], "the champion history grew"
    november = versions(engine, MONTH.end)
    approved = november[november["is_current"] & (november["status"] == PublicationStatus.APPROVED)]
    assert approved.empty, f"November was published approved:\n{november}"


def test_the_undamaged_month_publishes_approved(template, monkeypatch):
    """The control: without a defect, November publishes approved and becomes current (so the cases can fail)."""
    engine, published, stopped = _case(template, monkeypatch, None)
    assert stopped is None, f"the clean month was stopped: {stopped}"
    assert published["status"] == PublicationStatus.APPROVED
    assert versions(engine, MONTH.end)["is_current"].tolist() == [True]


@pytest.mark.parametrize("defect", CATALOGUE, ids=[d.name for d in CATALOGUE])
def test_a_damaged_month_is_stopped_by_name_or_held(defect, template, monkeypatch):
    if template.backend not in defect.dialects:
        pytest.skip(f"{defect.name} cannot be stored on {template.backend}")
    engine, published, stopped = _case(template, monkeypatch, defect)
    if stopped is None:
        assert published["status"] == PublicationStatus.HELD, f"{defect.name} was published {published['status']}"
    else:
        message = str(stopped).lower()
        missing = [name for name in defect.names if name.lower() not in message]
        assert not missing, f"{defect.name}: the error does not name {missing}:\n{stopped}"
    _assert_nothing_moved(engine, template)
    engine.dispose()

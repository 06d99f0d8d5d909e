"""Shared fixtures: warehouses on SQLite and PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (trust auth). Each test gets a fresh database of its own, dropped
afterwards. Under CI=true an unreachable server fails the test loudly; locally such tests skip with the reason.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# Tests get an Airflow home of their own (never the demo's), one per pytest-xdist worker: a SQLite metadata
# database is not shared between processes.
os.environ["AIRFLOW_HOME"] = str(PROJECT / ".airflow-test" / os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# One Fernet key for this process and every Airflow CLI it starts. Without it the first `airflow db migrate` writes
# a generated key into the home's airflow.cfg after this process has loaded its configuration without one: a
# Variable set from the CLI is then encrypted and this process reads the ciphertext. Derived from the home's path
# (a throwaway test database), so it stays the same across sessions.
os.environ["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(
    hashlib.sha256(os.environ["AIRFLOW_HOME"].encode()).digest()
).decode()
# A second DAG bundle holds the tests' harness DAGs beside the project's dags/.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(PROJECT / "tests" / "integration" / "dags")},
        },
    ]
)

import pytest  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from include.reserving import schema  # noqa: E402
from include.reserving.warehouse.core import make_engine  # noqa: E402
from tests.servers import airflow_api, slack_receiver, smtp_server  # noqa: E402, F401 (shared fixtures)

PG_ADMIN_URL = os.environ.get("RESERVING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def model_entry(method: str, valuation_date, params: dict | None = None):
    """A registry entry for ``method`` trained at ``valuation_date`` (tests of the registry and the views)."""
    from include.reserving import governance

    spec = {"method": method, "params": params or {}}
    version = governance.model_version_id(spec, valuation_date, "hash")
    return governance.ModelEntry(
        model_version=version,
        spec=spec,
        artifact_uri=f"file:///artifacts/models/{version}",
        trained_valuation_date=valuation_date,
        basis="as_recorded",
        train_rows=100,
        data_hash="hash",
        code_version="abc123",
    )


def _pg_admin_engine():
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        engine.dispose()
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc.__class__.__name__}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)
    return engine


@contextlib.contextmanager
def _fresh_pg_database():
    admin = _pg_admin_engine()
    name = f"reserving_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url():
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture
def pg_url_2():
    """A second fresh database (e.g. a claims system beside the warehouse)."""
    with _fresh_pg_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request):
    """Run the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def warehouse(warehouse_url):
    """An engine on an empty warehouse with every table created."""
    engine = make_engine(warehouse_url)
    schema.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata database (SQLite) in the tests' own Airflow home."""
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def pipeline_dag(airflow_db):
    """The monthly DAG object, parsed from dags/ the way the dag-processor does."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("monthly_reserving_pipeline")


def pytest_collection_modifyitems(config, items):
    """Modules with slow (end-to-end) tests first, each module's own order kept.

    ``make test`` hands whole files to two xdist workers in collection order (``--no-loadscope-reorder``). xdist's
    default order, most tests first, puts the one-test end-to-end modules (minutes each) last, where one of them can
    keep a worker busy long after the other has finished; long ones first, the many short unit modules fill in.
    """

    def module(item):
        return item.nodeid.split("::", 1)[0]

    slow_modules = {module(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: module(item) not in slow_modules)

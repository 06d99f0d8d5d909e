"""Fixtures for end-to-end runs: a small synthetic book in a warehouse of its own, wired through the environment."""

from __future__ import annotations

import pytest

from devtools.synth import BookSpec, write_book
from include.reserving import schema
from include.reserving.warehouse.core import make_engine

# Accident months through the last valuation any test runs (the backfill's 2024-03-31): a month past the book's end
# has no new claims and no earned premium, which month-level plausibility rightly stops.
SMALL_BOOK = BookSpec(claims=3000, start="2020-01", end="2024-03", seed=11)
# The scenarios are about the monthly flow, not the model search (test_backtest.py and test_per_line_evaluation.py
# test that): through the settings, a cheaper search of two rolling origins and no blend (it refits both its models
# per fold), as an operator may configure it.
CHEAP_SEARCH = {
    "RESERVING_BACKTEST_DIAGONALS": "2",
    "RESERVING_SEARCH_METHODS": "chain_ladder,xgboost_development",
    "RESERVING_SEARCH_GRID": "small",
}


def _prepare(url: str, tmp_path, monkeypatch) -> str:
    schema.create_all(make_engine(url))
    write_book(url, SMALL_BOOK, progress=False)
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RESERVING_APPROVAL_POKE_SECONDS", "1")
    monkeypatch.setenv("RESERVING_APPROVAL_TIMEOUT_SECONDS", "600")
    for name, value in CHEAP_SEARCH.items():
        monkeypatch.setenv(name, value)
    return url


@pytest.fixture
def pipeline_env(sqlite_url, tmp_path, monkeypatch):
    """A SQLite warehouse with a small book, an artifact root, fast approval polling; returns the warehouse URL."""
    return _prepare(sqlite_url, tmp_path, monkeypatch)


@pytest.fixture
def pipeline_env_any(warehouse_url, tmp_path, monkeypatch):
    """The same on SQLite and on PostgreSQL (parametrised)."""
    return _prepare(warehouse_url, tmp_path, monkeypatch)

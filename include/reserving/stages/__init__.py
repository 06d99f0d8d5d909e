"""The stages of the monthly run, one function per task: read (warehouse) -> compute (domain) -> write (warehouse).

Each takes the run's :class:`RunFacts` and returns a small JSON-able dict for XCom (table keys, versions, artifact
URIs, never frames). The DAG file wires them (``input.ingest`` is :func:`stages.input.ingest`, and so on); tests
call them directly too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from include.reserving import artifacts
from include.reserving.config import Settings, load_settings, warehouse_url
from include.reserving.dates import parse_valuation_date
from include.reserving.domain import Basis
from include.reserving.warehouse.core import make_engine


@dataclass(frozen=True)
class RunFacts:
    """What every stage needs to know about the run: the valuation date V, the data basis and the run id."""

    valuation_date: dt.date
    basis: str
    run_id: str
    settings: Settings

    @classmethod
    def create(cls, valuation_date: dt.date | str, run_id: str, restated: bool = False, **overrides: Any):
        return cls(
            parse_valuation_date(valuation_date),
            (Basis.RESTATED if restated else Basis.AS_RECORDED).value,
            run_id,
            load_settings(**overrides),
        )

    def engine(self) -> Engine:
        return make_engine(warehouse_url(self.settings))

    @property
    def run_dir(self) -> str:
        return artifacts.run_dir(self.settings.artifact_root, self.valuation_date, self.run_id)

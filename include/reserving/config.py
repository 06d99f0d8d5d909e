"""The one place for configuration.

Precedence for every setting: the Airflow Variable ``reserving_settings`` (a JSON object, read inside tasks),
then the environment variable ``RESERVING_<NAME>`` (upper case), then the default below. Connections come from
Airflow connections (``AIRFLOW_CONN_<ID>`` environment variables work outside tasks too); the warehouse falls back
to the embedded SQLite file. Nothing here reads the wall clock.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("RESERVING_DATA_DIR", PROJECT_ROOT / "data"))
DEFAULT_SQLITE_PATH = DATA_DIR / "warehouse.db"
SETTINGS_VARIABLE = "reserving_settings"


@dataclass(frozen=True)
class Settings:
    """Typed pipeline settings; see the README's configuration table for each field's meaning."""

    warehouse_conn_id: str = "reserving_db"
    claims_source_conn_id: str = "claims_source"
    artifact_root: str = str(DATA_DIR / "artifacts")
    psi_threshold: float = 0.2
    promotion_delta: float = 0.01
    approval_timeout_seconds: int = 3 * 24 * 3600
    approval_poke_seconds: int = 300
    report_recipients: tuple[str, ...] = ("chief.actuary@example.com",)
    slack_conn_id: str = "reserving_slack"
    smtp_conn_id: str = "smtp_default"
    origin_grain: str = "quarter"
    development_grain: str = "quarter"
    extra_claim_types: tuple[str, ...] = ()
    amount_min: float = -10_000_000.0
    amount_max: float = 10_000_000.0
    volume_tolerance: float = 0.5
    incremental_uniqueness: bool = True
    ave_tolerance: float = 0.25
    backtest_diagonals: int = 4

    def __post_init__(self) -> None:
        for grain_name in ("origin_grain", "development_grain"):
            if getattr(self, grain_name) not in GRAIN_MONTHS:
                raise ValueError(
                    f"setting {grain_name}={getattr(self, grain_name)!r} is invalid: use one of {sorted(GRAIN_MONTHS)}"
                )
        if not 0 < self.psi_threshold:
            raise ValueError(f"setting psi_threshold={self.psi_threshold!r} must be positive")
        if self.amount_min >= self.amount_max:
            raise ValueError("setting amount_min must be below amount_max")

    @property
    def origin_months(self) -> int:
        return GRAIN_MONTHS[self.origin_grain]

    @property
    def development_months(self) -> int:
        return GRAIN_MONTHS[self.development_grain]


GRAIN_MONTHS = {"month": 1, "quarter": 3, "half": 6, "year": 12}


def _coerce(value: Any, annotation: str) -> Any:
    """Convert a Variable/environment value to the field's declared type."""
    if annotation.startswith("tuple"):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(value)
    if annotation == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{value!r} is not a boolean: use true or false")
        return text in ("true", "1", "yes")
    if annotation == "int":
        return int(value)
    if annotation == "float":
        return float(value)
    return str(value)


def _variable_overrides() -> dict[str, Any]:
    """Read the ``reserving_settings`` Variable where Airflow can answer; absent means no overrides."""
    try:
        from airflow.sdk import Variable

        raw = Variable.get(SETTINGS_VARIABLE, default=None)
    except Exception as exc:  # outside Airflow or no metadata access: the environment decides
        log.debug("settings Variable not readable here (%s); using environment and defaults", exc)
        return {}
    if raw in (None, ""):
        return {}
    overrides = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(overrides, dict):
        raise ValueError(f"Variable {SETTINGS_VARIABLE} must be a JSON object, got {type(overrides).__name__}")
    return overrides


def load_settings(**explicit: Any) -> Settings:
    """Build the settings: explicit keyword arguments, then Variable, then environment, then defaults."""
    overrides = _variable_overrides()
    known = {f.name: f for f in fields(Settings)}
    unknown = set(overrides) - set(known)
    if unknown:
        raise ValueError(f"Variable {SETTINGS_VARIABLE} has unknown settings: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        env = os.environ.get(f"RESERVING_{name.upper()}")
        if name in explicit:
            values[name] = explicit[name]
        elif name in overrides:
            values[name] = _coerce(overrides[name], str(f.type))
        elif env is not None:
            values[name] = _coerce(env, str(f.type))
    return Settings(**values)


def as_dict(settings: Settings) -> dict[str, Any]:
    return dataclasses.asdict(settings)


def connection_url(conn_id: str, default: str | None = None) -> str:
    """SQLAlchemy URL of an Airflow connection (``AIRFLOW_CONN_*`` env vars work outside tasks).

    Falls back to ``default`` when the connection is not defined; the password never reaches a log.
    """
    from sqlalchemy.engine import URL

    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if default is None:
            raise LookupError(f"Airflow connection {conn_id!r} is not defined") from exc
        log.debug("connection %s not defined (%s); using the default", conn_id, type(exc).__name__)
        return default
    conn_type = (conn.conn_type or "").lower().split("+")[0]  # a URI may name its driver: postgresql+psycopg2
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        return f"sqlite:///{path}"
    if conn_type in ("postgres", "postgresql"):
        return URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        ).render_as_string(hide_password=False)
    raise ValueError(f"connection {conn_id!r} has type {conn.conn_type!r}; use postgres or sqlite")


def warehouse_url(settings: Settings | None = None) -> str:
    """The warehouse: connection ``reserving_db``, else the embedded SQLite file."""
    settings = settings or load_settings()
    return connection_url(settings.warehouse_conn_id, default=f"sqlite:///{DEFAULT_SQLITE_PATH}")


def claims_source_url(settings: Settings | None = None) -> str:
    """The claims-system extract: connection ``claims_source``, else the warehouse itself."""
    settings = settings or load_settings()
    return connection_url(settings.claims_source_conn_id, default=warehouse_url(settings))

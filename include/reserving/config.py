"""The one place for configuration.

Precedence for every setting: keyword arguments, then the Airflow Variable ``reserving_settings`` (a JSON object),
then the environment variable ``RESERVING_<NAME>`` (upper case), then the default below. Connections come from
Airflow connections (``AIRFLOW_CONN_<ID>`` environment variables work outside tasks too); the warehouse falls back
to the embedded SQLite file. Nothing here reads the wall clock.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("RESERVING_DATA_DIR", PROJECT_ROOT / "data"))
DEFAULT_SQLITE_PATH = DATA_DIR / "warehouse.db"
SETTINGS_VARIABLE = "reserving_settings"
GRAIN_MONTHS = {"month": 1, "quarter": 3, "half": 6, "year": 12}

# A list setting: comma-separated text in the environment (NoDecode: not JSON), a JSON list or text in the Variable.
StrList = Annotated[tuple[str, ...], NoDecode]
FloatList = Annotated[tuple[float, ...], NoDecode]


class Settings(BaseSettings):
    """Typed pipeline settings; see the README's configuration table for each field's meaning."""

    model_config = SettingsConfigDict(env_prefix="RESERVING_", frozen=True, extra="forbid")

    warehouse_conn_id: str = "reserving_db"
    claims_source_conn_id: str = "claims_source"
    # Where the contract's tables and columns live in the claims system (include/reserving/sourcemap.py): a JSON
    # object {contract table: {"table", "schema", "columns": {contract column: source column}}}; empty: the names
    # of docs/DATA_CONTRACT.md.
    source_mapping: dict[str, Any] = {}
    # The reserving segment: claim attributes (columns of claims) whose values, joined " | " in this order, name a
    # segment (e.g. "Motor | North" for line x region); the default keeps one segment per line of business.
    segment_by: StrList = ("line_of_business",)
    artifact_root: str = str(DATA_DIR / "artifacts")
    psi_threshold: float = Field(0.2, gt=0)
    # Fewer values than this in a feature's reference or current window: not compared (no retrain on it alone). With
    # 10 decile bins, the PSI of an unshifted sample of n claims (drawn from a 12,000-claim reference, 2,000 draws)
    # exceeded 0.2 in 100% of draws at n=8, 93% at 20, 45% at 50, 4% at 100 (95th percentile 0.18) and none at 200.
    drift_min_sample: int = Field(100, ge=1)
    promotion_delta: float = 0.01
    # a spec whose backtest bias (segments' mean absolute) exceeds chain ladder's by more than this is not promoted
    promotion_bias_margin: float = Field(0.05, ge=0)
    approval_timeout_seconds: int = 3 * 24 * 3600
    approval_poke_seconds: int = 300
    # Who may decide (model approval and numbers sign-off): Airflow user names, checked against Airflow's audit log
    # (who wrote the decision Variable), read through the api-server's REST API with the connection below.
    approvers: StrList = ()
    approval_cli_counts: bool = False  # a value written with `airflow variables set` (owner: the OS user) counts
    airflow_api_conn_id: str = "reserving_airflow_api"
    four_eyes: bool = False  # the approver of a model must differ from the user who triggered a forced retrain
    report_recipients: StrList = ("chief.actuary@example.com",)
    slack_conn_id: str = "reserving_slack"
    smtp_conn_id: str = "smtp_default"
    origin_grain: str = "quarter"
    development_grain: str = "quarter"
    extra_claim_types: StrList = ()
    amount_min: float = -10_000_000.0
    amount_max: float = 10_000_000.0
    volume_tolerance: float = 0.5
    incremental_uniqueness: bool = True
    # after a clean ingest and gate of the previous month end, ingest adds the rows recorded since to its cells and
    # snapshot; false: every month re-reads the whole book (a claims system that edits rows in place)
    incremental_ingest: bool = True
    ave_tolerance: float = 0.25
    backtest_diagonals: int = 4
    # The training search (include/reserving/backtest.py): "small" tries each method's defaults only (tests), "full"
    # each method's search_grid(); every learned candidate is also blended with chain ladder at these weights (the
    # blend's backtest is the weighted emergence: no refit); the simplest candidate within this many standard errors
    # of the best backtest score wins (0: the best score wins).
    search_grid: Literal["full", "small"] = "full"
    search_blend_weights: FloatList = (0.25, 0.5, 0.75)
    search_se_multiple: float = Field(1.0, ge=0)
    # Model classes beyond the built-in methods and the installed `reserving.models` entry points, as import paths
    # (`package.module:ClassName`); the training search tries their search_grid() too (docs/ADDING_A_MODEL.md)
    model_classes: StrList = ()
    # Only these methods' search_grid() specs in the training search (e.g. `chain_ladder,xgboost_development`);
    # empty: every registered method. Fewer methods, a cheaper search (tests use it with search_grid small).
    search_methods: StrList = ()
    reconciliation_abs_tolerance: float = Field(1.0, ge=0)
    reconciliation_rel_tolerance: float = Field(0.001, ge=0)
    plausibility_history_months: int = Field(12, ge=1)
    plausibility_min_history: int = Field(6, ge=1)
    plausibility_band_width: float = Field(10.0, gt=0)
    plausibility_relative_floor: float = Field(0.5, ge=0)
    plausibility_amount_floor: float = Field(3.0, ge=0)
    plausibility_stall_days: int = Field(7, ge=0)
    # Case-reserve raises of claims open at the previous month end (plausibility.case_raise_check): band half-width
    # in standard errors of the month's median, and the fewest raised claims a month (or history month) is judged on.
    plausibility_case_raise_width: float = Field(5.0, gt=0)
    plausibility_case_raise_min_claims: int = Field(10, ge=1)
    # no premium earned any more: input.run_order does not read a month without exposure as stale
    book_in_run_off: bool = False
    admitted_new_lines: StrList = ()
    # Reserve-movement hold (separate from ave_tolerance, which only asks for retraining). Measured with
    # benchmarks/bench_movements.py on clean synthetic books over 24 month ends (10k claims seeds 7 and 3, 40k seed
    # 23, 3k seed 11), the XGBoost champion refitted monthly: largest movement 0.49 x previous, unexplained 0.50 x,
    # A/E 0.45 to 2.53. The defaults sit about twice beyond, since the models move a lot month to month there.
    hold_movement_tolerance: float = Field(1.0, gt=0)
    hold_unexplained_tolerance: float = Field(1.0, gt=0)
    hold_ae_factor: float = Field(5.0, gt=1)
    hold_floor: float = Field(100_000.0, ge=0)
    signoff_timeout_seconds: int = 3 * 24 * 3600
    # Actuarial methods (include/reserving/methods.py). Defaults judged by benchmarks/bench_truth.py against the
    # synthetic book's true run-off (BENCHMARKS.md "Truth benchmark"): the paid pattern with BF on premium, the
    # a-priori loss ratio from the mature years' incurred chain ladder; incurred CL ran 14% high there (case
    # reserves on nil claims are released late), so incurred sets the a-priori, not the unpaid.
    tail_method: Literal["none", "exponential", "inverse_power", "constant"] = "exponential"
    tail_constant_paid: float = Field(1.0, ge=1)
    tail_constant_incurred: float = Field(1.0, ge=1)
    expected_basis: Literal["paid", "incurred"] = "paid"
    bf_apriori_loss_ratio: float | None = Field(None, gt=0)
    bf_apriori_maturity: float = Field(0.8, gt=0, le=1)
    cape_cod_decay: float = Field(1.0, gt=0, le=1)
    cape_cod_trend: float = 0.0
    selection_rule: Literal["maturity", "paid_cl", "incurred_cl", "bf", "cape_cod", "model"] = "maturity"
    selection_maturity: float = Field(0.9, gt=0, le=1)
    selection_immature_method: Literal["paid_cl", "incurred_cl", "bf", "cape_cod", "model"] = "bf"
    range_basis: Literal["paid", "incurred"] = "paid"
    cv_floor: float = Field(0.01, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _VariableSource(settings_cls), env_settings

    @field_validator(
        "report_recipients",
        "extra_claim_types",
        "admitted_new_lines",
        "approvers",
        "model_classes",
        "segment_by",
        "search_methods",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("search_blend_weights", mode="before")
    @classmethod
    def _split_weights(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("search_blend_weights")
    @classmethod
    def _weights_in_unit_interval(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        outside = [w for w in value if not 0.0 < w < 1.0]
        if outside:
            raise ValueError(f"blend weights {outside} must lie strictly between 0 and 1 (0 and 1 are the components)")
        return value

    @field_validator("source_mapping")
    @classmethod
    def _known_mapping(cls, value: dict[str, Any]) -> dict[str, Any]:
        from include.reserving.sourcemap import SourceMapping

        SourceMapping.parse(value)  # raises naming the table or column the contract does not have
        return value

    @field_validator("segment_by")
    @classmethod
    def _known_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from include.reserving.domain import SEGMENT_ATTRIBUTES

        unknown = [v for v in value if v not in SEGMENT_ATTRIBUTES]
        if not value or unknown or len(set(value)) != len(value) or value[0] != "line_of_business":
            found = f"unknown attributes {unknown}" if unknown else f"{list(value)}"
            raise ValueError(
                f"setting segment_by: {found}: name distinct claim attributes of {list(SEGMENT_ATTRIBUTES)}, "
                "line_of_business first (segments nest within lines: premium, reconciliation and plausibility are "
                'per line), e.g. ["line_of_business", "region"]'
            )
        return value

    @field_validator("origin_grain", "development_grain")
    @classmethod
    def _known_grain(cls, value: str) -> str:
        if value not in GRAIN_MONTHS:
            raise ValueError(f"{value!r} is invalid: use one of {sorted(GRAIN_MONTHS)}")
        return value

    @model_validator(mode="after")
    def _amount_bounds(self) -> Settings:
        if self.amount_min >= self.amount_max:
            raise ValueError(f"setting amount_min={self.amount_min} must be below amount_max={self.amount_max}")
        return self

    @property
    def origin_months(self) -> int:
        return GRAIN_MONTHS[self.origin_grain]

    @property
    def development_months(self) -> int:
        return GRAIN_MONTHS[self.development_grain]


class SettingsVariableError(ValueError):
    """The ``reserving_settings`` Variable exists but cannot be used."""

    def __init__(self, why: str) -> None:
        super().__init__(f"Variable {SETTINGS_VARIABLE} cannot be used: {why}; fix or delete it (Admin > Variables)")


def in_task() -> bool:
    """True inside a running Airflow task (or callback): the Task SDK's runner has its supervisor channel set."""
    # where the channel is set the runner module is imported already; importing it here would only cost time
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


def _read_variable() -> str | None:
    """The Variable's raw text, None when it is missing (or, outside a task, when Airflow cannot answer here)."""
    try:
        from airflow.sdk import Variable

        return Variable.get(SETTINGS_VARIABLE, default=None)
    except Exception as exc:
        if in_task():
            raise SettingsVariableError(f"it cannot be read ({type(exc).__name__}: {exc})") from exc
        # outside a task Airflow sees only AIRFLOW_VAR_* and secrets backends, or nothing at all
        log.debug("settings Variable not readable here (%s); using environment and defaults", exc)
        return None


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _variable_overrides() -> dict[str, Any]:
    """The settings named in the Variable; a missing or empty Variable names none."""
    raw = _read_variable()
    if raw is None or not raw.strip():
        return {}
    try:
        overrides = json.loads(raw)
    except ValueError as exc:
        raise SettingsVariableError(f"it is not JSON ({exc})") from exc
    if not isinstance(overrides, dict):
        raise SettingsVariableError(f"it must be a JSON object, not {_JSON_KINDS[type(overrides)]}")
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise SettingsVariableError(f"unknown settings {unknown}")
    return overrides


class _VariableSource(PydanticBaseSettingsSource):
    """pydantic-settings source for the ``reserving_settings`` Variable."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError("__call__ reads the whole Variable at once")

    def __call__(self) -> dict[str, Any]:
        return _variable_overrides()


def load_settings(**explicit: Any) -> Settings:
    """Build the settings: explicit keyword arguments, then Variable, then environment, then defaults."""
    return Settings(**explicit)


def as_dict(settings: Settings) -> dict[str, Any]:
    return settings.model_dump()


# The PostgreSQL drivers the warehouse runs on (both are tested); a connection naming none gets the first.
POSTGRES_DRIVERS = ("psycopg2", "psycopg")
# Extras that configure Airflow's PostgresHook, not the driver: left out of the URL, as the hook leaves them out
HOOK_ONLY_EXTRAS = frozenset(
    {
        "iam",
        "redshift",
        "redshift-serverless",
        "cursor",
        "cluster-identifier",
        "workgroup-name",
        "aws_conn_id",
        "sqlalchemy_scheme",
        "sqlalchemy_query",
        "azure_conn_id",
    }
)


def connection_url(conn_id: str, default: str | None = None) -> str:
    """SQLAlchemy URL of an Airflow connection (``AIRFLOW_CONN_*`` env vars work outside tasks).

    A PostgreSQL connection keeps the driver its URI names (``postgresql+psycopg://`` is psycopg 3), psycopg2 when
    it names none, and its extras (a URI's query, e.g. ``?sslmode=require``) as the URL's query. Falls back to
    ``default`` when the connection is not defined; the password never reaches a log.
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
    backend, _, driver = (conn.conn_type or "").lower().partition("+")  # a URI may name its driver
    if backend == "sqlite":
        path = conn.host or conn.schema
        return f"sqlite:///{path}"
    if backend in ("postgres", "postgresql"):
        driver = driver or POSTGRES_DRIVERS[0]
        if driver not in POSTGRES_DRIVERS:
            raise ValueError(
                f"connection {conn_id!r} names the driver {driver!r}; use postgresql:// (psycopg2), "
                "postgresql+psycopg2:// or postgresql+psycopg:// (psycopg 3)"
            )
        return URL.create(
            f"postgresql+{driver}",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
            query=_query(conn_id, conn.extra_dejson),
        ).render_as_string(hide_password=False)
    raise ValueError(f"connection {conn_id!r} has type {conn.conn_type!r}; use postgres or sqlite")


def _query(conn_id: str, extra: dict[str, Any]) -> dict[str, str]:
    """A connection's extras as URL query parameters (the driver's connection options, e.g. sslmode)."""
    query = {}
    for key, value in sorted(extra.items()):
        if key in HOOK_ONLY_EXTRAS:
            continue
        if isinstance(value, dict | list) or value is None:
            raise ValueError(
                f"connection {conn_id!r}: extra {key!r} must be text or a number to pass to the driver, not {value!r}"
            )
        query[key] = str(int(value)) if isinstance(value, bool) else str(value)
    return query


def warehouse_url(settings: Settings | None = None) -> str:
    """The warehouse: connection ``reserving_db``, else the embedded SQLite file."""
    settings = settings or load_settings()
    return connection_url(settings.warehouse_conn_id, default=f"sqlite:///{DEFAULT_SQLITE_PATH}")


def claims_source_url(settings: Settings | None = None) -> str:
    """The claims-system extract: connection ``claims_source``, else the warehouse itself."""
    settings = settings or load_settings()
    return connection_url(settings.claims_source_conn_id, default=warehouse_url(settings))

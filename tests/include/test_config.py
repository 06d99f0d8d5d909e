"""Settings: precedence (keyword > Variable > environment > default), coercion, validation, the settings Variable."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from include.reserving import config
from include.reserving.config import GRAIN_MONTHS, Settings, SettingsVariableError, as_dict, load_settings

VARIABLE_ENV = "AIRFLOW_VAR_RESERVING_SETTINGS"  # how Airflow reads the Variable from the environment
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No settings from the shell that runs the tests."""
    monkeypatch.delenv(VARIABLE_ENV, raising=False)
    for name in Settings.model_fields:
        monkeypatch.delenv(f"RESERVING_{name.upper()}", raising=False)


def _variable(monkeypatch, value) -> None:
    monkeypatch.setenv(VARIABLE_ENV, value if isinstance(value, str) else json.dumps(value))


def test_defaults_without_any_source():
    settings = load_settings()
    assert as_dict(settings) == DEFAULTS
    assert settings.report_recipients == ("chief.actuary@example.com",)
    assert (settings.origin_months, settings.development_months) == (3, 3)


def test_precedence_keyword_then_variable_then_environment_then_default(monkeypatch):
    _variable(monkeypatch, {"psi_threshold": 0.3, "promotion_delta": 0.02, "approval_poke_seconds": 60})
    monkeypatch.setenv("RESERVING_PSI_THRESHOLD", "0.4")
    monkeypatch.setenv("RESERVING_PROMOTION_DELTA", "0.04")
    monkeypatch.setenv("RESERVING_AVE_TOLERANCE", "0.5")
    settings = load_settings(psi_threshold=0.9)
    assert settings.psi_threshold == 0.9  # keyword beats Variable and environment
    assert settings.promotion_delta == 0.02  # Variable beats environment
    assert settings.approval_poke_seconds == 60  # Variable beats default
    assert settings.ave_tolerance == 0.5  # environment beats default
    assert settings.backtest_diagonals == DEFAULTS["backtest_diagonals"]
    assert Settings() == load_settings()  # constructing reads the same sources


def test_environment_strings_are_coerced(monkeypatch):
    monkeypatch.setenv("RESERVING_INCREMENTAL_UNIQUENESS", "false")
    monkeypatch.setenv("RESERVING_BACKTEST_DIAGONALS", "6")
    monkeypatch.setenv("RESERVING_AMOUNT_MAX", "2.5e6")
    monkeypatch.setenv("RESERVING_REPORT_RECIPIENTS", "ada@example.com, bob@example.com,")
    monkeypatch.setenv("RESERVING_EXTRA_CLAIM_TYPES", "Legal")
    settings = load_settings()
    assert settings.incremental_uniqueness is False
    assert settings.backtest_diagonals == 6
    assert settings.amount_max == 2_500_000.0
    assert settings.report_recipients == ("ada@example.com", "bob@example.com")
    assert settings.extra_claim_types == ("Legal",)


def test_variable_lists_may_be_json_lists_or_comma_separated(monkeypatch):
    _variable(monkeypatch, {"report_recipients": ["ada@example.com"], "extra_claim_types": "Legal, Fraud"})
    settings = load_settings()
    assert settings.report_recipients == ("ada@example.com",)
    assert settings.extra_claim_types == ("Legal", "Fraud")


def test_settings_are_immutable():
    settings = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.psi_threshold = 1.0


@pytest.mark.parametrize("grain", ["origin_grain", "development_grain"])
def test_grain_must_be_known(grain):
    with pytest.raises(ValidationError, match=rf"{grain}\n.*'week' is invalid: use one of \['half', 'month'"):
        load_settings(**{grain: "week"})
    assert load_settings(**{grain: "year"}).model_dump()[grain] == "year"
    assert GRAIN_MONTHS["year"] == load_settings(origin_grain="year").origin_months


@pytest.mark.parametrize("value", ["0", "-0.1", "nan"])
def test_psi_threshold_must_be_positive(monkeypatch, value):
    monkeypatch.setenv("RESERVING_PSI_THRESHOLD", value)
    with pytest.raises(ValidationError, match=r"psi_threshold\n.*greater than 0"):
        load_settings()


def test_drift_min_sample_defaults_to_100_and_must_be_at_least_one(monkeypatch):
    assert load_settings().drift_min_sample == 100
    monkeypatch.setenv("RESERVING_DRIFT_MIN_SAMPLE", "30")
    assert load_settings().drift_min_sample == 30
    monkeypatch.setenv("RESERVING_DRIFT_MIN_SAMPLE", "0")
    with pytest.raises(ValidationError, match=r"drift_min_sample\n.*greater than or equal to 1"):
        load_settings()


def test_amount_min_must_be_below_amount_max():
    with pytest.raises(ValidationError, match="setting amount_min=5.0 must be below amount_max=5.0"):
        load_settings(amount_min=5, amount_max=5)


def test_an_unparsable_environment_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("RESERVING_BACKTEST_DIAGONALS", "four")
    with pytest.raises(ValidationError, match=r"backtest_diagonals\n.*valid integer"):
        load_settings()


def test_unknown_keyword_is_an_error():
    with pytest.raises(ValidationError, match=r"psi_treshold\n.*Extra inputs are not permitted"):
        load_settings(psi_treshold=0.3)


def test_unknown_settings_in_the_variable_are_named(monkeypatch):
    _variable(monkeypatch, {"psi_treshold": 0.3, "colour": "red", "psi_threshold": 0.3})
    with pytest.raises(SettingsVariableError, match=r"unknown settings \['colour', 'psi_treshold'\]"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "why"),
    [("{psi_threshold: 0.3}", "it is not JSON"), ("[0.3]", "it must be a JSON object, not an array")],
)
def test_a_variable_that_does_not_parse_is_an_error(monkeypatch, value, why):
    _variable(monkeypatch, value)
    with pytest.raises(SettingsVariableError, match=rf"^Variable reserving_settings cannot be used: {why}"):
        load_settings()


def test_an_empty_variable_means_no_overrides(monkeypatch):
    _variable(monkeypatch, "")
    assert load_settings() == Settings()


def test_outside_a_task_an_unreadable_variable_falls_back_quietly(monkeypatch, caplog):
    from airflow.sdk import Variable

    def unreadable(*args, **kwargs):
        raise RuntimeError("no metadata access here")

    monkeypatch.setattr(Variable, "get", unreadable)
    monkeypatch.setenv("RESERVING_PSI_THRESHOLD", "0.4")
    assert not config.in_task()
    with caplog.at_level("DEBUG", logger=config.__name__):
        assert load_settings().psi_threshold == 0.4
    assert "no metadata access here" in caplog.text


def test_in_task_follows_the_task_runners_supervisor_channel():
    from airflow.sdk.execution_time.supervisor import set_supervisor_comms

    assert not config.in_task()
    with set_supervisor_comms(object()):
        assert config.in_task()
    assert not config.in_task()


# --- inside a real task: dag.test() of tests/integration/dags/settings_probe.py ------------------------------------


@pytest.fixture
def probe(airflow_db, tmp_path, capfd):
    """Run the probe DAG once; returns (run state, what the task saw or None, the run's output)."""
    from tests.integration.dags.settings_probe import settings_probe

    def run():
        out = tmp_path / "seen.json"
        out.unlink(missing_ok=True)
        state = settings_probe().test(run_conf={"out": str(out)}).state
        seen = json.loads(out.read_text()) if out.exists() else None
        return state, seen, capfd.readouterr().out

    return run


def test_in_a_task_the_variable_applies(probe, monkeypatch):
    _variable(monkeypatch, {"psi_threshold": 0.7})
    state, seen, _ = probe()
    assert state == "success"
    expected = json.loads(json.dumps({**DEFAULTS, "psi_threshold": 0.7}))  # tuples arrive as lists
    assert seen == {"in_task": True, "settings": expected}


def test_in_a_task_the_variable_is_read_from_the_metadata_database(probe):
    from airflow.models.variable import Variable

    Variable.set(config.SETTINGS_VARIABLE, json.dumps({"report_recipients": "ada@example.com, bob@example.com"}))
    try:
        state, seen, _ = probe()
    finally:
        Variable.delete(config.SETTINGS_VARIABLE)
    assert state == "success"
    assert seen["settings"]["report_recipients"] == ["ada@example.com", "bob@example.com"]


def test_in_a_task_a_missing_variable_means_defaults(probe):
    state, seen, _ = probe()
    assert state == "success"
    assert seen["settings"]["psi_threshold"] == DEFAULTS["psi_threshold"]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not json", "it is not JSON (Expecting value"),
        ('"0.3"', "it must be a JSON object, not a string"),
        ("null", "it must be a JSON object, not null"),
        ('{"colour": "red"}', "unknown settings ['colour']"),
    ],
)
def test_in_a_task_a_broken_variable_fails_the_task(probe, monkeypatch, value, why):
    _variable(monkeypatch, value)
    state, seen, output = probe()
    assert (state, seen) == ("failed", None)
    assert f"Variable reserving_settings cannot be used: {why}" in output
    assert "fix or delete it (Admin > Variables)" in output


def test_in_a_task_an_unreadable_variable_fails_the_task(probe, monkeypatch):
    from airflow.sdk import Variable

    def unreadable(*args, **kwargs):
        raise PermissionError("access denied by the secrets backend")

    monkeypatch.setattr(Variable, "get", unreadable)
    state, seen, output = probe()
    assert (state, seen) == ("failed", None)
    assert (
        "Variable reserving_settings cannot be used: it cannot be read "
        "(PermissionError: access denied by the secrets backend); fix or delete it (Admin > Variables)"
    ) in output

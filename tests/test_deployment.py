"""Dockerfile and docker-compose.yaml agree with the pinned stack (Docker itself does not run on CI)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import PROJECT

COMPOSE = PROJECT / "docker-compose.yaml"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


def _pinned(package: str) -> str:
    text = (PROJECT / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


def test_dockerfile_builds_on_the_pinned_airflow():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    version = _pinned("apache-airflow")
    assert f"FROM apache/airflow:{version}-python3.11" in dockerfile
    assert f'"apache-airflow=={version}"' in dockerfile
    assert "pip install --no-cache-dir --no-deps -e /opt/airflow/project" in dockerfile


def test_compose_has_every_component_on_celery():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "redis", "mailpit"} <= set(services)
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW_CONN_RESERVING_DB"].startswith("postgresql://")
        assert services[name]["build"] == "."
    assert services["airflow-worker"]["deploy"]["replicas"] == 2
    # published ports only on loopback
    for svc in services.values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:")


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose client is not installed here",
)
def test_docker_compose_config_passes():
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

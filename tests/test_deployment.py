"""Dockerfile and docker-compose.yaml agree with the pinned stack (Docker itself does not run on CI)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import tomllib

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


# What the image is built from: the runtime code and how to install it (no tests, benchmarks, scripts, dev tooling).
RUNTIME_CONTEXT = {"requirements.txt", "pyproject.toml", "include", "dags", "plugins"}


def _pinned(package: str) -> str:
    text = (PROJECT / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.M).group(1)


def test_dockerfile_builds_on_the_pinned_airflow():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    version = _pinned("apache-airflow")
    assert f"FROM apache/airflow:{version}-python3.11" in dockerfile
    assert f'"apache-airflow=={version}"' in dockerfile


def test_image_installs_the_project_non_editable_and_ships_only_runtime_code():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    copies = dict(re.findall(r"^COPY --chown=\S+ (\S+) (\S+)$", dockerfile, re.M))
    assert set(copies) == RUNTIME_CONTEXT
    installs = re.findall(r"pip install .*$", dockerfile, re.M)
    project = copies["pyproject.toml"].rsplit("/", 1)[0]
    assert f"pip install --no-cache-dir --no-deps {project} && rm -rf {project}" in installs
    assert not [line for line in installs if re.search(r"(^|\s)(-e|--editable)\s", line)]
    assert copies["include"] == f"{project}/include"  # built from beside pyproject.toml, then removed
    assert f"AIRFLOW__CORE__DAGS_FOLDER={copies['dags']}" in dockerfile
    assert f"AIRFLOW__CORE__PLUGINS_FOLDER={copies['plugins']}" in dockerfile
    # the build context holds nothing else either
    ignore = [line for line in (PROJECT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "*"
    assert {line[1:].rstrip("/") for line in ignore if line.startswith("!")} == RUNTIME_CONTEXT


def test_a_non_editable_install_carries_every_file_of_include():
    """setuptools ships Python files of packages (folders with __init__.py) and declared package data only."""
    package_data = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"].get("package-data", {})
    missing = []
    for path in sorted((PROJECT / "include").rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        package = next(p for p in path.parents if (p / "__init__.py").is_file())
        if path.suffix == ".py":
            shipped = all((p / "__init__.py").is_file() for p in path.parents if p.is_relative_to(PROJECT / "include"))
        else:
            name = ".".join(package.relative_to(PROJECT).parts)
            globs = [*package_data.get("*", []), *package_data.get(name, [])]
            shipped = any(fnmatch.fnmatch(str(path.relative_to(package)), glob) for glob in globs)
        if not shipped:
            missing.append(str(path.relative_to(PROJECT)))
    assert not missing, f"add __init__.py or declare [tool.setuptools.package-data] in pyproject.toml for {missing}"


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


def test_compose_services_have_health_checks_and_restart_always():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, svc in services.items():
        if name == "airflow-init":  # one-shot: migrates, creates the warehouse tables, exits
            assert "restart" not in svc and "healthcheck" not in svc
            continue
        assert svc.get("restart") == "always", name
        assert svc.get("healthcheck", {}).get("test", [""])[0] in ("CMD", "CMD-SHELL"), name
        assert svc["healthcheck"].get("retries", 0) >= 5, name
    checks = {name: " ".join(svc["healthcheck"]["test"]) for name, svc in services.items() if "healthcheck" in svc}
    assert "http://localhost:8080/api/v2/version" in checks["airflow-apiserver"]
    assert "http://localhost:8974/health" in checks["airflow-scheduler"]
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "--job-type DagProcessorJob" in checks["airflow-dag-processor"]
    assert "--job-type TriggererJob" in checks["airflow-triggerer"]
    assert "celery_executor.app inspect ping" in checks["airflow-worker"]


def test_compose_starts_services_in_order():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in AIRFLOW_SERVICES:
        depends = {dep: cond["condition"] for dep, cond in services[name]["depends_on"].items()}
        assert depends["postgres"] == depends["redis"] == "service_healthy", name
        if name != "airflow-init":
            assert depends["airflow-init"] == "service_completed_successfully", name
    # workers run tasks that talk to the execution API: they start once the api-server is healthy
    assert services["airflow-worker"]["depends_on"].get("airflow-apiserver") == {"condition": "service_healthy"}
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")


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

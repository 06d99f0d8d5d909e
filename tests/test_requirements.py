"""The pins match the imports: every distribution the code imports is pinned with ``==``, and every pin is imported.

Runtime code (include/, dags/, plugins/) is checked against requirements.txt; tests and dev tooling (tests/,
benchmarks/, scripts/, devtools/) against requirements.txt + requirements-test.txt. A module maps to its
distribution through the installed metadata; for Airflow's shared ``airflow`` namespace, to the distribution that
ships the imported module itself (``airflow.sdk`` is apache-airflow-task-sdk, ``airflow.providers.slack`` the Slack
provider).
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

from tests.conftest import PROJECT

RUNTIME_DIRS = ("include", "dags", "plugins")
TOOLING_DIRS = ("tests", "benchmarks", "scripts", "devtools")  # devtools/: the dev package, once it exists
# Folders Airflow (and so the tests) put on sys.path: their modules import as top-level names.
PATH_DIRS = (PROJECT, PROJECT / "dags", PROJECT / "plugins")

# Pinned although no code imports them, and why. An entry whose distribution gets imported must go.
NOT_IMPORTED = {
    "requirements.txt": {
        "apache-airflow": "the Airflow services and CLI; brings apache-airflow-core and -task-sdk at matching versions",
        "apache-airflow-providers-postgres": "Airflow's postgres connection type, used by reserving_db",
        "apache-airflow-providers-celery": "the CeleryExecutor (docker-compose.yaml, tests/integration/test_celery.py)",
        "celery": "the Celery workers and their Redis transport (the [redis] extra) behind the CeleryExecutor",
        "psycopg2-binary": "SQLAlchemy's driver for the postgresql+psycopg2 URLs that config.connection_url builds",
    },
    "requirements-test.txt": {
        "pytest-timeout": "pytest plugin: the timeout marker of the long service tests",
        "pytest-xdist": "pytest plugin: make test runs the suite on two workers (-n 2 --dist loadfile)",
        "ruff": "the linter, a command (make lint)",
        "rich": "console output of the dev tooling (devtools/): drop this entry when it lands",
    },
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _pins(filename: str) -> dict[str, str]:
    """Distribution (normalised) -> pinned version; a requirement without ``==`` fails."""
    pins = {}
    for line in (PROJECT / filename).read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)", requirement)
        assert match, f"{filename}: {requirement!r} is not pinned with =="
        pins[_normal(match[1])] = match[3]
    return pins


@cache
def _imports(dirs: tuple[str, ...]) -> dict[str, set[str]]:
    """Imported third-party module -> the files importing it, for every .py file under ``dirs``."""
    found: dict[str, set[str]] = {}
    for folder in dirs:
        for path in sorted((PROJECT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    if not _is_local_or_stdlib(module.split(".")[0], path.parent):
                        found.setdefault(module, set()).add(str(path.relative_to(PROJECT)))
    return found


def _is_local_or_stdlib(top: str, folder: Path) -> bool:
    if top in sys.stdlib_module_names:
        return True
    return any((base / top).is_dir() or (base / f"{top}.py").is_file() for base in (*PATH_DIRS, folder))


@cache
def _files(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in distribution(dist).files or ())


@cache
def _top_level() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    """The installed distributions (normalised) that provide ``module``."""
    candidates = _top_level().get(module.split(".")[0], [])
    if len(candidates) <= 1:
        return {_normal(d) for d in candidates}
    # a namespace shared by several distributions (airflow): the one shipping the module's own file
    path = module.replace(".", "/")
    for own in (f"{path}.py", f"{path}/__init__.py"):
        owners = {_normal(d) for d in candidates if own in _files(d)}
        if owners:
            return owners
    return {_normal(d) for d in candidates if any(f.startswith(f"{path}/") for f in _files(d))}


def _unpinned(dirs: tuple[str, ...], pins: dict[str, str]) -> list[str]:
    problems = []
    for module, users in sorted(_imports(dirs).items()):
        dists = _distributions(module)
        if not dists:
            problems.append(f"{module} (imported by {sorted(users)}) is not installed")
        elif not dists & set(pins):
            problems.append(f"{module} (imported by {sorted(users)}): pin {' or '.join(sorted(dists))} with ==")
    return problems


def _imported_distributions(dirs: tuple[str, ...]) -> set[str]:
    return set().union(*(_distributions(module) for module in _imports(dirs)))


def test_every_runtime_import_is_pinned():
    problems = _unpinned(RUNTIME_DIRS, _pins("requirements.txt"))
    assert not problems, "requirements.txt:\n" + "\n".join(problems)


def test_every_tooling_import_is_pinned():
    problems = _unpinned(RUNTIME_DIRS + TOOLING_DIRS, _pins("requirements.txt") | _pins("requirements-test.txt"))
    assert not problems, "requirements.txt + requirements-test.txt:\n" + "\n".join(problems)


def test_every_pin_is_imported_or_a_documented_exception():
    runtime = _imported_distributions(RUNTIME_DIRS)
    tooling = _imported_distributions(RUNTIME_DIRS + TOOLING_DIRS) - set(_pins("requirements.txt"))
    for filename, imported in (("requirements.txt", runtime), ("requirements-test.txt", tooling)):
        exceptions = {_normal(name) for name in NOT_IMPORTED[filename]}
        unused = set(_pins(filename)) - imported - exceptions
        assert not unused, f"{filename} pins {sorted(unused)}, which no code imports: drop them or say why here"
        stale = exceptions & imported
        assert not stale, f"{sorted(stale)} are imported now: drop them from NOT_IMPORTED[{filename!r}]"
        unpinned = exceptions - set(_pins(filename))
        assert not unpinned, f"NOT_IMPORTED[{filename!r}] names {sorted(unpinned)}, which {filename} does not pin"


def test_pins_are_the_installed_versions():
    for filename in NOT_IMPORTED:
        for name, version in _pins(filename).items():
            assert distribution(name).version == version, f"{filename}: {name}=={version} is not what is installed"


def test_a_runtime_pin_is_not_repeated_for_tests():
    assert set(_pins("requirements.txt")) & set(_pins("requirements-test.txt")) == set()

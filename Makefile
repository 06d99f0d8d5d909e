# Two commands matter: `make demo` (the monthly job on the embedded SQLite default) and `make test`.
# Both set everything up first, idempotently: virtualenv, pinned install, Airflow home, metadata DB.

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test test-fast lint clean ui system-deps

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(AIRFLOW_HOME)/airflow.db: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)

# Tests render PDF pages (pdftoppm) and drive the Reserving view in headless Chromium: Debian packages.
system-deps:
	@if command -v pdftoppm >/dev/null && command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils chromium >/dev/null; \
	else echo "note: install poppler-utils and chromium for the PDF-render and browser tests (they skip without)"; fi

setup: $(STAMP) $(AIRFLOW_HOME)/airflow.db

demo: setup
	$(BIN)/python scripts/demo.py

# Two workers, one test file each at a time (module-scoped Airflow services stay shared): the end-to-end tests
# spend much of their time waiting on Airflow's services, which the other worker fills.
test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The unit tier: everything but the end-to-end runs and Airflow services (a few minutes).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# The Airflow UI on http://localhost:8080 with the DAG, the Reserving view (Browse > Reserving) and the demo data.
# Log in as admin; the password is printed and saved in .airflow/simple_auth_manager_passwords.json.generated.
# Another port: `AIRFLOW__API__PORT=8090 make ui`. The base URL follows it unless AIRFLOW__API__BASE_URL is set:
# tasks reach the execution API there and alerts link there (Airflow assumes localhost:8080 otherwise).
UI_PORT = $(or $(AIRFLOW__API__PORT),8080)
ui: setup
	AIRFLOW__API__PORT=$(UI_PORT) AIRFLOW__API__BASE_URL=$(or $(AIRFLOW__API__BASE_URL),http://localhost:$(UI_PORT)) \
		$(BIN)/airflow standalone

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(AIRFLOW_HOME) data artifacts test-artifacts

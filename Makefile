# Two entry points for a fresh machine: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export DVC_NO_ANALYTICS := 1
export MTREC_HOME ?= $(CURDIR)
# Airflow runs on its embedded SQLite DB inside the checkout; the DAGs folder is the repo's dags/.
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False

# Airflow deployment profile for `make airflow` / `make airflow-db`: deploy/airflow/<PROFILE>.env
# (sqlite = embedded DB + LocalExecutor; postgres-local = PostgreSQL + LocalExecutor;
# celery = PostgreSQL + CeleryExecutor with a Redis broker and a worker on queues default,gpu).
PROFILE ?= sqlite
DEMO_DATASET ?= ml100k
DEMO_DATES ?= 1998-03-01 1998-03-02

.PHONY: install demo test test-slow reliability-doc airflow airflow-db browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Migrate the profile's metadata DB (creating the PostgreSQL database if needed) and create the
# pool "gpu" that the train task needs: Airflow never schedules a task whose pool is missing.
airflow-db: install
	$(PY) deploy/airflow/launch.py init-db --profile $(PROFILE)

# The Airflow UI with the project's DAGs, the DAG unpaused; login admin / admin. Foreground:
# Ctrl-C stops every component. `make airflow PROFILE=postgres-local|celery AIRFLOW_PORT=8080`.
airflow: install
	$(PY) deploy/airflow/launch.py up --profile $(PROFILE)

demo: install airflow-db
	@for d in $(DEMO_DATES); do \
	  echo "== airflow dags test mtl_daily_retrain $$d"; \
	  $(BIN)/airflow dags test mtl_daily_retrain $$d -c '{"dataset": "$(DEMO_DATASET)"}' > .airflow/dags-test-$$d.log 2>&1 \
	    || { tail -n 60 .airflow/dags-test-$$d.log; exit 1; }; \
	  $(BIN)/mtrec summary --dataset $(DEMO_DATASET) --date $$d; \
	done

# The report test opens the HTML in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The layer contracts first (.importlinter; seconds), then the suite (tests/test_layers.py runs
# them again, so a bare pytest run checks them too).
test: install browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -q -m "not slow" --durations=30

test-slow: install
	$(BIN)/pytest -q -m "slow"

# docs/RELIABILITY.md: the whole reliability suite, which writes the table (only with this flag, and only
# when every reliability test ran; `make test` runs them too and leaves the tracked file alone).
reliability-doc: install
	MTREC_WRITE_RELIABILITY=1 $(BIN)/pytest -q tests/reliability

clean:
	rm -rf .airflow data artifacts

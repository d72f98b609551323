# recsys-retrain: the two set-up commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Embedded defaults: everything under var/, no service to start by hand.
export AIRFLOW_HOME ?= $(CURDIR)/var/airflow
export RECSYS_DATA ?= $(CURDIR)/var/data
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}
export PYTHONPATH := $(CURDIR)
export PATH := $(BIN):$(PATH)

DEMO_DAY ?= 2026-03-02
BENCH_DAYS ?= 4
BENCH_ROWS ?= 5000000
BENCH_TRAIN_ROWS ?= 2000000
BENCH_HPO_ARGS ?=

.PHONY: venv demo test lint stress-hpo calibrate-advisor bench-preprocess bench-validate bench-train bench-quality bench-hpo bench-hpo-space bench-continuous bench-day bench-stopping bench-dashboard bench-scale bench-parse bench-baseline bench-reliability ui clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --requirement requirements.txt
	$(BIN)/pip install --quiet --no-deps --requirement requirements-nodeps.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	$(BIN)/python scripts/check_env.py
	touch $(STAMP)

demo: venv
	$(BIN)/python scripts/demo.py --day $(DEMO_DAY)

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .

# The optimizer's concurrency tests, STRESS_RUNS times in a row (SQLite and PostgreSQL); stops at the first
# failure and keeps each run's output in var/stress/.
STRESS_RUNS ?= 20
stress-hpo: venv
	mkdir -p var/stress
	for run in $$(seq 1 $(STRESS_RUNS)); do \
		$(BIN)/python -m pytest -q tests/test_hpo_workers.py tests/test_hpo_race.py > var/stress/run-$$run.log 2>&1 \
			|| { echo "run $$run of $(STRESS_RUNS) failed: var/stress/run-$$run.log"; exit 1; }; \
		echo "run $$run of $(STRESS_RUNS): $$(tail -n 1 var/stress/run-$$run.log)"; \
	done

bench-preprocess: venv
	$(BIN)/python scripts/bench_preprocess.py --days $(BENCH_DAYS) --rows $(BENCH_ROWS)

bench-validate: venv
	$(BIN)/python scripts/bench_validate.py

bench-train: venv
	$(BIN)/python scripts/bench_train.py --train-rows $(BENCH_TRAIN_ROWS)

bench-quality: venv
	$(BIN)/python scripts/bench_quality.py

# The advisor's learning-rate and batch measurements, on its calibration data only (docs/benchmarks/calibration.json).
calibrate-advisor: venv
	$(BIN)/python scripts/calibrate_advisor.py

bench-hpo: venv
	$(BIN)/python scripts/bench_hpo.py $(BENCH_HPO_ARGS)

# The advised DLRM space's own ceiling for multi-metric selection, on bench-hpo's held-out Criteo setting.
bench-hpo-space: venv
	$(BIN)/python scripts/bench_hpo_space.py

# 30 replayed days (full Criteo cardinalities, a slow drift, two lasting shifts) under three retraining policies:
# CPU-seconds and served AUC per day (var/bench/continuous.json, continuous.png). BENCH_CONTINUOUS_ARGS: e.g. --rows.
BENCH_CONTINUOUS_ARGS ?=
bench-continuous: venv
	$(BIN)/python scripts/bench_continuous.py $(BENCH_CONTINUOUS_ARGS)

# The early-stopping rules (none, median, successive halving) on bench-hpo's held-out Criteo setting: compute
# and AUC of the same search under each (var/bench/stopping.json). BENCH_STOPPING_ARGS: e.g. --repeats.
BENCH_STOPPING_ARGS ?=
bench-stopping: venv
	$(BIN)/python scripts/bench_stopping.py $(BENCH_STOPPING_ARGS)

# One large generated day (100M rows at full Criteo cardinalities by default) through the whole DAG: wall and
# CPU-seconds per stage against the dagrun_timeout (var/bench/day.json). BENCH_DAY_ARGS: e.g. --rows, --conf.
BENCH_DAY_ARGS ?=
bench-day: venv
	$(BIN)/python scripts/bench_day.py $(BENCH_DAY_ARGS)

# The SigOpt-compatible server under the issue's full load (8 clients x 200 suggest/observe cycles); the
# test suite runs the same test at 8 x 12.
bench-reliability: venv
	RELIABILITY_LOAD_WORKERS=8 RELIABILITY_LOAD_CYCLES=200 RELIABILITY_LEDGER=$(CURDIR)/var/bench/reliability-load.json \
		$(BIN)/python -m pytest -q -s tests/reliability/test_load.py -k concurrent_workers

ui: venv
	$(BIN)/airflow standalone

bench-scale: venv
	$(BIN)/python scripts/bench_scale.py

# The champion against a linear baseline retrained every day on the same window, on every shipped spec:
# var/bench/baseline.json (BENCH_BASELINE_ARGS=--publish writes docs/benchmarks/ too).
bench-baseline: venv
	$(BIN)/python scripts/bench_baseline.py $(BENCH_BASELINE_ARGS)

# Parse time of the DAG folder with 1 dataset spec against 50 (one DAG per spec): docs/benchmarks/parse.json.
bench-parse: venv
	$(BIN)/python scripts/bench_parse.py $(BENCH_PARSE_ARGS)

bench-dashboard: venv
	$(BIN)/python scripts/bench_dashboard.py

clean:
	rm -rf var/

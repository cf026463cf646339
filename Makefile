# Loupe — every entry point. Only python3 (>= 3.11) and Java 17 are assumed; the rest is installed
# here: uv (into .tools/ if it is not on PATH), then the locked environment (.venv/ from uv.lock).
SHELL := /bin/bash
.DEFAULT_GOAL := help

export LOUPE_HOME ?= $(CURDIR)/.loupe
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export LOUPE_DAGSTER_STORAGE ?= $(LOUPE_HOME)/dagster
export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PY := $(UV) run --frozen python

.PHONY: help setup run live lint test test-e2e test-fast bench bench-pipeline bench-features bench-online-reader bench-quality bench-fanout bench-fanout-cluster bench-online-cluster bench-candidates bench-serving bench-cascade bench-overload bench-first-run bench-stream bench-live bench-controls bench-scaling bench-search bench-stories bench-labels profile-serving ui mlflow-ui feast clean

help:
	@echo "make run     generate the simulated world and run the platform (LOUPE_WORLD, LOUPE_SERVE)"
	@echo "make live    make run (tiny world), then simulated users use the service for a day at 240x (LOUPE_LIVE_HOURS)"
	@echo "make test    lint, then run every test but the end-to-end ones (what CI runs)"
	@echo "make test-fast  the unit tier only: no Spark, no server, no Dagster run"
	@echo "make lint    ruff and the layer contract (lint-imports)"
	@echo "make bench   run every benchmark (JSON under benchmarks/results/)"
	@echo "make bench-live  v2 against v1 live, and a ranker trained on Loupe's own pages (tiny, ~30 min) -> benchmarks/results/live_loop.json"
	@echo "make bench-controls  fatigue, integrity, new-author boost: each on against off, live (tiny, ~35 min) -> benchmarks/results/controls.json"
	@echo "make bench-first-run  a fresh clone's setup + make run, tiny and small, timed -> benchmarks/results/first_run.json"
	@echo "make ui      open the Dagster UI on the workspace"
	@echo "make mlflow-ui  open the MLflow UI on the workspace (runs, registry, promotions)"
	@echo "make run-open-bandit  fetch the Open Bandit Dataset sample, convert it, run the platform on it"
	@echo "make bench-real  OPE on real data (Open Bandit) and in the simulator -> benchmarks/results/real_data.json"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

setup: $(if $(shell command -v uv 2>/dev/null),,$(CURDIR)/.tools/bin/uv)
	@java -version >/dev/null 2>&1 || { echo "Java 17 is required for Spark (java not found)"; exit 1; }
	@# --compile-bytecode: site-packages' .pyc written once here (~25 s on 2 cores). Without it a process
	@# compiles every module it imports, and where PYTHONDONTWRITEBYTECODE is set (containers, CI) does so on
	@# every start: `import pipelines.run` 20 s -> 12 s; make run, the service's workers and tests each start.
	@$(UV) sync --frozen --compile-bytecode $(if $(wildcard $(CURDIR)/.venv),--quiet,)  # quiet once the environment exists: make run's console is Loupe's

run: setup
	@$(PY) -m pipelines.run

live: setup  # make run (tiny world unless LOUPE_WORLD says), then simulated users on the service for a day at 240x
	@LOUPE_LIVE=1 LOUPE_WORLD=$${LOUPE_WORLD:-tiny} LOUPE_CLOCK_SPEED=$${LOUPE_CLOCK_SPEED:-240} $(PY) -m pipelines.run

lint: setup  # style and bug rules (ruff), and the one-way layer order of the rooms (import-linter)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen lint-imports

test: setup lint
	$(UV) run --frozen pytest -m "not e2e"

test-e2e: setup  # a team's export and a graph-only export through `make run` (tests/e2e/test_bring_your_own_logs.py)
	$(UV) run --frozen pytest -m e2e

test-fast: setup  # the unit tier: no Spark, no server, no Dagster run
	$(UV) run --frozen pytest -m unit

bench: bench-pipeline bench-features bench-scaling bench-online-reader bench-live bench-controls bench-quality bench-fanout bench-fanout-cluster bench-online-cluster bench-candidates bench-serving bench-cascade bench-overload bench-stream bench-search bench-stories bench-labels

bench-first-run: setup  # a fresh clone's make setup + make run, tiny and small (idle machine)
	$(PY) -m benchmarks.bench_first_run

bench-pipeline: setup
	$(PY) -m benchmarks.bench_pipeline

ui: setup
	$(PY) -m pipelines.run ui

clean:
	rm -rf $(LOUPE_HOME)

bench-features: setup
	$(PY) -m benchmarks.bench_features

bench-scaling: setup  # tiny, small, medium each in its own workspace (~25 min): results/scaling.json + .png
	$(PY) -m benchmarks.bench_scaling

bench-online-reader: setup
	$(PY) -m benchmarks.bench_online_reader

bench-quality: setup
	$(PY) -m benchmarks.bench_quality

bench-fanout: setup
	$(PY) -m benchmarks.bench_fanout

bench-fanout-cluster: setup  # the same on a three-primary Valkey cluster on loopback
	$(PY) -m benchmarks.bench_fanout --cluster

bench-online-cluster: setup  # the online writers on a three-primary Valkey cluster against one server
	$(PY) -m benchmarks.bench_online_cluster

bench-live: setup  # tiny world: v2 against v1 live, and a ranker trained on Loupe's own pages (~30 min)
	$(PY) -m benchmarks.bench_live

bench-controls: setup  # tiny world: fatigue, integrity and the new-author boost, each on against off, live (~35 min)
	$(PY) -m benchmarks.bench_controls

bench-stream: setup  # the medium world's last day through the event stream vs raw XADD/XREADGROUP
	$(PY) -m benchmarks.bench_stream

bench-candidates: setup
	$(PY) -m benchmarks.bench_candidates

bench-serving: setup
	$(PY) -m benchmarks.bench_serving

profile-serving: setup  # docs/serving_profile.svg: a flame graph of the service under bench-serving's load
	$(PY) -m benchmarks.profile_serving

bench-overload: setup  # bench-serving's state (prepared if absent), with and without admission
	$(PY) -m benchmarks.bench_overload

bench-cascade: setup  # after bench-serving: it reads the state bench-serving prepares
	$(PY) -m benchmarks.bench_cascade

bench-search: setup  # medium world (tiny without it): POST /v1/search's query path vs a LIKE scan, precision@10
	$(PY) -m benchmarks.bench_search

bench-stories: setup  # medium world (tiny without it): expired stories served (must be 0) and the tray's p50/p99 vs a naive tray
	$(PY) -m benchmarks.bench_stories

bench-labels: setup  # medium world (tiny without it): the integrity labels' precision and recall against the truth
	$(PY) -m benchmarks.bench_labels

mlflow-ui: setup
	$(PY) -m pipelines.run mlflow-ui

feast: setup
	$(PY) -m features.feast_cli $(ARGS)

# Real public data: the Open Bandit Dataset sample inside obp's sdist (docs/real_data.md). Fetched once
# into the workspace (nothing of it is committed), converted into a landing folder of its own.
.PHONY: run-open-bandit open-bandit-landing bench-real
OPEN_BANDIT := $(LOUPE_HOME)/open_bandit
OBP_SDIST := $(OPEN_BANDIT)/obp-0.5.7.tar.gz

$(OBP_SDIST):
	$(UV) tool run --from pip pip download --quiet --no-deps --no-binary :all: --ignore-requires-python \
		obp==0.5.7 -d $(OPEN_BANDIT)

open-bandit-landing: setup $(OBP_SDIST)
	$(PY) -m data.importers open_bandit --sdist $(OBP_SDIST) --landing $(OPEN_BANDIT)/landing

run-open-bandit: open-bandit-landing
	LOUPE_LANDING=$(OPEN_BANDIT)/landing LOUPE_SOURCE=landing $(PY) -m pipelines.run

bench-real: setup $(OBP_SDIST)  # the simulator section reads bench/medium's champion (make bench-quality)
	$(PY) -m benchmarks.bench_real

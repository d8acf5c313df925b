# Counter service: `make run` runs it, `make test` tests it.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help deps install run up down status test test-unit lint deploy-check loadtest bench bench-quick bench-batch flush-bench faults faults-quick clean

help:
	@echo "make run | up | down | status | test | test-unit | lint | deploy-check | loadtest | bench | bench-quick | flush-bench | faults | faults-quick | clean"

# System packages (redis-server, postgresql, wrk, ...): installed with apt when root, else listed.
deps:
	@bash deploy/ensure-system-packages.sh

# meinheld is built from source against the installed greenlet (deploy/build_meinheld.py
# says why): PyPI's build pins greenlet<0.5, which does not build on Python 3.11+.
$(STAMP): pyproject.toml deploy/build_meinheld.py
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) deploy/build_meinheld.py
	@touch $@

install: deps $(STAMP)

# REPLICAS=1: a replica per master; NODE_TIMEOUT_MS: the cluster's node timeout (failover speed).
REPLICAS ?= 0
NODE_TIMEOUT_MS ?= 5000
STACK_OPTS = --replicas $(REPLICAS) --node-timeout-ms $(NODE_TIMEOUT_MS)

run: install           ## foreground: Redis Cluster + PostgreSQL + service (+ flusher); Ctrl-C stops all
	$(PY) -m devstack run $(STACK_OPTS)

up: install            ## the same in the background; writes .run/env
	$(PY) -m devstack up $(STACK_OPTS)

down:                  ## stops every process `make up` started, by pid
	@test -x $(PY) && $(PY) -m devstack down || true

status:
	$(PY) -m devstack status

test: install          ## the whole suite against throwaway real servers it starts itself
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

lint: $(STAMP)          ## ruff (lint + format) and mypy --strict over all the Python code
	$(VENV)/bin/ruff check $(wildcard service tests devstack loadtest benchmarks deploy)
	$(VENV)/bin/ruff format --check $(wildcard service tests devstack loadtest benchmarks deploy)
	$(VENV)/bin/mypy

# Offline, no Docker engine needed: hadolint, the Kubernetes schemas bundled with
# kubernetes-validate (oldest and newest supported), the Compose spec bundled with
# check-jsonschema, then deploy/deploycheck (commands, ports, COUNTER_* variables and grace
# periods against the code). The tools are pinned in pyproject.toml's `deploy` extra.
DEPLOY_TOOLS := $(VENV)/.deploy-tools
K8S_MANIFESTS := $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))

$(DEPLOY_TOOLS): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[deploy]'
	@touch $@

deploy-check: $(DEPLOY_TOOLS)
	$(VENV)/bin/hadolint --config deploy/hadolint.yaml deploy/Dockerfile
	$(VENV)/bin/kubernetes-validate --strict --quiet -k 1.30.0 $(K8S_MANIFESTS)
	$(VENV)/bin/kubernetes-validate --strict --quiet -k 1.37.0 $(K8S_MANIFESTS)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(PY) -m deploy.deploycheck

loadtest: install      ## Locust, headless and bounded, against `make up`'s stack (starts one if needed)
	$(PY) loadtest/run.py

bench-quick: install   ## ~2 minutes: the service against its ceiling, naive baselines and Go peer; ratios last
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.run --profile quick

bench: install         ## ~27 minutes: the full profile; report in benchmarks/results/ and LATEST.md
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.run --profile full

bench-batch: install   ## ~1 minute: the batch endpoint (100 per request) against redis-py pipelined INCRBY
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m benchmarks.batch_bench --duration 10

flush-bench: install   ## COPY flush against executemany for 100,000 dirty counters
	$(PY) -m benchmarks.flush_bench

# The fault suite (tests/faults/, marker `fault`): real faults under continuous load, every
# counter's history checked. Needs root for the black-hole scenarios (network namespaces).
faults: install        ## ~7 minutes; report in benchmarks/results/faults-<UTC>.md and FAULTS.md
	COUNTER_FAULTS_REPORT=benchmarks/results $(PY) -m pytest -m fault tests/faults

faults-quick: install  ## the same with load periods halved (CI); report in .run/faults/
	COUNTER_FAULTS_QUICK=1 COUNTER_FAULTS_REPORT=.run/faults $(PY) -m pytest -m fault tests/faults

clean: down
	rm -rf .run $(VENV) *.egg-info

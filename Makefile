# Entry points for development, tests and the demo. Every target sets up what it needs.
SHELL := /bin/bash
PYTHON := .venv/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help venv binaries cluster-up cluster-down cluster-status cluster-purge kind-up kind-down \
        crds crds-check docs test test-unit demo bench

help:
	@echo "make demo            fine-tune a real model end to end on the local cluster"
	@echo "make test            run every test (sets up the environment and the local cluster)"
	@echo "make test-unit       run the tests that need no cluster"
	@echo "make cluster-up      start the local cluster (builds its binaries on first use)"
	@echo "make cluster-down    stop the local cluster, keeping its state"
	@echo "make cluster-status  show the local cluster's components and nodes"
	@echo "make crds            regenerate crds/ and docs/api-reference.md from the API models"
	@echo "make bench           run the benchmarks and write bench/results/*.json"
	@echo "make kind-up         create a kind cluster with a fake GPU node (needs Docker)"

venv:
	@bash hack/venv.sh

binaries:
	@bash hack/cluster/build-binaries.sh >/dev/null

cluster-up: venv
	@$(PYTHON) -m tests.cluster up

cluster-down: venv
	@$(PYTHON) -m tests.cluster down

cluster-status: venv
	@$(PYTHON) -m tests.cluster status

cluster-purge: venv
	@$(PYTHON) -m tests.cluster purge

kind-up:
	@bash hack/kind/kind-up.sh

kind-down:
	@kind delete cluster --name aiml

crds: venv
	@$(PYTHON) -m ml_training_operator.api.crdgen --out crds/
	@$(PYTHON) -m ml_training_operator.api.reference --out docs/api-reference.md

crds-check: venv
	@$(PYTHON) -m ml_training_operator.api.crdgen --out crds/ --check
	@$(PYTHON) -m ml_training_operator.api.reference --out docs/api-reference.md --check

test: venv binaries
	@bash hack/test.sh

test-unit: venv
	@$(PYTHON) -m pytest tests/unit -q

demo: venv binaries
	@$(PYTHON) hack/demo.py

bench: venv binaries
	@$(PYTHON) -m bench

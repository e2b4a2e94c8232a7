#!/usr/bin/env bash
# Run the whole test suite. The pytest session brings up its own local cluster (state in
# .local/test-cluster, API server on 127.0.0.1:17443), separate from the one that
# make cluster-up and make demo use, and stops it again if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export AIML_CLUSTER_STATE_DIR="${AIML_CLUSTER_STATE_DIR:-$PWD/.local/test-cluster}"
export AIML_CLUSTER_PORT_BASE="${AIML_CLUSTER_PORT_BASE:-17443}"
exec .venv/bin/python -m pytest tests -ra -q --durations=20 "$@"

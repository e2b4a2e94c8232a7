#!/usr/bin/env bash
# Run the whole test suite. The pytest session brings the local cluster up (or reuses a
# running one) and stops it again if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest tests -ra -q --durations=15 "$@"

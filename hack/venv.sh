#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv.
# Reinstalls only when pyproject.toml changed since the last successful install.
# Usage: hack/venv.sh [extras]     (default extras: dev,trainer)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-dev,trainer}"
venv="$root/.venv"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)-${extras//,/-}"
if [[ -f "$stamp" ]]; then
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "[venv] creating $venv with $("$python" --version)" >&2
  "$python" -m venv "$venv"
fi
echo "[venv] installing .[$extras] (the first install downloads PyTorch, several GiB)" >&2
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet --progress-bar off -e "$root[$extras]"
rm -f "$venv"/.installed-*
touch "$stamp"

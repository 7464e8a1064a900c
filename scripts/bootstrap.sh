#!/usr/bin/env bash
# Create .venv with the pinned dependency set (constraints.txt) and wattflow installed editable.
# Idempotent: a venv whose constraints are unchanged is left alone. Then the mypyc build of the
# ingestion hot loop (scripts/build_native.py), rebuilt only when its sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
stamp=".venv/.constraints.sha"
want="$(sha256sum constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  # the mypyc build of the ingestion hot loop, rebuilt when its sources changed
  exec scripts/build_native.sh
fi
echo "[bootstrap] installing Python dependencies into .venv (pip cache makes repeats fast)" >&2
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
exec scripts/build_native.sh

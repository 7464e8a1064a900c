#!/usr/bin/env bash
# All checks: the real local stack, lint, types of the pure core, then every test tier.
# In CI (CI=true) a test skipped for want of a server fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
PY=.venv/bin/python
$PY -m app.stack up
$PY -m app.setup
echo "[test] ruff" >&2
.venv/bin/ruff check .
echo "[test] mypy (pure core)" >&2
.venv/bin/mypy
echo "[test] pytest" >&2
exec .venv/bin/pytest -p no:cacheprovider "$@"

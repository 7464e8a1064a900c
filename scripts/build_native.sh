#!/usr/bin/env bash
# The mypyc build of the ingestion hot loop, only when its sources changed. Optional: if it
# cannot be built (no C compiler, say), the plain-Python modules run, ~1.5x slower, and
# tests/unit/test_native.py fails in CI to say so.
cd "$(dirname "$0")/.."
if ! .venv/bin/python scripts/build_native.py --if-stale; then
  echo "[bootstrap] WARNING: the mypyc build failed (log above); the plain-Python ingestion" \
       "modules will run" >&2
  .venv/bin/python scripts/build_native.py --clean || true
fi
exit 0

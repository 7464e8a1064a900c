"""The mypyc build of the ingestion hot loop (scripts/build_native.py, app.domain.native): CI
runs the compiled modules, and the same ingestion tests pass on the plain-Python ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.domain import native

REPO = Path(__file__).resolve().parents[2]


def test_ci_runs_the_current_compiled_build() -> None:
    # make (scripts/bootstrap.sh) builds it; a stale build is never imported
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        assert native.current(), "no current mypyc build: scripts/build_native.py --if-stale"
    assert native.compiled() == native.current()


def test_the_ingestion_tests_pass_on_the_plain_python_modules() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.pure_sources", "tests/unit/test_ingest.py", "tests/unit/test_ingest_properties.py",
         "tests/unit/test_tic.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_a_stale_build_is_detected(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for m in native.MODULES:
        (tmp_path / f"{m}.py").write_text(f"# {m}\n")
        (tmp_path / f"{m}.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    monkeypatch.setattr(native, "HERE", tmp_path)
    monkeypatch.setattr(native, "STAMP", tmp_path / "native.json")
    assert native.built() and not native.current()  # no stamp
    (tmp_path / "native.json").write_text(__import__("json").dumps(native.source_hashes()))
    assert native.current()
    (tmp_path / "ingest.py").write_text("# ingest, edited\n")
    assert not native.current()

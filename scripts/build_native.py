"""Compile the ingestion hot loop with mypyc, in place (optional: everything runs without it).

``app/domain/ingest.py`` and ``app/domain/ingest_store.py`` are plain, fully typed Python; built
with mypyc they run about 1.4x faster (``python -m bench.ingest``: the JSON ingest cost drops
from ~2x to ~1.4x that of ``orjson.loads``). The build puts extension modules next to the
sources (``app/domain/ingest.cpython-*.so``, ``ingest_store.cpython-*.so`` and their
``*__mypyc.cpython-*.so`` libraries), which Python imports instead of the ``.py`` files; the
generated C and objects go to ``build/native``. All of it is git-ignored.

A built extension is a snapshot of the sources: the build records their SHA-256 in
``app/domain/native.json``, and ``app.domain.native`` imports the plain-Python modules (with a
warning) when the sources no longer match it. ``--if-stale`` rebuilds only then (``make`` runs
it from ``scripts/bootstrap.sh``); ``--clean`` removes the build.

Run: ``.venv/bin/python scripts/build_native.py [--clean | --if-stale]`` (about 10-20 s, needs a
C compiler and the Python headers; mypy, which ships mypyc, is a dev dependency).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["app/domain/ingest.py", "app/domain/ingest_store.py"]  # = app.domain.native.MODULES
BUILD = "build/native"
BUILD_EXT = ["build_ext", "--inplace", f"--build-temp={BUILD}/temp", f"--build-lib={BUILD}/lib"]


def clean() -> None:
    for pattern in ("ingest.cpython-*", "ingest_store.cpython-*", "ingest*__mypyc.*",
                    "native.json"):
        for path in (ROOT / "app/domain").glob(pattern):
            path.unlink()
    shutil.rmtree(ROOT / BUILD, ignore_errors=True)


def _native():  # type: ignore[no-untyped-def]
    """``app/domain/native.py`` by path (importing ``app.domain`` would run its check)."""
    spec = importlib.util.spec_from_file_location("_wattflow_native",
                                                  ROOT / "app/domain/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    os.chdir(ROOT)
    native = _native()
    if "--if-stale" in sys.argv[1:] and native.current():
        return
    clean()
    if "--clean" in sys.argv[1:]:
        return
    print("[native] compiling the ingestion hot loop with mypyc (~15 s)", file=sys.stderr)
    from mypyc.build import mypycify  # imported late: --clean needs no mypy
    from setuptools import setup

    warnings.filterwarnings("ignore", message=r".*\[tool.setuptools\]")  # read from pyproject
    setup(
        name="wattflow-native",
        # separate: each module gets its own shared library inside the package (with one group,
        # mypyc puts a shared library at the top level, outside any package)
        ext_modules=mypycify(MODULES, separate=True, target_dir=BUILD, opt_level="3"),
        script_args=["-q", *BUILD_EXT],
    )
    native.STAMP.write_text(json.dumps(native.source_hashes(), indent=1) + "\n")


if __name__ == "__main__":
    main()

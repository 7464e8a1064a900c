"""The optional mypyc build of the ingestion hot loop: whether it is loaded, and whether it is
the build of the sources beside it.

``scripts/build_native.py`` compiles :data:`MODULES` in place (extension modules next to the
sources, which Python imports instead of the ``.py`` files) and records the SHA-256 of each
source in :data:`STAMP`. A build is a snapshot: after an edit of either module it would keep
running the old code. So when ``app.domain`` is imported, :func:`check` compares the sources
with the stamp and, if they differ, warns and imports the plain-Python modules instead (the
two behave identically; the compiled ones are ~1.4x faster). ``make`` rebuilds a stale build
(``scripts/bootstrap.sh``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import warnings
from pathlib import Path

MODULES = ("ingest_store", "ingest")
"""The compiled modules, in import order (``ingest`` uses ``ingest_store``'s compiled class)."""
HERE = Path(__file__).resolve().parent
STAMP = HERE / "native.json"
"""Written by the build: ``{"<module>": "<sha256 of its source>"}``."""


def source_hashes() -> dict[str, str]:
    return {m: hashlib.sha256((HERE / f"{m}.py").read_bytes()).hexdigest() for m in MODULES}


def built() -> bool:
    """Extension modules of a build are present."""
    return any(any(HERE.glob(f"{m}.cpython-*")) for m in MODULES)


def current() -> bool:
    """A build is present and it was built from the sources as they are now."""
    if not built():
        return False
    try:
        recorded = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded == source_hashes())


def compiled() -> bool:
    """The ingestion modules in use are the compiled ones."""
    from app.domain import ingest

    return not str(getattr(ingest, "__file__", "")).endswith(".py")


def use_sources() -> None:
    """Import the plain-Python modules even though a build is present (a stale build, or a
    test run of the interpreted code). Call before anything imports them."""
    for name in MODULES:
        full = f"{__package__}.{name}"
        loaded = sys.modules.get(full)
        if loaded is not None and str(getattr(loaded, "__file__", "")).endswith(".py"):
            continue
        spec = importlib.util.spec_from_file_location(full, HERE / f"{name}.py")
        if spec is None or spec.loader is None:  # pragma: no cover - the file is ours
            raise ImportError(f"cannot load {full} from source")
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)


def check() -> None:
    """A stale build is not used: warn, and import the sources."""
    if built() and not current():
        warnings.warn("the compiled ingestion modules are older than their sources: using the "
                      "plain-Python ones (rebuild: python scripts/build_native.py, or make)",
                      RuntimeWarning, stacklevel=2)
        use_sources()

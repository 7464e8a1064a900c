"""pytest plugin (``-p tests.pure_sources``): run the tests on the plain-Python ingestion modules
even when the mypyc build is present (app.domain.native)."""

from app.domain import native

native.use_sources()
assert not native.compiled(), "the plain-Python ingestion modules did not load"

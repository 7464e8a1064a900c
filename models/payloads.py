"""Raw meter payload schemas (topics ``meter.raw.json`` and ``meter.raw.tic``).

The Structs are defined in the pure core (:mod:`app.domain.payloads`), which decodes them, and
re-exported here for the wiring layer and the simulators. See ``docs/ingest.md``.
"""

from __future__ import annotations

from app.domain.payloads import (
    SUPPORTED_JSON_VERSIONS,
    SUPPORTED_TIC_VERSIONS,
    JsonReadingV1,
    TicEnvelopeV1,
)

__all__ = [
    "SUPPORTED_JSON_VERSIONS",
    "SUPPORTED_TIC_VERSIONS",
    "JsonReadingV1",
    "TicEnvelopeV1",
]

"""Non-intrusive load monitoring (NILM): pure core, stdlib + numpy + msgspec only.

``step(state, ts_ms, power_w, params, channels)`` processes a chunk of one household's
aggregate power and returns ``(state, events, energy)``; see docs/nilm.md.
"""

from app.domain.nilm.detector import detect_edges, detect_edges_loop
from app.domain.nilm.engine import decode_state, encode_state, step
from app.domain.nilm.model import (
    ApplianceEvent,
    Cluster,
    DetectorState,
    Edge,
    EnergyBreakdown,
    NilmParams,
    NilmState,
    OpenLoad,
)
from app.domain.nilm.signatures import LIBRARY, Signature, classify, normalize_name

__all__ = [
    "LIBRARY",
    "ApplianceEvent",
    "Cluster",
    "DetectorState",
    "Edge",
    "EnergyBreakdown",
    "NilmParams",
    "NilmState",
    "OpenLoad",
    "Signature",
    "classify",
    "decode_state",
    "detect_edges",
    "detect_edges_loop",
    "encode_state",
    "normalize_name",
    "step",
]

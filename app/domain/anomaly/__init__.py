"""Pure anomaly-detection core: per-household state + ``step`` / ``tick`` functions.

Imports only the standard library, numpy and msgspec (no Faust, no Kafka).
"""

from app.domain.anomaly.alerts import (
    ALERT_TYPES,
    AlertRecord,
    AlertType,
    Evidence,
    OpenAlert,
    Severity,
    alert_id,
)
from app.domain.anomaly.archetypes import ARCHETYPES, Archetype, archetype_for
from app.domain.anomaly.detector import step, tick
from app.domain.anomaly.params import AnomalyParams
from app.domain.anomaly.state import DetectorState, Gate, initial_state

__all__ = [
    "ALERT_TYPES",
    "ARCHETYPES",
    "AlertRecord",
    "AlertType",
    "AnomalyParams",
    "Archetype",
    "DetectorState",
    "Evidence",
    "Gate",
    "OpenAlert",
    "Severity",
    "alert_id",
    "archetype_for",
    "initial_state",
    "step",
    "tick",
]

"""Alert records: what the detectors emit when an anomaly opens or resolves."""

from __future__ import annotations

import hashlib
from typing import Final, Literal, get_args

import msgspec

AlertType = Literal[
    "spike",
    "over_consumption",
    "low_consumption",
    "base_load_rise",
    "offline",
    "frozen_value",
    "counter_backwards",
    "clock_skew",
    "voltage",
]
ALERT_TYPES: Final[tuple[AlertType, ...]] = get_args(AlertType)
Severity = Literal["info", "warning", "critical"]
Status = Literal["open", "resolved"]


def alert_id(household_id: str, alert_type: str, opened_at: int) -> str:
    """Deterministic id: a replay of the same data yields the same id."""
    key = f"{household_id}|{alert_type}|{opened_at}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    observed: float
    """The value that crossed the threshold (most extreme value seen, on resolution)."""
    baseline: float
    """What was expected for this household at that time."""
    threshold: float
    duration_ms: int
    """How long the condition had lasted when the record was emitted."""
    unit: str


class AlertRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One alert opening or resolving. The resolved record carries the same ``alert_id``."""

    alert_id: str
    household_id: str
    meter_id: str
    type: AlertType
    severity: Severity
    status: Status
    opened_at: int
    """Event time (epoch ms UTC) at which the anomalous condition began."""
    detected_at: int
    """Time at which the detector confirmed the transition (event time, or ``now_ms`` of tick)."""
    evidence: Evidence
    resolved_at: int | None = None


class OpenAlert(msgspec.Struct, frozen=True, array_like=True):
    """What the detector state remembers of an alert that is open."""

    type: AlertType
    alert_id: str
    opened_at: int
    severity: Severity
    observed: float
    baseline: float
    threshold: float
    unit: str
    direction: int
    """+1 when higher is worse (``observed`` keeps the maximum), -1 when lower is worse."""

"""What the pure core knows of a meter: who it belongs to and what its connection can carry."""

from __future__ import annotations

from typing import NamedTuple


class MeterInfo(NamedTuple):
    household_id: str
    max_power_w: float
    """Largest active power the connection can carry (W); readings above it are implausible."""
    exports: bool
    """True when the meter may export (solar): negative active power is then valid."""
    timezone: str = "Europe/Paris"
    """IANA zone of the household, for local-day windows."""

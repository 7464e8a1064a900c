"""Process-wide objects shared by the agents of one worker (created once, no I/O at import)."""

from __future__ import annotations

from typing import Any

import msgspec

from app.domain.reading import Reading
from app.domain.reading import decode_batch as decode_readings
from app.partitioning import HouseholdPartitioner
from app.services.postgres import Registry
from app.settings import get_settings

settings = get_settings()
registry = Registry(settings.postgres_dsn, settings.registry_refresh_s)
"""Meter id -> MeterInfo, a refreshed snapshot of PostgreSQL."""
partition_of = HouseholdPartitioner(settings.partitions)
json_encoder = msgspec.json.Encoder()


_decoded: dict[tuple[str, int, int], list[Reading]] = {}
_DECODED_MAX = 512


def decode_batch(message: Any) -> list[Reading]:
    """The readings of a readings-topic message, decoded once per worker: the windows,
    anomaly, NILM and storage agents all read the same messages, so the first one to reach
    a message decodes it and the others reuse the result (a small FIFO cache)."""
    key = (message.topic, message.partition, message.offset)
    readings = _decoded.get(key)
    if readings is None:
        readings = decode_readings(message.value)
        if len(_decoded) >= _DECODED_MAX:
            del _decoded[next(iter(_decoded))]
        _decoded[key] = readings
    return readings


def timezone_of(meter_id: str, default: str = "Europe/Paris") -> str:
    info = registry.get(meter_id)
    return info.timezone if info is not None else default

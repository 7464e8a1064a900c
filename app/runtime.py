"""Process-wide objects shared by the agents of one worker (created once, no I/O at import)."""

from __future__ import annotations

import msgspec

from app.domain.reading import ReadingBatch
from app.partitioning import HouseholdPartitioner
from app.services.postgres import Registry
from app.settings import get_settings

settings = get_settings()
registry = Registry(settings.postgres_dsn, settings.registry_refresh_s)
"""Meter id -> MeterInfo, a refreshed snapshot of PostgreSQL."""
partition_of = HouseholdPartitioner(settings.partitions)
json_encoder = msgspec.json.Encoder()
batch_decoder = msgspec.json.Decoder(ReadingBatch)


def timezone_of(meter_id: str, default: str = "Europe/Paris") -> str:
    info = registry.get(meter_id)
    return info.timezone if info is not None else default

"""Payload builders for integration tests: exact, hand-made readings with known answers."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson

from app.domain.registry import MeterInfo
from app.services.postgres import register_meters
from app.settings import Settings


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def reading(meter: str, household: str, ts_ms: int, power_w: float,
            energy_wh: float | None) -> dict[str, object]:
    doc: dict[str, object] = {"v": 1, "device_id": f"node-{meter}", "meter_id": meter,
                              "household_id": household, "ts": iso(ts_ms), "power_w": power_w}
    if energy_wh is not None:
        doc["energy_wh"] = energy_wh
    return doc


def encode(doc: object) -> bytes:
    return orjson.dumps(doc)


async def register(s: Settings, meters: dict[str, MeterInfo]) -> None:
    conn = await asyncpg.connect(s.postgres_dsn)
    try:
        await register_meters(conn, [(m, info, "test") for m, info in meters.items()])
    finally:
        await conn.close()


def steady_series(meter: str, household: str, t0_ms: int, seconds: int, power_w: float,
                  energy0_wh: float) -> list[dict[str, object]]:
    """1 Hz readings of a constant load with an exactly consistent energy counter."""
    return [reading(meter, household, t0_ms + i * 1000, power_w,
                    round(energy0_wh + power_w * i / 3600.0, 6)) for i in range(seconds)]

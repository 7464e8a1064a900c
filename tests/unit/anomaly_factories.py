"""Factories for the anomaly detector tests (not a test module)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.domain.anomaly import AlertRecord, AnomalyParams, DetectorState, step
from app.domain.reading import Reading
from app.domain.registry import MeterInfo

T0 = 1_767_571_200_000  # 2026-01-05 00:00 UTC (Monday)
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
INFO = MeterInfo("hh-1", 6000.0, False, "UTC")


def readings(
    start: int,
    count: int,
    every_ms: int,
    power: Callable[[int], float] | float,
    energy: Callable[[int], float | None] | None = None,
    voltage: Callable[[int], float | None] | float | None = None,
) -> list[Reading]:
    out = []
    for i in range(count):
        ts = start + i * every_ms
        p = power(ts) if callable(power) else power
        e = energy(ts) if energy is not None else None
        v = voltage(ts) if callable(voltage) else voltage
        out.append(Reading("hh-1", "m-1", ts, float(p), e, "", v))
    return out


def feed(
    rs: Sequence[Reading],
    params: AnomalyParams | None = None,
    state: DetectorState | None = None,
    batch_ms: int = HOUR,
    received: Sequence[int] | None = None,
    info: MeterInfo = INFO,
) -> tuple[DetectorState, list[AlertRecord]]:
    """Feed readings in event-time batches of ``batch_ms``."""
    pa = params or AnomalyParams()
    out: list[AlertRecord] = []
    i = 0
    while i < len(rs):
        key = rs[i].ts_ms // batch_ms
        j = i
        while j < len(rs) and rs[j].ts_ms // batch_ms == key:
            j += 1
        state, alerts = step(
            state, rs[i:j], pa, info, None if received is None else received[i:j]
        )
        out += alerts
        i = j
    assert state is not None
    return state, out


def of(alerts: Sequence[AlertRecord], kind: str, status: str = "open") -> list[AlertRecord]:
    return [a for a in alerts if a.type == kind and a.status == status]

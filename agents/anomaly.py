"""Anomaly agent: validated readings -> alerts (opened / resolved) on the alerts topic.

Per household the pure detectors (``app.domain.anomaly``) fold each batch into the household's
detector state; a timer calls ``tick`` for every household so a meter that stops sending is
detected as offline on the clock, though no message arrives for it. State is checkpointed
(``app.checkpoint``).
"""

from __future__ import annotations

import logging
import time
from itertools import pairwise

import msgspec

from app import metrics
from app.checkpoint import StateCheckpoint
from app.domain.anomaly import AlertRecord, AnomalyParams, DetectorState, initial_state, step, tick
from app.domain.reading import Reading
from app.domain.registry import MeterInfo
from app.main import app
from app.runtime import decode_batch, json_encoder, partition_of, registry
from app.settings import get_settings
from app.tables import anomaly_state_table
from app.topics import alerts_topic, readings_topic

log = logging.getLogger(__name__)
settings = get_settings()
PARAMS = AnomalyParams(offline_after_ms=int(settings.offline_after_s * 1000))
_UNKNOWN = MeterInfo("", 1e9, True)

detector_states: StateCheckpoint[DetectorState] = StateCheckpoint(
    anomaly_state_table, "anomaly-state", topic=settings.topic_readings,
    partition_of=partition_of, encode=msgspec.msgpack.encode,
    decode=msgspec.msgpack.Decoder(DetectorState).decode,
    interval_s=settings.checkpoint_interval_s, phase=1 / 3)


async def publish(alerts: list[AlertRecord]) -> None:
    for a in alerts:
        await alerts_topic.send(key=a.household_id.encode(), value=json_encoder.encode(a))
        if a.status == "resolved":
            metrics.ALERTS_RESOLVED.labels(a.type).inc()
        else:
            metrics.ALERTS_OPENED.labels(a.type).inc()


async def process(events: list) -> None:  # type: ignore[type-arg]
    by_household: dict[str, tuple[list[Reading], list[int]]] = {}
    n = 0
    for e in events:
        received = int(e.message.timestamp * 1000)
        readings = decode_batch(e.message)
        n += len(readings)
        for r in readings:
            entry = by_household.get(r.household_id)
            if entry is None:
                entry = by_household[r.household_id] = ([], [])
            entry[0].append(r)
            entry[1].append(received)
    metrics.STAGE_READINGS.labels("anomaly").inc(n)
    for hid, (readings, received_ms) in by_household.items():
        if len(readings) > 1 and any(a.ts_ms > b.ts_ms for a, b in pairwise(readings)):
            order = sorted(range(len(readings)), key=lambda i: readings[i].ts_ms)
            readings = [readings[i] for i in order]
            received_ms = [received_ms[i] for i in order]
        info = registry.get(readings[-1].meter_id, _UNKNOWN)
        state = detector_states.get(hid)
        if state is None:
            state = initial_state(hid, readings[-1].meter_id, info)
        state, alerts = step(state, readings, PARAMS, info, received_ms)
        detector_states.put(hid, state)
        await publish(alerts)
    if events:
        metrics.PROCESSING_LATENCY.labels("anomaly").observe(
            max(0.0, time.time() - events[-1].message.timestamp))


@app.agent(readings_topic, name="anomaly")
async def anomaly(stream):  # type: ignore[no-untyped-def]
    detector_states.attach(stream)
    async for events in stream.noack_take(settings.batch_size, settings.stream_within_s):
        async with detector_states.lock:
            _, new = detector_states.split(events)  # replayed ones are in the checkpointed state
            await process(new)
            detector_states.hold(events)
            await detector_states.commit()


@app.timer(settings.offline_check_interval_s, name="anomaly-offline-clock")
async def offline_clock() -> None:
    """Meters that stopped sending: no message arrives, so the clock has to ask."""
    async with detector_states.lock:
        if not detector_states.loaded:
            detector_states.load_all()
        now_ms = int(time.time() * 1000)
        for hid in list(detector_states.keys()):
            state = detector_states.get(hid)
            if state is None:
                continue
            new, alerts = tick(state, now_ms, PARAMS)
            if alerts:
                detector_states.put(hid, new)
                await publish(alerts)


@app.timer(1.0, name="anomaly-checkpoint")
async def anomaly_checkpoint() -> None:
    await detector_states.commit_idle()


@app.on_partitions_revoked.connect
async def _on_revoked(sender, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    detector_states.discard()

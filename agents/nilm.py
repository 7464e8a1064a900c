"""NILM agent: validated readings -> appliance events and per-appliance energy per window.

Per household the readings are buffered into chunks and run through the pure NILM engine
(``app.domain.nilm``); appliance on/off events go to the appliance-events topic, and the
appliance breakdown of each closed window (measured by sub-meters + NILM-estimated +
unidentified residual = the household's total) to the appliance-energy topic. Both are
stored in InfluxDB by the storage agent. State (buffer included) is checkpointed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import msgspec

from app import metrics
from app.checkpoint import StateCheckpoint
from app.domain.nilm import NilmParams
from app.domain.nilm.stream import NilmStream, feed
from app.domain.reading import Reading
from app.main import app
from app.runtime import decode_batch, json_encoder, partition_of
from app.settings import get_settings
from app.tables import nilm_state_table
from app.topics import appliance_energy_topic, appliance_events_topic, readings_topic

log = logging.getLogger(__name__)
settings = get_settings()
PARAMS = NilmParams()
WINDOW_MS = int(settings.nilm_window_s * 1000)
CHUNK_MS = int(settings.nilm_chunk_s * 1000)

nilm_states: StateCheckpoint[NilmStream] = StateCheckpoint(
    nilm_state_table, "nilm-state", topic=settings.topic_readings, partition_of=partition_of,
    encode=msgspec.msgpack.encode, decode=msgspec.msgpack.Decoder(NilmStream).decode,
    interval_s=settings.checkpoint_interval_s, phase=2 / 3)


async def process(events: list) -> None:  # type: ignore[type-arg]
    by_household: dict[str, list[Reading]] = defaultdict(list)
    for e in events:
        for r in decode_batch(e.message):
            if not r.implausible:  # evidence for spike detection only
                by_household[r.household_id].append(r)
    metrics.STAGE_READINGS.labels("nilm").inc(sum(len(r) for r in by_household.values()))
    for hid, readings in by_household.items():
        readings.sort(key=lambda r: r.ts_ms)
        state, appliance_events, closed = feed(nilm_states.get(hid), hid, readings, PARAMS,
                                               window_ms=WINDOW_MS, size=settings.nilm_window,
                                               chunk_ms=CHUNK_MS, owned=True)
        nilm_states.put(hid, state)
        for ev in appliance_events:
            await appliance_events_topic.send(key=hid.encode(), value=json_encoder.encode(ev))
            metrics.APPLIANCE_EVENTS.labels(ev.appliance).inc()
        for w in closed:
            await appliance_energy_topic.send(key=hid.encode(), value=json_encoder.encode(w))
    if events:
        metrics.PROCESSING_LATENCY.labels("nilm").observe(
            max(0.0, time.time() - events[-1].message.timestamp))


@app.agent(readings_topic, name="nilm")
async def nilm(stream):  # type: ignore[no-untyped-def]
    nilm_states.attach(stream)
    async for events in stream.noack_take(settings.batch_size, settings.stream_within_s):
        async with nilm_states.lock:
            _, new = nilm_states.split(events)  # replayed ones are in the checkpointed state
            await process(new)
            nilm_states.hold(events)
            await nilm_states.commit()


@app.timer(1.0, name="nilm-checkpoint")
async def nilm_checkpoint() -> None:
    await nilm_states.commit_idle()


@app.on_partitions_revoked.connect
async def _on_revoked(sender, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    nilm_states.discard()

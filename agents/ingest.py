"""Ingest agent: raw meter topics -> validated readings, dead letters, duplicates counted.

Consumes the raw JSON and TIC topics in batches (``noack_take``), runs the pure
``ingest_batch`` over each batch, and sends the valid readings as one ``ReadingBatch`` per
readings-topic partition (households routed with Kafka's default partitioner, see
``app.partitioning``). Per-meter dedupe/counter state is checkpointed (``app.checkpoint``).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import replace

import msgspec

from app import metrics
from app.checkpoint import LazyStates, StateCheckpoint
from app.domain.ingest import DEFAULT_LIMITS, DeadLetter, MeterState, RawRecord, ingest_batch
from app.domain.reading import Reading, ReadingBatch
from app.main import app
from app.runtime import json_encoder, partition_of, registry
from app.settings import get_settings
from app.tables import meter_state_table
from app.topics import deadletter_topic, readings_topic

log = logging.getLogger(__name__)
settings = get_settings()

raw_topics = app.topic(settings.topic_raw_json, settings.topic_raw_tic, key_type=bytes,
                       value_type=bytes, key_serializer="raw", value_serializer="raw")

LIMITS = replace(DEFAULT_LIMITS, tic_topics=frozenset({settings.topic_raw_tic}))
meter_states: StateCheckpoint[MeterState] = StateCheckpoint(
    meter_state_table, "meter-state", topic=settings.topic_raw_json,
    partition_of=partition_of,  # for a meter whose records came without its id as key
    encode=msgspec.msgpack.encode,
    decode=msgspec.msgpack.Decoder(MeterState).decode, interval_s=settings.checkpoint_interval_s)


def route(readings: list[Reading]) -> dict[int, list[Reading]]:
    by_partition: dict[int, list[Reading]] = defaultdict(list)
    for r in readings:
        by_partition[partition_of(r.household_id)].append(r)
    return by_partition


async def send_readings(readings: list[Reading], received_s: float | None = None) -> None:
    """One ReadingBatch per partition. The message timestamp is the newest raw record's Kafka
    timestamp, so later stages (clock-skew detection) compare event time with when the
    reading reached the broker, not with when ingestion happened to run."""
    for partition, group in route(readings).items():
        await readings_topic.send(key=None, partition=partition, timestamp=received_s,
                                  value=json_encoder.encode(ReadingBatch(group)))


async def send_dead(dead: list[DeadLetter], stage: str = "ingest") -> None:
    for d in dead:
        metrics.READINGS_INVALID.labels(str(d.reason)).inc()
        await deadletter_topic.send(key=d.meter_id.encode() or None,
                                    value=json_encoder.encode(d))
    if dead:
        metrics.DEADLETTERS.labels(stage).inc(len(dead))


async def process(events: list) -> None:  # type: ignore[type-arg]
    """One batch of raw records: validate, route, count; state held until the checkpoint."""
    records = [RawRecord(e.message.value or b"", e.message.topic, e.message.partition,
                         e.message.offset, int(e.message.timestamp * 1000)) for e in events]
    for e in events:  # meter state lives in the partition its raw records arrive on
        if e.message.key:
            meter_states.get(e.message.key.decode("utf-8", "replace"), e.message.partition)
    if registry.stale:
        await registry.refresh()
    now_ms = int(time.time() * 1000)
    result = ingest_batch(records, registry, LazyStates(meter_states), LIMITS, now_ms=now_ms)
    if any(d.reason == "unknown_id" for d in result.dead) and await registry.refresh(
            min_age_s=5.0):
        # a meter may have been registered since the last refresh: validate the batch again
        result = ingest_batch(records, registry, LazyStates(meter_states), LIMITS, now_ms=now_ms)
    for meter_id, state in result.states.items():
        meter_states.put(meter_id, state)  # partition recorded by get() above
    await send_readings(result.readings,
                        max(e.message.timestamp for e in events) if events else None)
    await send_dead(result.dead)
    tic = sum(1 for r in records if r.topic == settings.topic_raw_tic)
    metrics.RECORDS_IN.labels("tic").inc(tic)
    metrics.RECORDS_IN.labels("json").inc(len(records) - tic)
    metrics.INGEST_BATCH.observe(len(records))
    metrics.READINGS_DUPLICATE.inc(result.duplicates)
    metrics.COUNTER_RESETS.inc(len(result.counter_resets))
    metrics.READINGS_VALID.labels("all").inc(len(result.readings))
    if records:
        metrics.PROCESSING_LATENCY.labels("ingest").observe(
            max(0.0, now_ms / 1000 - events[-1].message.timestamp))


@app.agent(raw_topics, name="ingest")
async def ingest(stream):  # type: ignore[no-untyped-def]
    meter_states.attach(stream)
    async for events in stream.noack_take(settings.batch_size, settings.batch_within_s):
        async with meter_states.lock:
            await process(events)
            meter_states.hold(events)
            await meter_states.commit()


@app.timer(1.0, name="ingest-checkpoint")
async def ingest_checkpoint() -> None:
    """Checkpoint even when no batch arrives, so a quiet topic still commits its offsets."""
    await meter_states.commit_idle()


@app.on_partitions_revoked.connect
async def _on_revoked(sender, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    meter_states.discard()

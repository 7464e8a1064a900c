"""Which closed windows are already in the window topics: so a replay emits each window once.

A worker checkpoints its window state every ``checkpoint_interval_s`` and acknowledges the
readings it covers only then. After a crash or a rebalance, the new owner of a partition
restores the last checkpoint and replays the readings from the committed offset: it closes
again, identically, the windows closed since that checkpoint -- windows that are already in the
window topics. Before replaying, :func:`already_emitted` reads them back:

1. the committed offset of the readings partition (the Faust group ``<app_id>``) is the first
   message the replay processes; its Kafka timestamp ``t`` bounds what can be emitted again:
   every window closed after the checkpoint was produced while processing that message or a
   later one, so its own timestamp is at least ``t``;
2. each window topic's partition (windows are keyed and partitioned by household exactly like
   the readings) is read from the offset of time ``t`` to its end, and every
   ``(household, size, start)`` found is returned.

The agent then skips those windows when it closes them again. A window still in flight in a
crashed worker's producer, not yet in the topic, is sent again: identical, and consumers treat
windows idempotently (InfluxDB overwrites the same point). Nothing here can lose a window: a
failure to read back only means "nothing to skip". Faust commits the acknowledged offsets a
little after each checkpoint, so the committed offset can be older than the checkpoint: the
read-back then covers more than needed, never less.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.domain.reading import Reading, decode_batch
from app.domain.windows import ClosedWindow
from app.settings import Settings

log = logging.getLogger(__name__)

WindowKey = tuple[str, str, int]
"""``(household_id, size, start_ms)``: a closed window's identity."""


class _Key(msgspec.Struct):
    household_id: str
    size: str
    start_ms: int


_decode_key = msgspec.json.Decoder(_Key).decode


def key_of(w: ClosedWindow) -> WindowKey:
    return (w.household_id, w.size, w.start_ms)


async def replay_start_times(s: Settings, partitions: list[int]) -> dict[int, int]:
    """Kafka timestamp (ms) of the first readings message each partition will replay; a
    partition with nothing to replay is left out."""
    tps = [TopicPartition(s.topic_readings, p) for p in partitions]
    found = await group_replay_ranges(s, s.app_id, tps)
    return {tp.partition: r.start_ms for tp, r in found.items()}


class ReplayRange(NamedTuple):
    start_ms: int
    """Kafka timestamp of the first message to replay (at the committed offset)."""
    end: int
    """End offset when asked: the replay covers the messages before it."""


async def group_replay_ranges(s: Settings, group: str, tps: list[TopicPartition]
                              ) -> dict[TopicPartition, ReplayRange]:
    """What consumer group ``group`` would replay of each of ``tps``, from its committed
    offset (the beginning if never committed); partitions with nothing to replay are left
    out."""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_servers,
                                client_id=f"{s.app_id}-emitted")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_servers, group_id=None,
                                enable_auto_commit=False, client_id=f"{s.app_id}-emitted")
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        out: dict[TopicPartition, ReplayRange] = {}
        for tp in tps:
            meta = committed.get(tp)
            # never committed (a first worker that crashed before its first commit): the
            # replay starts at the beginning, and so does the read-back
            offset = max(meta.offset, starts[tp]) if meta is not None and meta.offset >= 0 \
                else starts[tp]
            if offset >= ends[tp]:
                continue  # nothing to replay
            consumer.assign([tp])
            consumer.seek(tp, offset)
            msg = await consumer.getone()
            out[tp] = ReplayRange(msg.timestamp, ends[tp])
        return out
    finally:
        await consumer.stop()


async def _values_since(s: Settings, since: dict[TopicPartition, int]) -> AsyncIterator[bytes]:
    """The values of the records of each partition from Kafka time ``since[tp]`` to the end
    it had when the read began."""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_servers, group_id=None,
                                enable_auto_commit=False, client_id=f"{s.app_id}-emitted")
    await consumer.start()
    try:
        found = await consumer.offsets_for_times(since)
        ends = await consumer.end_offsets(list(since))
        todo = {tp: ends[tp] for tp, at in found.items()
                if at is not None and at.offset < ends[tp]}
        if not todo:
            return
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, found[tp].offset)
        while todo:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if not batch:
                break
            for tp, records in batch.items():
                for m in records:
                    yield m.value or b""
                if tp in todo and records and records[-1].offset + 1 >= todo[tp]:
                    del todo[tp]
    finally:
        await consumer.stop()


async def read_window_keys(s: Settings, since_ms: dict[int, int],
                           topics: list[str]) -> set[WindowKey]:
    """Keys of the windows in ``topics`` (partition ``p`` from time ``since_ms[p]``)."""
    out: set[WindowKey] = set()
    if not since_ms:
        return out
    since = {TopicPartition(t, p): ms for t in topics for p, ms in since_ms.items()}
    async for value in _values_since(s, since):
        try:
            k = _decode_key(value)
        except msgspec.DecodeError:
            continue
        out.add((k.household_id, k.size, k.start_ms))
    return out


async def already_emitted(s: Settings, partitions: list[int],
                          topics: list[str]) -> set[WindowKey]:
    """Windows a replay of ``partitions`` from their committed offsets would emit again."""
    since = await replay_start_times(s, partitions)
    return await read_window_keys(s, since, topics)


async def read_readings(s: Settings, since_ms: int,
                        keep: Callable[[Reading], bool]) -> list[Reading]:
    """The readings in the readings topic (every partition) from Kafka time ``since_ms`` to the
    end, those for which ``keep`` is true, in topic order per partition."""
    out: list[Reading] = []
    since = {TopicPartition(s.topic_readings, p): since_ms for p in range(s.partitions)}
    async for value in _values_since(s, since):
        try:
            readings = decode_batch(value)
        except msgspec.DecodeError:
            continue
        out.extend(r for r in readings if keep(r))
    return out

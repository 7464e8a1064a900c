"""Ingest stage: raw meter topics -> validated readings, dead letters, duplicates counted.

Raw records carry one reading each (one message per meter per second), so Faust's per-message
machinery (tens of microseconds a message) would cap the whole platform. This stage therefore
consumes the raw topics with a plain aiokafka consumer in batches (``getmany``), runs the pure
``ingest_batch`` over each batch, and sends the valid readings as one ``ReadingBatch`` per
readings-topic partition (households routed with Kafka's default partitioner, see
``app.partitioning``). Everything after it runs in Faust agents on those batches.

It is a Faust service of the same worker (started and stopped with it), in its own consumer
group ``<app_id>-ingest``. Per-meter dedupe/counter state is an in-memory ``MeterStore`` that
``ingest_batch`` updates in place, backed by a compacted changelog topic
(``<app_id>-ingest-meter-state-changelog``, partition = the raw partition the meter's records
arrive on, value = the msgpack ``MeterState``):

* checkpoint (every ``checkpoint_interval_s``, and before partitions are revoked): freeze the
  states changed since the last checkpoint and send them to the changelog, flush the producer
  (readings, dead letters and states are then all acknowledged by Kafka), then commit the
  consumed offsets;
* on assignment, the states of the newly assigned partitions are restored from the changelog
  (thawed into the store).

A batch with readings of unknown meters refreshes the registry (rate-limited) and validates
those readings again (``retry_unknown_ids``): the store already holds the rest of the batch.

After a crash the stage resumes from the last checkpoint with that checkpoint's states and
replays the records since. Before it does (on assignment, holding the lock: aiokafka's
fetcher starts while the callback runs), it reads back the readings produced since the
replay's first record (:func:`absorb_produced`): they are recorded in the store as accepted,
and the replayed records whose readings are all in the readings topic are counted as exact
duplicates instead of being ingested again (:class:`Replay`). So a crash or a rebalance
produces no reading twice, except one lost in the crashed producer's buffer, which is
produced for the first time. Nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from app import metrics
from app.domain.ingest import (
    DEFAULT_LIMITS,
    DeadLetter,
    MeterState,
    MeterStore,
    RawRecord,
    ingest_batch,
    retry_unknown_ids,
)
from app.domain.reading import Reading, encode_batch
from app.domain.timestamps import parse_rfc3339_ms
from app.main import app
from app.runtime import json_encoder, partition_of, registry
from app.settings import Settings, get_settings
from app.topics import ingest_changelog_topic as changelog_topic

log = logging.getLogger(__name__)
settings = get_settings()

LIMITS = replace(DEFAULT_LIMITS, tic_topics=frozenset({settings.topic_raw_tic}))
_state_decoder = msgspec.msgpack.Decoder(MeterState)
_state_encoder = msgspec.msgpack.Encoder()


class MeterStates:
    """Per-meter state of the partitions this worker owns: the ``MeterStore`` that
    ``ingest_batch`` updates in place (it also tracks what changed since the last checkpoint),
    and the changelog partition of each meter."""

    def __init__(self) -> None:
        self.store = MeterStore()
        self.partition: dict[str, int] = {}

    def get(self, meter_id: str) -> MeterState | None:
        """A meter's current state, as the changelog would store it."""
        return self.store.state(meter_id, LIMITS.dedup_memory)

    def restore(self, meter_id: str, state: MeterState, partition: int) -> None:
        self.store.restore(meter_id, state)
        self.partition[meter_id] = partition

    def changed(self) -> list[tuple[str, MeterState, int]]:
        """``(meter_id, state, changelog partition)`` of every meter changed since the last
        call (a meter whose records carried no key goes where ``partition_of`` puts it)."""
        out = []
        for meter_id, state in self.store.take_changed(LIMITS.dedup_memory).items():
            p = self.partition.get(meter_id)
            if p is None:
                p = self.partition[meter_id] = partition_of(meter_id)
            out.append((meter_id, state, p))
        return out

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        meters = [m for m, p in self.partition.items() if p in gone]
        self.store.drop(meters)
        for meter_id in meters:
            del self.partition[meter_id]


def route(readings: list[Reading]) -> dict[int, list[Reading]]:
    by_partition: dict[int, list[Reading]] = defaultdict(list)
    for r in readings:
        by_partition[partition_of(r.household_id)].append(r)
    return by_partition


class IngestStage:
    """One batch at a time: validate, route, count; the Kafka I/O is given to it."""

    def __init__(self, s: Settings, producer: AIOKafkaProducer, states: MeterStates) -> None:
        self.s = s
        self.producer = producer
        self.states = states

    async def process(self, records: list[RawRecord], keys: list[bytes | None]) -> None:
        for rec, key in zip(records, keys, strict=True):
            if key and rec.topic:
                # a meter's state lives in the partition its raw records arrive on
                self.states.partition.setdefault(key.decode("utf-8", "replace"), rec.partition)
        if registry.stale:
            await registry.refresh()
        now_ms = int(time.time() * 1000)
        store = self.states.store
        result = ingest_batch(records, registry.snapshot, store, LIMITS, now_ms=now_ms)
        if any(d.reason == "unknown_id" for d in result.dead) and await registry.refresh(
                min_age_s=5.0):
            # a meter may have been registered since the last refresh: validate those again
            result = retry_unknown_ids(result, records, registry.snapshot, store, LIMITS,
                                       now_ms=now_ms)
        received_ms = max((r.received_ms for r in records), default=None)
        # readings beyond the connection were dead-lettered; they also travel, flagged, to the
        # anomaly stage (spike alerts) -- every other stage skips them
        for partition, group in route(result.readings + result.implausible
                                      if result.implausible else result.readings).items():
            await self.producer.send(self.s.topic_readings, partition=partition,
                                     timestamp_ms=received_ms,
                                     value=encode_batch(group))
        await self.send_dead(result.dead)
        tic = sum(1 for r in records if r.topic == self.s.topic_raw_tic)
        metrics.RECORDS_IN.labels("tic").inc(tic)
        metrics.RECORDS_IN.labels("json").inc(len(records) - tic)
        metrics.INGEST_BATCH.observe(len(records))
        metrics.READINGS_DUPLICATE.inc(result.duplicates)
        metrics.COUNTER_RESETS.inc(len(result.counter_resets))
        metrics.READINGS_VALID.labels("all").inc(len(result.readings))
        metrics.READINGS_IMPLAUSIBLE.inc(len(result.implausible))
        if received_ms is not None:
            metrics.PROCESSING_LATENCY.labels("ingest").observe(
                max(0.0, now_ms - received_ms) / 1000)

    async def send_dead(self, dead: list[DeadLetter]) -> None:
        for d in dead:
            metrics.READINGS_INVALID.labels(str(d.reason)).inc()
            await self.producer.send(self.s.topic_deadletter, key=d.meter_id.encode() or None,
                                     value=json_encoder.encode(d))
        if dead:
            metrics.DEADLETTERS.labels("ingest").inc(len(dead))

    async def write_states(self) -> int:
        """Send every changed state to the changelog (not yet flushed)."""
        topic = changelog_topic(self.s)
        n = 0
        for meter_id, state, partition in self.states.changed():
            await self.producer.send(topic, key=meter_id.encode(),
                                     value=_state_encoder.encode(state), partition=partition)
            n += 1
        if n:
            metrics.CHANGELOG_WRITES.labels("meter-state").inc(n)
        return n


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: IngestService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.service.on_assigned(assigned)


@app.service
class IngestService(Service):
    """The raw-topic consumer of a worker (see the module docstring)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.s = settings
        self.states = MeterStates()
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.stage: IngestStage | None = None
        self.positions: dict[TopicPartition, int] = {}
        """Next offset to commit per partition (last processed + 1)."""
        self.last_checkpoint = time.monotonic()
        self._committing: asyncio.Future[None] | None = None
        """The flush and commit of the last checkpoint, while they run."""
        self.replay = Replay()
        """Raw records of the current replay whose readings were produced already."""

    async def on_start(self) -> None:
        s = self.s
        await ensure_changelog(s)
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_servers, linger_ms=5,
                                         max_batch_size=1_048_576, enable_idempotence=True,
                                         client_id=f"{s.app_id}-ingest")
        await self.producer.start()
        self.stage = IngestStage(s, self.producer, self.states)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_servers, group_id=f"{s.app_id}-ingest",
            client_id=f"{s.app_id}-ingest", enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1_048_576,
            session_timeout_ms=int(s.kafka_session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, s.kafka_session_timeout_s / 3) * 1000))
        self.consumer.subscribe([s.topic_raw_json, s.topic_raw_tic], listener=_Rebalance(self))
        await self.consumer.start()
        self.add_future(self._run())

    async def on_stop(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10.0), self.lock:
                    await self.checkpoint()
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def _run(self) -> None:
        assert self.consumer is not None and self.stage is not None
        within_ms = int(self.s.batch_within_s * 1000)
        while not self.should_stop:
            try:
                batch = await self.consumer.getmany(timeout_ms=within_ms,
                                                    max_records=self.s.batch_size)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingest: fetch failed; retrying")
                await asyncio.sleep(1.0)
                continue
            async with self.lock:
                records: list[RawRecord] = []
                keys: list[bytes | None] = []
                skipped = skipped_readings = skipped_tic = 0
                replay = self.replay if self.replay.ends else None
                for tp, msgs in batch.items():
                    for m in msgs:
                        rec = RawRecord(m.value or b"", tp.topic, tp.partition, m.offset,
                                        m.timestamp)
                        if replay is not None and (n := replay.already_produced(rec)):
                            skipped_tic += tp.topic == self.s.topic_raw_tic
                            skipped += 1
                            skipped_readings += n
                            continue
                        records.append(rec)
                        keys.append(m.key)
                    if msgs:
                        self.positions[tp] = msgs[-1].offset + 1
                if replay is not None:
                    replay.passed(self.positions)
                    if skipped:  # accounted as exact duplicates of what was produced
                        metrics.RECORDS_IN.labels("tic").inc(skipped_tic)
                        metrics.RECORDS_IN.labels("json").inc(skipped - skipped_tic)
                        metrics.READINGS_DUPLICATE.inc(skipped_readings)
                        metrics.REPLAY_SKIPPED_RECORDS.inc(skipped)
                if records:
                    await self.stage.process(records, keys)
                # also on empty fetches: a quiet topic still commits what it processed
                if time.monotonic() - self.last_checkpoint >= self.s.checkpoint_interval_s:
                    await self.checkpoint(wait=False)

    async def checkpoint(self, *, wait: bool = True) -> None:
        """States to the changelog, everything flushed, then the offsets committed.

        From the fetch loop (``wait=False``) the flush and the commit run in the background:
        waiting for the broker to acknowledge a checkpoint's thousands of records would stall
        ingestion, and with it every window close, for that long. The offsets committed are
        those of this checkpoint's states whatever is processed meanwhile (the flush only waits
        longer); the next checkpoint first waits for this one. Revoke and stop wait."""
        assert self.consumer is not None and self.producer is not None
        assert self.stage is not None
        await self._committed()
        await self.stage.write_states()
        assigned = self.consumer.assignment()
        offsets = {tp: OffsetAndMetadata(off, "") for tp, off in self.positions.items()
                   if tp in assigned}
        self.positions = {tp: off for tp, off in self.positions.items() if tp in assigned}
        self.last_checkpoint = time.monotonic()
        self._committing = asyncio.ensure_future(self._flush_commit(offsets))
        if wait:
            await self._committed()

    async def _flush_commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        assert self.consumer is not None and self.producer is not None
        await self.producer.flush()
        if offsets:
            await self.consumer.commit(offsets)

    async def _committed(self) -> None:
        """Wait for the previous checkpoint's commit; a failed one is logged (its records
        are replayed: nothing acknowledged is lost)."""
        task, self._committing = self._committing, None
        if task is not None:
            try:
                await task
            except Exception:  # a commit failing is not fatal
                log.exception("ingest: checkpoint commit failed; its records will be replayed")

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.lock:
            with contextlib.suppress(Exception):
                await self.checkpoint()
            for tp in revoked:
                self.positions.pop(tp, None)
            partitions = {tp.partition for tp in revoked}
            still = {tp.partition for tp in (self.consumer.assignment() if self.consumer
                                             else set()) if tp not in set(revoked)}
            self.states.drop_partitions(partitions - still)

    async def on_assigned(self, assigned: list[TopicPartition]) -> None:
        # under the lock: aiokafka's fetcher starts on the new assignment while this callback
        # runs, and no record may be validated before its meters' states are restored
        async with self.lock:
            await self._assigned(assigned)

    async def _assigned(self, assigned: list[TopicPartition]) -> None:
        partitions = sorted({tp.partition for tp in assigned})
        if partitions:
            n = await restore_states(self.s, partitions, self.states)
            log.info("ingest: restored %d meter states of partitions %s", n, partitions)
            try:
                replay = await absorb_produced(self.s, assigned, self.states)
            except Exception:  # reading back only saves duplicates: never fatal
                log.exception("ingest: could not read back the readings produced since the "
                              "last checkpoint; the replay will produce some again")
            else:
                if replay.produced:
                    log.info("ingest: %d readings already produced since the last checkpoint "
                             "will not be produced again", len(replay.produced))
                self.replay = replay


READBACK_SLACK_MS = 60_000
"""The read-back starts this long before the replay's first raw record: raw records carry their
producers' clocks, so a later record of the replay can be older than the first."""


class _RecordKey(msgspec.Struct):
    """What identifies a raw record's readings without validating it: JSON readings and TIC
    envelopes both carry the node and its event time."""

    device_id: str = ""
    ts: str = ""


_record_keys = msgspec.json.Decoder(_RecordKey | list[_RecordKey])


@dataclass
class Replay:
    """What a replay after an assignment must not produce a second time."""

    ends: dict[TopicPartition, int] = field(default_factory=dict)
    """Per raw partition, the end offset at assignment: records before it are replayed."""
    produced: set[tuple[str, int]] = field(default_factory=set)
    """``(device_id, ts_ms)`` of every reading already in the readings topic."""

    def already_produced(self, rec: RawRecord) -> int:
        """The number of readings of ``rec`` if it is a replayed record whose readings are
        all in the readings topic already, else 0 (it goes through ingestion)."""
        end = self.ends.get(TopicPartition(rec.topic, rec.partition))
        if end is None or rec.offset >= end:
            return 0
        try:
            keys = _record_keys.decode(rec.value)
        except msgspec.DecodeError:
            return 0
        items = keys if isinstance(keys, list) else [keys]
        for k in items:
            ts_ms = parse_rfc3339_ms(k.ts)
            if ts_ms is None or (k.device_id, ts_ms) not in self.produced:
                return 0
        return len(items)

    def passed(self, positions: dict[TopicPartition, int]) -> None:
        """Forget partitions whose replay is over (and everything once all are)."""
        for tp in [tp for tp, end in self.ends.items() if positions.get(tp, 0) >= end]:
            del self.ends[tp]
        if not self.ends:
            self.produced.clear()


async def absorb_produced(s: Settings, assigned: list[TopicPartition],
                          states: MeterStates) -> Replay:
    """Before replaying ``assigned`` from the committed offsets: the readings of their meters
    that are already in the readings topic, produced after the last checkpoint by a worker
    that then crashed (or by this one before a rebalance). They are recorded in the store as
    accepted (so that the records after them are validated against them), and their raw
    records are not ingested again (:class:`Replay`: counted as duplicates), so the stages
    after ingestion see each reading once (``app.emitted`` does the same for windows). A
    reading lost in a crashed producer is not in the topic, and its record is ingested again.
    """
    from app.emitted import group_replay_ranges, read_readings

    ranges = await group_replay_ranges(s, f"{s.app_id}-ingest", list(assigned))
    if not ranges:
        return Replay()  # nothing to replay
    owned = {tp.partition for tp in assigned}
    raw_partition = partition_of  # raw records are keyed by meter id (Kafka's partitioner)

    def mine(r: Reading) -> bool:
        p = states.partition.get(r.meter_id)
        return (raw_partition(r.meter_id) if p is None else p) in owned

    since = min(r.start_ms for r in ranges.values()) - READBACK_SLACK_MS
    readings = await read_readings(s, since, mine)
    if not readings:
        return Replay()
    for r in readings:
        states.partition.setdefault(r.meter_id, raw_partition(r.meter_id))
    states.store.absorb(readings, LIMITS.dedup_memory)
    metrics.INGEST_READBACK.inc(len(readings))
    return Replay({tp: r.end for tp, r in ranges.items()},
                  {(r.device_id or "", r.ts_ms) for r in readings if not r.implausible})


async def ensure_changelog(s: Settings) -> None:
    """Create the state changelog if ``app.setup`` has not (sending to a missing topic would
    block: the broker does not create topics)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from app.topics import topic_specs

    spec = next(t for t in topic_specs(s) if t.name == changelog_topic(s))
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_servers)
    await admin.start()
    try:
        if spec.name not in await admin.list_topics():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(spec.name, spec.partitions,
                                                    s.replication_factor,
                                                    topic_configs=spec.config)])
    finally:
        await admin.close()


async def restore_states(s: Settings, partitions: list[int], states: MeterStates) -> int:
    """Read the changelog partitions from the start to their end into ``states``."""
    topic = changelog_topic(s)
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_servers, group_id=None,
                                enable_auto_commit=False, client_id=f"{s.app_id}-ingest-restore")
    await consumer.start()
    n = 0
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=10_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    meter_id = (m.key or b"").decode("utf-8", "replace")
                    if m.value is None:
                        states.store.drop([meter_id])
                    else:
                        states.restore(meter_id, _state_decoder.decode(m.value), tp.partition)
                        n += 1
                    if m.offset + 1 >= end[tp]:
                        remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return n

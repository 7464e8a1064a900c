"""Per-key state held in memory between checkpoints, written to a Faust table once per
checkpoint, with the Kafka offsets it covers acknowledged only then.

Why: Faust writes one changelog message per table assignment. At one reading a second per
household, writing state per batch costs about one changelog message per reading. Instead an
agent keeps the state of its households in memory, marks what changed, and every
``checkpoint_interval_s`` writes each changed key once and *then* acks the events it consumed
since the previous checkpoint. Offsets are committed only for acked events, so after a crash the
worker resumes from the last checkpoint with exactly the state of that checkpoint and replays
the same readings: the pure functions are deterministic, so it recomputes the same results.

On a rebalance every assigned partition is sought back to its committed offset (Faust's
recovery does this), so un-checkpointed work is simply dropped and recomputed.

The committed offset can lag a checkpoint: Faust commits acked offsets on its own timer, and
an offset of the readings topic is committable only once *every* agent reading it has acked
it (the agents checkpoint at staggered moments). So each checkpoint also writes, per source
partition, the offset (and record timestamp) of the last event its state covers: a key of its
own in the table (``\x00offset/<partition>``, in the same changelog, so it moves with the
partition). After a crash or a rebalance, :meth:`StateCheckpoint.split` tells the events that
state already holds (replayed from the committed offset) from new ones; the agents skip the
former instead of applying them a second time (``wattflow_replayed_messages_skipped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from faust.streams import _current_event

from app import metrics

S = TypeVar("S")

_YIELD_EVERY = 256
_MARK_PREFIX = b"\x00offset/"
"""Table keys of the per-partition offset marks (never a household or meter id)."""
_MARK_SLACK_MS = 60_000
"""An event at or below a partition's mark is a replay only if its record timestamp is not
later than the mark's by more than this: a topic deleted and re-created (offsets restarting
at 0) under a kept table must not have its new records skipped."""


def _mark_key(partition: int) -> bytes:
    return _MARK_PREFIX + str(partition).encode()


def _encode_mark(offset: int, timestamp_ms: int) -> bytes:
    return f"{offset} {timestamp_ms}".encode()


def _decode_mark(raw: bytes) -> tuple[int, int] | None:
    try:
        offset, ts = raw.split()
        return int(offset), int(ts)
    except ValueError:
        return None


class _Message:
    __slots__ = ("partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition


class _PartitionEvent:
    """Stands for "an event of partition p" for Faust's table store, which files a key under
    the partition of the current event (local RocksDB and changelog alike)."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


@contextlib.contextmanager
def in_partition(event: _PartitionEvent) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


class StateCheckpoint(Generic[S]):
    """State of keys of one table, checkpointed; ``topic`` is the source topic whose
    partitions the table is co-partitioned with."""

    def __init__(self, table: Any, name: str, *, topic: str, encode: Callable[[S], bytes],
                 decode: Callable[[bytes], S], interval_s: float,
                 partition_of: Callable[[str], int] | None = None,
                 clock: Callable[[], float] = time.monotonic, phase: float = 0.0) -> None:
        """``phase`` (0..1): where in the interval this checkpoint falls, so that the agents
        of one worker do not all write their tables at the same moment."""
        self.table = table
        self.topic = topic
        self._partition_of = partition_of
        self._partition: dict[str, int] = {}
        self._events: dict[int, _PartitionEvent] = {}
        self.name = name
        self._encode = encode
        self._decode = decode
        self.interval_s = interval_s
        self._clock = clock
        self._cache: dict[str, S | None] = {}
        self._dirty: set[str] = set()
        self._pending: list[Any] = []
        self._marks: dict[int, tuple[int, int] | None] = {}
        """Per source partition: (offset, record timestamp ms) of the last event the table's
        state covers, or None when there is none."""
        self._last = clock() - phase * interval_s
        self.writes = 0
        self.lock = asyncio.Lock()
        """Held while a batch is processed and while a checkpoint runs."""
        self._stream: Any = None
        self.loaded = False
        """True once every key of the local table store is in memory (see load_all)."""

    def attach(self, stream: Any) -> None:
        """The stream whose events this checkpoint acknowledges."""
        self._stream = stream

    def _event(self, partition: int) -> _PartitionEvent:
        ev = self._events.get(partition)
        if ev is None:
            ev = self._events[partition] = _PartitionEvent(self.topic, partition)
        return ev

    def partition(self, key: str) -> int | None:
        p = self._partition.get(key)
        if p is None and self._partition_of is not None:
            p = self._partition[key] = self._partition_of(key)
        return p

    def get(self, key: str, partition: int | None = None) -> S | None:
        try:
            return self._cache[key]
        except KeyError:
            pass
        if partition is not None:
            self._partition[key] = partition
        else:
            partition = self.partition(key)
        if partition is None:
            raw = self.table.get(key.encode())
        else:
            with in_partition(self._event(partition)):
                raw = self.table.get(key.encode())
        state = self._decode(raw) if raw is not None else None
        self._cache[key] = state
        return state

    def put(self, key: str, state: S, partition: int | None = None) -> None:
        """New state of ``key``; ``partition`` is the source partition the key lives on
        (needed once per key unless the checkpoint has a ``partition_of``)."""
        self._cache[key] = state
        if partition is not None:
            self._partition[key] = partition
        self._dirty.add(key)

    def mark(self, partition: int) -> tuple[int, int] | None:
        """(offset, record timestamp ms) of the last event of ``partition`` that the state in
        the table covers (None: no checkpoint yet)."""
        try:
            return self._marks[partition]
        except KeyError:
            pass
        with in_partition(self._event(partition)):
            raw = self.table.get(_mark_key(partition))
        mark = self._marks[partition] = _decode_mark(raw) if raw is not None else None
        return mark

    def split(self, events: list[Any]) -> tuple[list[Any], list[Any]]:
        """(replayed, new): events the checkpointed state already covers -- replayed from a
        committed offset that lagged the checkpoint -- and the others, each in input order.
        Hold both (:meth:`hold`): a replayed event is still acked at the next checkpoint."""
        replayed: list[Any] = []
        new: list[Any] = []
        marks = self._marks
        for e in events:
            m = e.message
            p = m.partition
            mark = marks[p] if p in marks else self.mark(p)
            if (mark is not None and m.offset <= mark[0]
                    and m.timestamp * 1000 <= mark[1] + _MARK_SLACK_MS):
                replayed.append(e)
            else:
                new.append(e)
        if replayed:
            metrics.REPLAYED_SKIPPED.labels(self.name).inc(len(replayed))
        return replayed, new

    def hold(self, events: list[Any]) -> None:
        """Events whose effects are in memory only: acked at the next checkpoint."""
        self._pending.extend(events)

    def keys(self) -> Iterator[str]:
        """Keys known in memory (households seen since the worker started or rebalanced)."""
        return iter(list(self._cache))

    @property
    def age(self) -> float:
        """Seconds since the last checkpoint."""
        return self._clock() - self._last

    @property
    def due(self) -> bool:
        return self.age >= self.interval_s

    async def commit_idle(self) -> bool:
        """From a timer: checkpoint when due even if no batch arrives (quiet topics)."""
        if not self.due or not (self._pending or self._dirty):
            return False
        async with self.lock:
            return await self.commit()

    async def commit(self, *, force: bool = False) -> bool:
        """Write changed state, then ack the events it covers. Returns True if it ran.
        Call with :attr:`lock` held."""
        if not force and not self.due:
            return False
        stream = self._stream
        table = self.table
        for i, key in enumerate(self._dirty):
            state = self._cache.get(key)
            p = self.partition(key)
            if state is not None and p is not None:
                with in_partition(self._event(p)):
                    table[key.encode()] = self._encode(state)
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                # thousands of table writes: let the other agents of the worker run meanwhile
                # (our own stream waits: the lock is held, and the dirty set cannot change)
                await asyncio.sleep(0)
        n = len(self._dirty)
        covered: dict[int, tuple[int, int]] = {}
        for event in self._pending:
            m = event.message
            seen = covered.get(m.partition)
            if seen is None or m.offset > seen[0]:
                covered[m.partition] = (m.offset, int(m.timestamp * 1000))
        for p, (offset, ts_ms) in covered.items():
            old = self._marks.get(p)
            if old is None or offset > old[0]:
                with in_partition(self._event(p)):
                    table[_mark_key(p)] = _encode_mark(offset, ts_ms)
                self._marks[p] = (offset, ts_ms)
                n += 1
        if n:
            metrics.CHANGELOG_WRITES.labels(self.name).inc(n)
            self.writes += n
        self._dirty.clear()
        pending, self._pending = self._pending, []
        for event in pending:
            await stream.ack(event)
        self._last = self._clock()
        return True

    def load_all(self) -> None:
        """Bring every key of this worker's table partitions into memory (for timers that
        must visit every household, e.g. to close the windows of silent meters)."""
        for raw_key in list(self.table.keys()):
            if isinstance(raw_key, bytes) and raw_key.startswith(_MARK_PREFIX):
                continue
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            if key not in self._cache:
                self.get(key)
        self.loaded = True

    def discard(self) -> None:
        """Forget everything not yet checkpointed (rebalance: partitions rewind)."""
        self._cache.clear()
        self._partition.clear()
        self._dirty.clear()
        self._pending.clear()
        self._marks.clear()
        self.loaded = False
        self._last = self._clock()

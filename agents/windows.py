"""Windows agent: validated readings -> closed 1 min / 15 min / 1 h / local-day windows.

Per household the pure ``app.domain.windows.apply`` folds the readings of a batch into the
household's window state; closed windows are emitted once, final, to one topic per size.
Readings later than the grace period (or far in the future, or re-sent) go to the late-data
topic. State is checkpointed (``app.checkpoint``): one changelog message per household per
checkpoint. A timer closes the windows of households that went silent, driven by the
partition's event-time clock (or the wall clock when the whole partition is idle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict

import msgspec

from app import metrics
from app.checkpoint import StateCheckpoint
from app.domain.reading import Reading
from app.domain.windows import (
    ClosedWindow,
    HouseholdWindows,
    WindowParams,
    advance,
    apply,
    close_due,
    due_boundary,
    live_view,
    partition_clock,
)
from app.emitted import WindowKey, already_emitted, key_of
from app.main import app
from app.runtime import decode_batch, json_encoder, partition_of, registry, timezone_of
from app.settings import get_settings
from app.tables import window_state_table
from app.topics import late_topic, readings_topic, window_topics

log = logging.getLogger(__name__)
settings = get_settings()
PARAMS = WindowParams(grace_ms=int(settings.window_grace_s * 1000),
                      max_gap_ms=int(settings.window_max_gap_s * 1000),
                      idle_timeout_ms=int(settings.window_idle_timeout_s * 1000))

window_states: StateCheckpoint[HouseholdWindows] = StateCheckpoint(
    window_state_table, "window-state", topic=settings.topic_readings,
    partition_of=partition_of, encode=msgspec.msgpack.encode,
    decode=msgspec.msgpack.Decoder(HouseholdWindows).decode,
    interval_s=settings.checkpoint_interval_s)

_clock: dict[int, int | None] = {}
"""Event-time clock per readings partition (largest plausible event time seen)."""
_last_progress: dict[int, float] = {}
"""Wall-clock time the partition clock last moved."""
_emitted: set[WindowKey] = set()
"""Windows already in the window topics that a replay would close again (``app.emitted``)."""
_replay_ready = asyncio.Event()
"""Set once the read-back of an assignment is done: the stream waits for it."""
_due: dict[int, int] = {}
"""Per readings partition: the boundary up to which the partition clock last closed windows."""


class LateRecord(msgspec.Struct, frozen=True):
    reason: str
    """``late`` (beyond the grace period) or ``future`` (beyond the allowed clock skew).
    Exact duplicates are dropped and counted instead
    (``wattflow_windows_duplicates_dropped_total``)."""
    reading: Reading


_WINDOW_TOPIC_NAMES = {size: topic.get_topic_name() for size, topic in window_topics.items()}


async def emit(closed: list[ClosedWindow]) -> None:
    """Closed windows to their topics, keyed by household. Straight to the producer (Faust's
    per-message channel machinery costs several times more): the records sit in the producer's
    batches, which Faust flushes before it commits the offsets they came from."""
    if not closed:
        return
    if _emitted:  # a replay after a crash or rebalance: skip what is already in the topics
        fresh = []
        for w in closed:
            key = key_of(w)
            if key in _emitted:
                _emitted.discard(key)  # each window skips once
                metrics.WINDOWS_NOT_REEMITTED.inc()
            else:
                fresh.append(w)
        closed = fresh
    send = app.producer.send
    encode = json_encoder.encode
    for w in closed:
        await send(_WINDOW_TOPIC_NAMES[w.size], w.household_id.encode(), encode(w),
                   partition_of(w.household_id), None, None)
    for size, k in Counter(w.size for w in closed).items():
        metrics.WINDOWS_EMITTED.labels(size).inc(k)


async def send_late(reason: str, readings: list[Reading]) -> None:
    for r in readings:
        await late_topic.send(key=r.household_id.encode(),
                              value=json_encoder.encode(LateRecord(reason, r)))
    if readings:
        if reason == "late":
            metrics.READINGS_LATE.inc(len(readings))
        metrics.DEADLETTERS.labels(f"windows-{reason}").inc(len(readings))


async def process(events: list) -> bool:  # type: ignore[type-arg]
    """Apply a batch of ReadingBatch messages, in partition order.

    Windows close when the household's own event time passes ``end + grace`` or -- usually
    first -- when the partition's clock does (:func:`close_due`). The close by the clock runs
    at the message whose readings move the partition's clock past a boundary + grace, after
    the readings of that partition up to that message were applied: where it happens depends
    on the data only, not on how messages were grouped into batches, so a replay after a
    crash closes the same windows at the same points. Returns True when the partition clock
    closed windows (the agent checkpoints right after: see :func:`windows`)."""
    by_partition: dict[int, dict[str, list[Reading]]] = {}
    ref_ms: dict[int, int] = {}
    n = 0
    crossed = False
    for e in events:
        readings = decode_batch(e.message)
        p = e.message.partition
        ref_ms[p] = ref = int(e.message.timestamp * 1000)
        households = by_partition.get(p)
        if households is None:
            households = by_partition[p] = defaultdict(list)
        for r in readings:
            if not r.implausible:  # dead-lettered by ingestion, for spike detection only
                households[r.household_id].append(r)
        clock = _clock[p] = partition_clock(_clock.get(p), (r.ts_ms for r in readings), ref,
                                            PARAMS)
        _last_progress[p] = time.monotonic()
        if clock is None:
            continue
        due = due_boundary(clock, PARAMS)
        if due > _due.setdefault(p, due):  # the first message after an assignment sets it
            n += await _apply(by_partition.pop(p), ref)
            await _close_partition(p, clock)
            _due[p] = due
            crossed = True
    for p, households in by_partition.items():
        n += await _apply(households, ref_ms[p])
    metrics.READINGS_WINDOWED.inc(n)
    metrics.STAGE_READINGS.labels("windows").inc(n)
    if events:
        metrics.PROCESSING_LATENCY.labels("windows").observe(
            max(0.0, time.time() - events[-1].message.timestamp))
    return crossed


def replay_clock(events: list) -> None:  # type: ignore[type-arg]
    """Events the checkpointed state already holds (``StateCheckpoint.split``): not applied
    again, but they move the partition clock as they did before the crash, and what it closed
    on the way is closed in that state."""
    for e in events:
        p = e.message.partition
        clock = _clock[p] = partition_clock(
            _clock.get(p), (r.ts_ms for r in decode_batch(e.message)),
            int(e.message.timestamp * 1000), PARAMS)
        _last_progress[p] = time.monotonic()
        if clock is not None:
            _due[p] = max(_due.get(p, 0), due_boundary(clock, PARAMS))


async def _apply(by_household: dict[str, list[Reading]], now_ms: int) -> int:
    n = 0
    for hid, readings in by_household.items():
        result = apply(window_states.get(hid), readings, PARAMS,
                       timezone_of(readings[0].meter_id), now_ms=now_ms)
        if result.state is not None:
            window_states.put(hid, result.state)
        n += len(readings)
        await emit(result.closed)
        if result.late:
            await send_late("late", result.late)
        if result.future:
            await send_late("future", result.future)
        if result.duplicates:  # same meter and time as one applied: dropped and counted
            metrics.WINDOWS_DUPLICATES.inc(len(result.duplicates))
    return n


async def _close_partition(p: int, clock_ms: int) -> None:
    """Close what the partition clock says is due, for the households of partition ``p``."""
    closed_now: list[ClosedWindow] = []
    for hid in window_states.keys():  # noqa: SIM118 - a method, not a dict
        if window_states.partition(hid) != p:
            continue
        state = window_states.get(hid)
        if state is None:
            continue
        new, closed = close_due(state, clock_ms, PARAMS)
        if closed:
            window_states.put(hid, new)
            closed_now += closed
    await emit(closed_now)
    metrics.WINDOWS_CLOSED_BY_CLOCK.inc(len(closed_now))


def live(household_id: str) -> dict[str, object] | None:
    """Live power, last reading and today's energy of a household owned by this worker (the
    open windows, pending readings included), for the API."""
    state = window_states.get(household_id)
    return None if state is None else live_view(state, PARAMS)


@app.agent(readings_topic, name="windows")
async def windows(stream):  # type: ignore[no-untyped-def]
    window_states.attach(stream)
    async for events in stream.noack_take(settings.batch_size, settings.stream_within_s):
        await _replay_ready.wait()
        await handle(events)


async def handle(events: list) -> None:  # type: ignore[type-arg]
    """One batch of the agent: skip what the checkpointed state already holds, apply the
    rest, checkpoint when due."""
    async with window_states.lock:
        replayed, new = window_states.split(events)
        replay_clock(replayed)
        crossed = await process(new)
        window_states.hold(events)
        # checkpoint right after the partition clock closed windows: the writes then never
        # delay the next close (a checkpoint running when the next boundary is crossed
        # would hold every window of the partition back for its duration). Not more often
        # than a third of the interval: catching up, boundaries are crossed every moment.
        await window_states.commit(
            force=crossed and window_states.age >= window_states.interval_s / 3)


@app.timer(settings.window_close_interval_s, name="windows-close-silent")
async def close_silent() -> None:
    """Close windows of households that went silent (meter offline): no message arrives for
    them, so their windows are closed by the partition's clock, or by the wall clock once the
    partition itself has been idle for longer than the idle timeout."""
    async with window_states.lock:
        if not window_states.loaded:
            window_states.load_all()
        households = list(window_states.keys())
    now_wall_ms = int(time.time() * 1000)
    now_mono = time.monotonic()
    closed_any = 0
    # in slices, releasing the lock between them: the sweep must not stall the stream
    for i in range(0, len(households), CLOSE_SLICE):
        async with window_states.lock:
            closed_any += await _close_slice(households[i:i + CLOSE_SLICE], now_wall_ms,
                                             now_mono)
        await asyncio.sleep(0)
    if closed_any:
        log.info("closed %d windows of silent households", closed_any)
        async with window_states.lock:
            await window_states.commit(force=True)


CLOSE_SLICE = 500


async def _close_slice(households: list[str], now_wall_ms: int, now_mono: float) -> int:
    """Close what is due for these households (called with the lock held)."""
    closed_any = 0
    for hid in households:
        state = window_states.get(hid)
        if state is None:
            continue
        p = partition_of(hid)
        clock = _clock.get(p)
        # the wall clock takes over only once the partition itself has been idle for the
        # idle timeout *while this worker owned it* (a restarted worker with a backlog is
        # not idle: it has not started reading yet)
        idle_since = _last_progress.setdefault(p, now_mono)
        if now_mono - idle_since > PARAMS.idle_timeout_ms / 1000:
            clock = max(clock or 0, now_wall_ms)
        if clock is None:
            continue
        new, closed = advance(state, clock, PARAMS)
        if closed:
            window_states.put(hid, new)
            await emit(closed)
            closed_any += len(closed)
    return closed_any


@app.timer(1.0, name="windows-checkpoint")
async def windows_checkpoint() -> None:
    await window_states.commit_idle()


@app.on_partitions_revoked.connect
async def _on_revoked(sender, revoked, **kwargs) -> None:  # type: ignore[no-untyped-def]
    _replay_ready.clear()
    window_states.discard()
    _clock.clear()
    _last_progress.clear()
    _due.clear()
    _emitted.clear()
    # the next owner reads back what was emitted: let it find everything this worker sent
    await app.producer.flush()


@app.on_partitions_assigned.connect
async def _on_assigned(sender, assigned, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Before replaying the assigned partitions from their committed offsets, read back the
    windows closed since (``app.emitted``) so that they are not emitted a second time."""
    partitions = sorted(tp.partition for tp in assigned if tp.topic == settings.topic_readings)
    try:
        if partitions:
            _emitted.update(await already_emitted(settings, partitions,
                                                  list(_WINDOW_TOPIC_NAMES.values())))
            if _emitted:
                log.info("windows: %d windows already emitted will not be emitted again",
                         len(_emitted))
    except Exception:
        log.exception("windows: could not read back emitted windows; a replay may re-send some")
    finally:
        _replay_ready.set()


__all__ = ["registry", "windows"]

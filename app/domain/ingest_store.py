"""Per-meter working state of ingestion, owned by the caller and kept across batches.

:class:`MeterStore` holds one mutable :class:`MeterWork` per meter. :func:`ingest_batch
<app.domain.ingest.ingest_batch>` reads and updates it in place (no I/O, no clock), so a
reading costs one dictionary lookup and a few attribute writes instead of loading and freezing
an immutable state per meter and batch. The durable form is :class:`MeterState` (the
changelog value): :meth:`MeterStore.take_changed` freezes the meters changed since its last
call, :meth:`MeterStore.restore` thaws a stored one.

A :class:`MeterWork` also caches the bounds derived from the meter's registry entry
(household, power and apparent-power caps), rebuilt whenever the registry returns another
entry for the meter (:meth:`MeterWork.bind`).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Final

from app.domain.ingest_validate import (
    DEFAULT_LIMITS,
    CounterCandidate,
    IngestLimits,
    MeterState,
)
from app.domain.reading import Reading
from app.domain.registry import MeterInfo

NO_TS: Final = -(2**63)
"""``MeterWork.last_ts_ms`` of a meter without state: every event time is newer."""


class MeterWork:
    """Mutable working state of one meter: :class:`MeterState` with ``recent`` unpacked.

    ``recent`` holds the accepted event times, ascending; only its last ``dedup_memory``
    count (:meth:`freeze` keeps those). Appending is all a new reading does to it; it is
    trimmed back to ``dedup_memory`` when it reaches twice that. A meter without state has
    ``last_ts_ms == NO_TS``. A plain ``__slots__`` class: the hot loop writes its attributes,
    and that is about twice as fast as on a msgspec Struct.
    """

    __slots__ = (
        "apparent_max",
        "candidate",
        "energy_ts_ms",
        "energy_wh",
        "household_id",
        "info",
        "last_ts_ms",
        "meter_id",
        "power_max",
        "power_min",
        "recent",
        "series",
        "tail",
        "tail_ms",
    )

    def __init__(self, meter_id: str) -> None:
        self.meter_id = meter_id
        """The meter's key in :attr:`MeterStore.meters`, the same string object: adding it to
        :attr:`MeterStore.changed` compares by identity, not by content."""
        self.last_ts_ms = NO_TS
        self.energy_wh: float | None = None
        self.energy_ts_ms = 0
        self.recent: list[int] = []
        self.candidate: CounterCandidate | None = None
        self.series = 0
        self.info: MeterInfo | None = None
        """The registry entry the bounds below were derived from (``None``: not yet)."""
        self.household_id = ""
        self.power_min = 0.0
        """Lowest plausible ``power_w``: ``-power_max`` if the meter exports, else 0."""
        self.power_max = 0.0
        """``max_power_w x max_power_factor``: the cap of ``|power_w|`` and of every channel."""
        self.apparent_max = 0.0
        """``max_power_w x max_apparent_factor``."""
        self.tail: str | None = None
        """Suffix (``ts[19:]``) of the meter's last timestamp that the memo of
        :data:`~app.domain.timestamps.TIMESTAMPS` resolved, and its value ``tail_ms``: a node
        that samples at a fixed millisecond phase repeats it (a cache, not state)."""
        self.tail_ms = 0

    def bind(self, info: MeterInfo, limits: IngestLimits) -> None:
        """Derive the cached bounds from ``info`` (the meter's registry entry)."""
        cap = info.max_power_w * limits.max_power_factor
        self.info = info
        self.household_id = info.household_id
        self.power_min = -cap if info.exports else 0.0
        self.power_max = cap
        self.apparent_max = info.max_power_w * limits.max_apparent_factor

    def freeze(self, memory: int) -> MeterState | None:
        """The state as :func:`~app.domain.ingest_validate.admit` sees it (``None``: no state
        yet), remembering the last ``memory`` event times."""
        if self.last_ts_ms == NO_TS:
            return None
        recent = self.recent
        if len(recent) > memory:
            recent = recent[-memory:]
        return MeterState(
            self.last_ts_ms,
            self.energy_wh,
            self.energy_ts_ms,
            _packer(len(recent))(*recent),
            self.candidate,
            self.series,
        )

    def thaw(self, state: MeterState) -> None:
        """Replace the working state with ``state`` (the cached bounds stay)."""
        self.last_ts_ms = state.last_ts_ms
        self.energy_wh = state.energy_wh
        self.energy_ts_ms = state.energy_ts_ms
        self.recent = list(struct.unpack(f"<{len(state.recent) // 8}q", state.recent))
        self.candidate = state.candidate
        self.series = state.series


def _packer(n: int) -> Callable[..., bytes]:
    """``struct.pack`` of ``n`` little-endian int64 (the layout of :attr:`MeterState.recent`)."""
    pack = _PACKERS.get(n)
    if pack is None:
        pack = _PACKERS[n] = struct.Struct(f"<{n}q").pack
    return pack


_PACKERS: dict[int, Callable[..., bytes]] = {}


class MeterStore:
    """The working state of every meter a worker ingests, with what changed since the last
    checkpoint.

    ``ingest_batch`` updates ``meters`` and ``changed`` in place (it gives no entry to meters
    that are not in the registry); the owner fills the store with :meth:`restore`, reads it
    with :meth:`state` and :meth:`take_changed`, and forgets meters with :meth:`drop`.
    """

    __slots__ = ("changed", "meters")

    def __init__(self, states: Iterable[tuple[str, MeterState]] = ()) -> None:
        self.meters: dict[str, MeterWork] = {}
        self.changed: set[str] = set()
        """Meters whose state changed since the last :meth:`take_changed`."""
        for meter_id, state in states:
            self.restore(meter_id, state)

    def restore(self, meter_id: str, state: MeterState) -> None:
        """Set a meter's state, e.g. read back from the changelog (not marked changed)."""
        work = self.meters.get(meter_id)
        if work is None:
            work = self.meters[meter_id] = MeterWork(meter_id)
        work.thaw(state)
        self.changed.discard(meter_id)

    def absorb(self, readings: Iterable[Reading], memory: int = DEFAULT_LIMITS.dedup_memory
               ) -> int:
        """Record readings as accepted that this store's owner already produced but its last
        checkpoint predates (read back from the readings topic after a crash or a
        rebalance), so that their raw records, replayed, are exact duplicates instead of
        being produced a second time. Marks the meters changed; returns how many readings
        were new to the store.

        A reading newer than the meter's last one moves it on as the fast path does (event
        time, counter and its series, no pending discontinuity); an older one joins the
        dedup memory. Readings flagged ``implausible`` were never accepted: skipped."""
        meters = self.meters
        n = 0
        for r in sorted(readings, key=_by_meter_time):
            if r.implausible:
                continue
            meter_id = r.meter_id
            w = meters.get(meter_id)
            if w is None:
                w = meters[meter_id] = MeterWork(meter_id)
            ts = r.ts_ms
            recent = w.recent
            if ts > w.last_ts_ms:
                w.last_ts_ms = ts
                energy = r.energy_wh
                if energy is not None:
                    kept = w.energy_wh
                    if r.counter_series != w.series or kept is None or energy > kept:
                        w.energy_wh = energy
                    w.energy_ts_ms = ts
                    w.candidate = None
                if r.counter_series > w.series:
                    w.series = r.counter_series
                recent.append(ts)
            else:
                i = bisect_left(recent, ts)
                if i < len(recent) and recent[i] == ts:
                    continue
                recent.insert(i, ts)
            if len(recent) >= 2 * memory:
                del recent[:-memory]
            self.changed.add(w.meter_id)
            n += 1
        return n

    def state(self, meter_id: str, memory: int = DEFAULT_LIMITS.dedup_memory) -> MeterState | None:
        """A meter's current state (``None`` when it has none), as it would be stored."""
        work = self.meters.get(meter_id)
        return None if work is None else work.freeze(memory)

    def take_changed(self, memory: int = DEFAULT_LIMITS.dedup_memory) -> dict[str, MeterState]:
        """The states changed since the last call (the checkpoint's changelog records), and
        forget that they changed. ``memory`` is the ``dedup_memory`` of the limits in use."""
        out: dict[str, MeterState] = {}
        meters = self.meters
        for meter_id in self.changed:
            work = meters.get(meter_id)
            state = None if work is None else work.freeze(memory)
            if state is not None:
                out[meter_id] = state
        self.changed = set()
        return out

    def drop(self, meter_ids: Iterable[str]) -> None:
        """Forget these meters (their partitions moved to another worker)."""
        for meter_id in meter_ids:
            self.meters.pop(meter_id, None)
            self.changed.discard(meter_id)


def _by_meter_time(r: Reading) -> tuple[str, int]:
    return (r.meter_id, r.ts_ms)

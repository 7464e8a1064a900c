"""Validation rules of ingestion: reason codes, limits, plausibility checks and per-meter state.

Everything here is pure and deterministic; the only "clock" is the Kafka record timestamp
(``received_ms``) passed in by the caller. See docs/ingest.md for the user-facing rules.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple

import msgspec

from app.domain.registry import MeterInfo

_INF: Final = float("inf")


class Reason(StrEnum):
    """Why a record (or one element of a batch record) became a dead letter."""

    NOT_DECODABLE = "not_decodable"
    """Not valid JSON / not UTF-8 / TIC frame not ASCII or empty."""
    SCHEMA_VIOLATION = "schema_violation"
    """Valid JSON but not the schema (missing/mistyped field, naive ``ts``, empty array,
    malformed TIC group, TIC frame without its power group)."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """``v`` is an integer this build does not know."""
    BAD_CHECKSUM = "bad_checksum"
    """At least one TIC group fails its checksum."""
    UNKNOWN_ID = "unknown_id"
    """Meter not in the registry, household mismatch, or a missing id."""
    OUT_OF_RANGE = "out_of_range"
    """Physically implausible value for this connection (power, voltage, current, energy jump)."""
    TS_FUTURE = "ts_future"
    """Event time later than ``received_ms + max_future_ms``."""
    TS_TOO_OLD = "ts_too_old"
    """Event time before ``received_ms - max_age_ms``, or a late reading older than the
    duplicate-detection memory (it could be a re-send we no longer remember)."""
    COUNTER_BACKWARDS = "counter_backwards"
    """Energy counter decreased, and not enough to be a meter reset/replacement."""
    OVERSIZED = "oversized"
    """Record value longer than ``max_record_bytes`` (not decoded at all)."""
    INTERNAL_ERROR = "internal_error"
    """A bug in ingestion itself; the record is kept for replay."""


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Thresholds of ingestion. Defaults suit a residential 1 Hz..1/min feed."""

    max_record_bytes: int = 256 * 1024
    max_future_ms: int = 5 * 60_000
    """Tolerated clock skew of nodes ahead of the broker."""
    max_age_ms: int = 7 * 24 * 3_600_000
    """Oldest accepted event time (store-and-forward buffers up to a week)."""
    max_power_factor: float = 1.0
    """``|power_w|`` must not exceed ``max_power_w * max_power_factor``."""
    max_apparent_factor: float = 1.25
    """``apparent_va`` must not exceed ``max_power_w * max_apparent_factor``."""
    voltage_min_v: float = 100.0
    voltage_max_v: float = 300.0
    max_current_a: float = 200.0
    energy_slack_wh: float = 100.0
    """Allowed energy increase above ``max_power_w`` x elapsed time (rounding, clock skew)."""
    counter_tolerance_wh: float = 1.0
    """A counter decrease up to this is rounding noise: accepted, state keeps the higher value."""
    reset_floor_wh: float = 1_000.0
    """A decreased counter at or below this is a reset (new/reset meter restarts near zero)."""
    reset_ratio: float = 0.1
    """A decreased counter at or below ``previous * reset_ratio`` is a reset/replacement."""
    counter_confirmations: int = 3
    """A counter discontinuity (a jump faster than the connection allows, or a drop that is
    not a reset) is accepted once this many later readings continue it consistently; the one
    that completes the count is accepted as a counter reset, the earlier ones stay rejected."""
    dedup_memory: int = 64
    """Accepted timestamps remembered per meter to recognise re-sent readings."""
    tic_topics: frozenset[str] = field(default_factory=lambda: frozenset({"meter.raw.tic"}))
    """Topics whose records are TIC envelopes (or bare frames); all others are JSON."""

    def __post_init__(self) -> None:
        if self.dedup_memory < 1:
            raise ValueError("dedup_memory must be at least 1")
        if self.counter_confirmations < 1:
            raise ValueError("counter_confirmations must be at least 1")


DEFAULT_LIMITS: Final = IngestLimits()


class CounterCandidate(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A rejected counter discontinuity waiting for confirmation (see :func:`admit`)."""

    energy_wh: float
    """Counter of the latest reading at the candidate level (the highest, within tolerance)."""
    ts_ms: int
    """Event time of that reading."""
    readings: int
    """Consecutive rejected readings at this level so far (the first jump counts 1)."""


class MeterState(msgspec.Struct, frozen=True, array_like=True):
    """Per-meter ingestion state, the value of a Faust table keyed by meter id.

    Encoded as a JSON array ``[last_ts_ms, energy_wh, energy_ts_ms, recent, candidate, series]``
    where ``recent`` is base64 (about 0.75 KB with the default 64 remembered timestamps) and
    ``candidate`` is ``null`` or ``[energy_wh, ts_ms, readings]``. States written before
    ``candidate`` or ``series`` existed (four or five elements) decode with ``candidate=None``
    and ``series=0``.

    It is the changelog format: ingestion works on a mutable copy
    (:class:`app.domain.ingest_store.MeterWork`) and freezes it into this at checkpoints.
    """

    last_ts_ms: int
    """Latest accepted event time."""
    energy_wh: float | None = None
    """Counter of the latest accepted reading that had one (the highest, within tolerance)."""
    energy_ts_ms: int = 0
    """Event time of ``energy_wh``."""
    recent: bytes = b""
    """Most recent accepted event times, ascending, packed little-endian int64, at most
    ``dedup_memory`` of them (see :func:`recent_ts`)."""
    candidate: CounterCandidate | None = None
    """A counter discontinuity being confirmed (``None`` normally). ``energy_wh`` and
    ``energy_ts_ms`` stay the reference until it is confirmed."""
    series: int = 0
    """Counter series of ``energy_wh`` (:attr:`Reading.counter_series`): :func:`admit` adds one
    at every counter discontinuity it accepts."""


def recent_ts(state: MeterState) -> list[int]:
    """The remembered event times of ``state``, ascending."""
    return list(struct.unpack(f"<{len(state.recent) // 8}q", state.recent))


def pack_ts(timestamps: list[int]) -> bytes:
    return struct.pack(f"<{len(timestamps)}q", *timestamps)


def is_duplicate(state: MeterState | None, ts_ms: int) -> bool:
    """True when ``ts_ms`` was already accepted for this meter (an exact duplicate)."""
    if state is None or ts_ms > state.last_ts_ms:
        return False
    if ts_ms == state.last_ts_ms:
        return True
    recent = recent_ts(state)
    i = bisect_left(recent, ts_ms)
    return i < len(recent) and recent[i] == ts_ms


class CounterReset(msgspec.Struct, frozen=True):
    """An accepted reading whose energy counter restarted (meter reset or replacement).

    Window accumulators must not compute ``new - previous`` across it.
    """

    meter_id: str
    household_id: str
    ts_ms: int
    previous_wh: float
    new_wh: float


class Rejected(NamedTuple):
    reason: Reason
    detail: str
    state: MeterState | None = None
    """The meter's new state when the rejection changes it (a counter candidate), else
    ``None`` (state unchanged)."""


class Admitted(NamedTuple):
    state: MeterState
    reset_from_wh: float | None
    """Previous counter when this reading restarted the energy counter, else ``None``."""


def check_values(
    info: MeterInfo,
    limits: IngestLimits,
    power: float,
    energy: float | None,
    voltage: float | None,
    current: float | None,
    apparent: float | None,
    channels: dict[str, float] | None,
) -> str | None:
    """Plausibility of one reading's values; a human-readable problem, or ``None`` if fine.

    Comparisons are written so that NaN fails them.
    """
    cap = info.max_power_w * limits.max_power_factor
    if not ((-cap if info.exports else 0.0) <= power <= cap):
        if power < 0 and not info.exports:
            return f"power_w={power} is negative on a meter that does not export"
        return f"power_w={power} outside +/-{cap} (max_power_w of the connection)"
    if energy is not None and not (0.0 <= energy < _INF):
        return f"energy_wh={energy} is not a finite non-negative counter"
    if voltage is not None and not (limits.voltage_min_v <= voltage <= limits.voltage_max_v):
        return f"voltage_v={voltage} outside [{limits.voltage_min_v}, {limits.voltage_max_v}]"
    if current is not None and not (-limits.max_current_a <= current <= limits.max_current_a):
        return f"current_a={current} outside +/-{limits.max_current_a}"
    if apparent is not None and not (
        0.0 <= apparent <= info.max_power_w * limits.max_apparent_factor
    ):
        return (
            f"apparent_va={apparent} outside [0, {info.max_power_w * limits.max_apparent_factor}]"
        )
    if channels is not None:
        for name, watts in channels.items():
            if not (0.0 <= watts <= cap):
                return f"channels[{name!r}]={watts} outside [0, {cap}]"
    return None


def beyond_connection(info: MeterInfo, limits: IngestLimits, power: float) -> bool:
    """Active power beyond what the connection can carry (a spike, for anomaly detection):
    above the cap, or below minus the cap on a meter that exports. NaN is not."""
    cap = info.max_power_w * limits.max_power_factor
    return power > cap or (info.exports and power < -cap)


def check_ts(ts_ms: int, received_ms: int, limits: IngestLimits) -> tuple[Reason, str] | None:
    """Event time against the record's broker timestamp."""
    if ts_ms > received_ms + limits.max_future_ms:
        return Reason.TS_FUTURE, (
            f"ts {ts_ms} is {ts_ms - received_ms} ms after received {received_ms} "
            f"(max {limits.max_future_ms})"
        )
    if ts_ms < received_ms - limits.max_age_ms:
        return Reason.TS_TOO_OLD, (
            f"ts {ts_ms} is {received_ms - ts_ms} ms before received {received_ms} "
            f"(max {limits.max_age_ms})"
        )
    return None


def admit(
    state: MeterState | None,
    ts_ms: int,
    energy: float | None,
    info: MeterInfo,
    limits: IngestLimits,
) -> Admitted | Rejected:
    """Check a valid, non-duplicate reading against the meter's history.

    Counter rule, applied to readings newer than the meter's last accepted one (a late reading
    is not compared: the counter between its neighbours is unknown). The reference is the
    last accepted counter and its event time (``energy_wh``, ``energy_ts_ms``):

    * a decrease of at most ``counter_tolerance_wh`` is rounding noise: accepted, the state
      keeps the higher value;
    * a larger decrease is a **reset / meter replacement** when the new value is
      ``<= reset_floor_wh`` or ``<= previous * reset_ratio``: accepted and reported in
      ``counter_resets``; otherwise it is a glitch: ``counter_backwards``;
    * an increase larger than ``max_power_w x elapsed + energy_slack_wh`` is ``out_of_range``.

    A rejected jump or drop is remembered as a :class:`CounterCandidate` (the reference does
    not move). A later rejected reading that continues the candidate consistently (not below
    it by more than the tolerance, not above it by more than the connection allows since the
    candidate) counts one more; the ``counter_confirmations``-th such reading is accepted as a
    counter discontinuity: like a reset, the state restarts from it and it is reported in
    ``counter_resets``. Any other rejected jump or drop starts a new candidate, and an accepted
    reading with a counter drops it, so a one-off spike or alternating garbage is never
    confirmed.

    Every accepted discontinuity (a reset or a confirmed jump/drop: ``reset_from_wh`` is set)
    starts a new counter series: the new state's ``series`` is one more.

    A late reading (older than the last accepted one) is accepted and remembered, unless the
    meter's memory is full and it is older than everything remembered: it might be a re-send
    that was forgotten, so it is ``ts_too_old`` rather than risk counting it twice.
    """
    memory = limits.dedup_memory
    if state is None:
        energy_ts = ts_ms if energy is not None else 0
        return Admitted(MeterState(ts_ms, energy, energy_ts, _pack1(ts_ms)), None)
    if ts_ms > state.last_ts_ms:
        prev = state.energy_wh
        reset: float | None = None
        new_energy, energy_ts = prev, state.energy_ts_ms
        candidate = state.candidate
        if energy is not None:
            energy_ts = ts_ms
            candidate = None
            if prev is None or energy > prev:
                new_energy = energy
            if prev is not None and energy < prev - limits.counter_tolerance_wh:
                if energy <= limits.reset_floor_wh or energy <= prev * limits.reset_ratio:
                    reset = prev
                    new_energy = energy
                else:
                    rejected = _discontinuity(state, prev, ts_ms, energy, info, limits)
                    if rejected is not None:
                        return rejected
                    reset = prev  # a confirmed drop to a new level
                    new_energy = energy
            elif prev is not None and energy > prev:
                allowed = max_energy_increase(info, limits, ts_ms - state.energy_ts_ms)
                if energy - prev > allowed:
                    rejected = _discontinuity(state, prev, ts_ms, energy, info, limits)
                    if rejected is not None:
                        return rejected
                    reset = prev  # a confirmed jump to a new level
        recent = (state.recent + _pack1(ts_ms))[-8 * memory :]
        series = state.series if reset is None else state.series + 1
        return Admitted(MeterState(ts_ms, new_energy, energy_ts, recent, candidate, series), reset)
    remembered = recent_ts(state)
    if len(remembered) >= memory and ts_ms < remembered[-memory]:
        return Rejected(
            Reason.TS_TOO_OLD,
            f"late reading at ts {ts_ms} is older than the {memory} remembered timestamps "
            f"(from {remembered[-memory]}): cannot rule out a re-send",
        )
    insort(remembered, ts_ms)
    late = MeterState(
        state.last_ts_ms,
        state.energy_wh,
        state.energy_ts_ms,
        pack_ts(remembered[-memory:]),
        state.candidate,
        state.series,
    )
    return Admitted(late, None)


def _discontinuity(
    state: MeterState,
    prev: float,
    ts_ms: int,
    energy: float,
    info: MeterInfo,
    limits: IngestLimits,
) -> Rejected | None:
    """A counter reading that neither continues the reference nor is a reset: ``None`` when
    it confirms the meter's candidate (accept it as a discontinuity), else the rejection, with
    the new candidate in its state."""
    c = state.candidate
    need = limits.counter_confirmations
    if c is None or ts_ms <= c.ts_ms:  # no candidate, or not after it (a re-send): no evidence
        n = 1 if c is None else c.readings
        cand = CounterCandidate(energy, ts_ms, 1) if c is None else c
    elif (
        c.energy_wh - limits.counter_tolerance_wh <= energy
        and energy - c.energy_wh <= max_energy_increase(info, limits, ts_ms - c.ts_ms)
    ):
        if c.readings >= need:
            return None
        n = c.readings + 1
        cand = CounterCandidate(max(c.energy_wh, energy), ts_ms, n)
    else:
        n = 1
        cand = CounterCandidate(energy, ts_ms, 1)
    elapsed_s = (ts_ms - state.energy_ts_ms) / 1000.0
    if energy > prev:
        allowed = max_energy_increase(info, limits, ts_ms - state.energy_ts_ms)
        reason = Reason.OUT_OF_RANGE
        what = (
            f"counter jump +{energy - prev:.1f} Wh in {elapsed_s:.10g} s since the last accepted "
            f"counter {prev} at ts {state.energy_ts_ms} (the connection allows {allowed:.1f} Wh)"
        )
    else:
        reason = Reason.COUNTER_BACKWARDS
        what = (
            f"counter drop {energy - prev:.1f} Wh in {elapsed_s:.10g} s: energy_wh {energy} < "
            f"last accepted {prev} at ts {state.energy_ts_ms} (not low enough to be a reset)"
        )
    detail = f"{what}; awaiting confirmation ({n}/{need + 1} readings at the new level)"
    new_state = MeterState(
        state.last_ts_ms, state.energy_wh, state.energy_ts_ms, state.recent, cand, state.series
    )
    return Rejected(reason, detail, None if cand == c else new_state)


def max_energy_increase(info: MeterInfo, limits: IngestLimits, elapsed_ms: int) -> float:
    """Largest plausible counter increase over ``elapsed_ms`` on this connection (Wh)."""
    return (
        info.max_power_w * limits.max_power_factor * elapsed_ms / 3_600_000.0
        + limits.energy_slack_wh
    )


pack1: Final = struct.Struct("<q").pack
"""One event time as packed in :attr:`MeterState.recent`."""
_pack1: Final = pack1

"""Ingestion core: raw Kafka records (JSON readings, TIC frames) to validated readings.

:func:`ingest_batch` is the whole public behaviour. It does no I/O and reads no clock, is
batch first, and total: it never raises, and every reading a record contains ends up in
exactly one of ``readings`` (valid), ``duplicates`` (counted, dropped) or ``dead`` (with a
reason code). The per-meter state is the caller's :class:`MeterStore`, updated in place (see
:mod:`app.domain.ingest_store`); :func:`retry_unknown_ids` validates again, after a registry
refresh, the readings a batch rejected for an unknown meter.

Accounting unit: a decodable JSON array record contains one reading per element; any other
record (a single object, a bare TIC frame, or a record that is oversized, undecodable, not an
array of objects, or an empty array) counts as one. ``IngestResult.per_record`` holds the
``(valid, duplicate, dead)`` tally of each input record, in input order, and
:meth:`IngestResult.balanced` checks the invariant.

Dead letters of an array element carry that element's exact bytes (a slice of the record
value) and its ``index``; dead letters of a whole record carry the record bytes and
``index=None``. Raw bytes are base64 in the JSON encoding of :class:`DeadLetter`.

Speed: JSON records and array elements that are plainly valid and newer than their meter's
last reading go through an inlined fast path (``_Batch.run`` and ``_Batch._fast_elements``):
a decoder that checks the meter-independent bounds in C (``payloads.checked_json_reading``),
then the meter's registry entry and its :class:`MeterWork` in the store, which caches the
bounds derived from that entry (derived again when the registry returns another one), and a
few attribute writes (the dedup memory is a list the event time is appended to). Anything
else (failures, late or duplicate readings, TIC) goes through the reference path
(``_Batch.json_element`` and friends), which applies the rules of
:mod:`app.domain.ingest_validate` to the frozen :class:`MeterState` and produces every dead
letter. The fast path only ever *accepts*, with conditions that imply the reference path
would accept identically; the tests run both paths on the same inputs and compare the results
and the stores (``fast=False``).

Compiled: this module and :mod:`app.domain.ingest_store` can be built with mypyc
(``scripts/build_native.py``, optional: the plain modules behave identically), which cuts the
fast path's cost by about a third. Hence: no msgspec Struct and no class meant to be subclassed
here (mypyc silently drops class keywords such as ``frozen=True``, and interpreted code cannot
subclass a compiled class: those types live in :mod:`app.domain.ingest_types`), and the loops
are written for both interpreters: decoded fields unpacked with one ``astuple`` call into typed
tuples (``_Fields``), dict/list/set methods called on typed locals (compiled to direct C calls)
rather than through bound-method aliases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import islice
from typing import Any, Final, TypeVar

import msgspec
from msgspec.structs import astuple

from app.domain.ingest_store import MeterStore, MeterWork
from app.domain.ingest_types import DeadLetter, IngestResult, RawRecord
from app.domain.ingest_validate import (
    DEFAULT_LIMITS,
    Admitted,
    CounterReset,
    IngestLimits,
    MeterState,
    Reason,
    admit,
    beyond_connection,
    check_ts,
    check_values,
    is_duplicate,
)
from app.domain.payloads import (
    SUPPORTED_JSON_VERSIONS,
    SUPPORTED_TIC_VERSIONS,
    JsonReadingV1,
    TicEnvelopeV1,
    VersionProbe,
    checked_json_reading,
)
from app.domain.reading import Reading
from app.domain.registry import MeterInfo
from app.domain.tic import TicError, measures, parse_frame
from app.domain.timestamps import TIMESTAMPS

__all__ = [
    "DEFAULT_LIMITS",
    "CounterReset",
    "DeadLetter",
    "IngestLimits",
    "IngestResult",
    "MeterState",
    "MeterStore",
    "RawRecord",
    "Reason",
    "ingest_batch",
    "retry_unknown_ids",
]

T = TypeVar("T")

_JSON_RECORD = msgspec.json.Decoder(JsonReadingV1 | list[JsonReadingV1])
_JSON_ELEMENT = msgspec.json.Decoder(JsonReadingV1)
_TIC_RECORD = msgspec.json.Decoder(TicEnvelopeV1 | list[TicEnvelopeV1])
_TIC_ELEMENT = msgspec.json.Decoder(TicEnvelopeV1)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_PROBE = msgspec.json.Decoder(VersionProbe)

_VALID: Final = (1, 0, 0)
_DUPLICATE: Final = (0, 1, 0)
_DEAD: Final = (0, 0, 1)
_TALLY: Final = (_VALID, _DUPLICATE, _DEAD)
_OK, _DUP, _BAD = 0, 1, 2  # element outcomes, indexes into a tally


_FastDecoder = msgspec.json.Decoder[JsonReadingV1 | list[JsonReadingV1]]


def _fast_decoder(limits: IngestLimits) -> _FastDecoder:
    """Decoder of the fast path for these limits (see ``payloads.checked_json_reading``)."""
    key = (limits.voltage_min_v, limits.voltage_max_v, limits.max_current_a)
    decoder = _FAST_DECODERS.get(key)
    if decoder is None:
        checked = checked_json_reading(*key)
        if checked.__struct_fields__ != _FIELDS:  # the fast path unpacks fields by position
            raise TypeError(f"fast decoder fields {checked.__struct_fields__} != {_FIELDS}")
        decoder = msgspec.json.Decoder(checked | list[checked])  # type: ignore[valid-type]
        _FAST_DECODERS[key] = decoder
    return decoder


_FAST_DECODERS: dict[tuple[float, float, float], _FastDecoder] = {}

_FIELDS: Final = (
    "v", "ts", "power_w", "device_id", "meter_id", "household_id", "energy_wh", "voltage_v",
    "current_a", "apparent_va", "channels", "fw",
)  # fmt: skip
"""The fields of :class:`JsonReadingV1` in order: the fast path unpacks a decoded reading with
``msgspec.structs.astuple`` (one call instead of an attribute read per field)."""
_Fields = tuple[
    int, str, Any, str, str, str, float | None, float | None, float | None, float | None,
    dict[str, float] | None, str | None,
]  # fmt: skip
"""Their types (``power_w`` as ``Any``: compiled, the fast path passes the decoded float object on
to the reading instead of unboxing and boxing it again)."""
if JsonReadingV1.__struct_fields__ != _FIELDS:  # a field added or moved: update the fast path
    raise ImportError(f"JsonReadingV1 fields changed: {JsonReadingV1.__struct_fields__}")
_RecordFields = tuple[bytes, str, Any, Any, int]
"""The fields of a :class:`RawRecord`, unpacked at once too."""
if RawRecord.__struct_fields__ != ("value", "topic", "partition", "offset", "received_ms"):
    raise ImportError(f"RawRecord fields changed: {RawRecord.__struct_fields__}")


class _Batch:
    """Accumulators of one :func:`ingest_batch` call over the caller's :class:`MeterStore`."""

    def __init__(
        self,
        registry: Mapping[str, MeterInfo],
        store: MeterStore,
        limits: IngestLimits,
        now_ms: int | None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.limits = limits
        self.now_ms = now_ms
        self.readings: list[Reading] = []
        self.dead: list[DeadLetter] = []
        self.duplicates = 0
        self.resets: list[CounterReset] = []
        self.implausible: list[Reading] = []
        self.per_record: list[tuple[int, int, int]] = []
        self._elements: list[msgspec.Raw] | None = None

    def meter(self, meter_id: str, info: MeterInfo) -> MeterWork:
        """The working state of ``meter_id`` (created on first use), bound to ``info``."""
        work = self.store.meters.get(meter_id)
        if work is None:
            work = self.store.meters[meter_id] = MeterWork(meter_id)
        if work.info is not info:
            work.bind(info, self.limits)
        return work

    # -- the loop ------------------------------------------------------------------------
    def run(self, records: Sequence[RawRecord], start: int, fast: bool) -> None:
        """Process ``records[start:]``. The fast path changes nothing before its last checks
        passed, so if it raises, record ``len(self.per_record)`` produced nothing and left the
        store as it was (see :func:`ingest_batch`)."""
        limits = self.limits
        max_bytes = limits.max_record_bytes
        tic_topics = limits.tic_topics
        max_future = limits.max_future_ms
        max_age = limits.max_age_ms
        tol = limits.counter_tolerance_wh
        slack = limits.energy_slack_wh
        trim_at = 2 * limits.dedup_memory
        memory = limits.dedup_memory
        decode = _fast_decoder(limits).decode
        reg_get = self.registry.get
        meters = self.store.meters
        changed = self.store.changed
        seconds = TIMESTAMPS.seconds
        suffix = TIMESTAMPS.suffix
        readings = self.readings
        per_record = self.per_record
        per_record_append = per_record.append
        general = self.general
        unpack = astuple
        make = Reading
        valid: Any = _VALID  # a single tuple object (compiled, a Final tuple is unboxed)
        # The seconds part of the last timestamp found in the memo, and its value: consecutive
        # records mostly share their second, and a prefix test is cheaper than slice + lookup.
        head: str | None = None
        head_ms = 0
        if not fast:
            for rec in islice(records, start, None):
                per_record_append(general(rec))
            return
        for rec in islice(records, start, None) if start else records:
            record: _RecordFields = unpack(rec)
            value, topic, _, _, received = record
            if len(value) > max_bytes or topic in tic_topics:
                per_record_append(general(rec))
                continue
            try:
                r = decode(value)
            except msgspec.DecodeError:
                per_record_append(general(rec))
                continue
            # Fast path: every condition below implies the reference path accepts it too.
            # The decoder already checked v, device_id and the bounds that do not depend on
            # the meter (payloads.checked_json_reading).
            if isinstance(r, list):
                per_record_append(self.fast_array(rec, r))
                continue
            fields: _Fields = unpack(r)
            _, ts, power_w, device_id, meter_id, household_id, energy, volts, amps, va, chans, _ = (
                fields
            )
            info = reg_get(meter_id)
            w = meters.get(meter_id)
            if head is not None and ts.startswith(head):
                base: int | None = head_ms
            else:
                part = ts[:19]
                base = seconds.get(part)
                if base is not None:
                    head, head_ms = part, base
            if (  # the meter's last suffix again (a node keeps its millisecond phase)
                w is not None
                and w.tail is not None
                and len(ts) == 19 + len(w.tail)
                and ts.endswith(w.tail)
            ):
                add: int | None = w.tail_ms
            else:
                rest = ts[19:]
                add = suffix.get(rest)
                if add is not None and w is not None:
                    w.tail, w.tail_ms = rest, add
            if info is None or base is None or add is None:
                per_record_append(general(rec, r))
                continue
            if w is None or w.info is not info:
                w = self.meter(meter_id, info)
            ts_ms = base + add
            cap = w.power_max
            power: float = power_w
            over = False  # a channel above cap (a loop: half the cost of max() on a few)
            if chans is not None:
                for watts in chans.values():
                    if watts > cap:
                        over = True
                        break
            if (
                over
                or w.household_id != household_id
                or ts_ms <= w.last_ts_ms
                or not (-max_future <= received - ts_ms <= max_age)
                or not (w.power_min <= power <= cap)
                or (va is not None and va > w.apparent_max)
            ):
                per_record_append(general(rec, r))
                continue
            kept = w.energy_wh
            if energy is not None:
                energy_ts = w.energy_ts_ms
                if kept is not None and not (
                    kept - tol <= energy
                    and energy - kept <= cap * (ts_ms - energy_ts) / 3_600_000.0 + slack
                ):
                    per_record_append(general(rec, r))
                    continue
            stamp: Any = ts_ms  # one int object for the reading and the dedup memory
            reading = make(
                w.household_id, meter_id, stamp, power_w, energy, device_id, volts, amps, va,
                None, None, chans, "json", w.series,
            )  # fmt: skip
            # nothing below raises: a failure above left the store untouched
            w.last_ts_ms = ts_ms
            if energy is not None:  # an accepted counter drops a pending discontinuity
                w.energy_ts_ms = ts_ms
                if kept is None or energy > kept:
                    w.energy_wh = energy
                w.candidate = None
            recent = w.recent
            recent.append(stamp)
            if len(recent) >= trim_at:
                del recent[:-memory]
            changed.add(w.meter_id)
            readings.append(reading)
            per_record.append(valid)

    def fast_array(self, rec: RawRecord, items: list[JsonReadingV1]) -> tuple[int, int, int]:
        """A store-and-forward record decoded by the fast path."""
        return self.general(rec, items, fast=True)

    def _fast_elements(self, rec: RawRecord, items: list[JsonReadingV1]) -> tuple[int, int, int]:
        """The fast path over the elements of an array record: the same conditions as in
        :meth:`run`; an element that does not meet them goes to :meth:`json_element`."""
        limits = self.limits
        received = rec.received_ms
        oldest = received - limits.max_age_ms
        newest = received + limits.max_future_ms
        tol = limits.counter_tolerance_wh
        slack = limits.energy_slack_wh
        trim_at = 2 * limits.dedup_memory
        memory = limits.dedup_memory
        reg_get = self.registry.get
        meters = self.store.meters
        changed = self.store.changed
        seconds = TIMESTAMPS.seconds
        suffix = TIMESTAMPS.suffix
        readings = self.readings
        json_element = self.json_element
        unpack = astuple
        make = Reading
        valid = duplicate = dead = 0
        for index, r in enumerate(items):
            fields: _Fields = unpack(r)
            _, ts, power_w, device_id, meter_id, household_id, energy, volts, amps, va, chans, _ = (
                fields
            )
            info = reg_get(meter_id)
            base = seconds.get(ts[:19])
            add = suffix.get(ts[19:])
            if info is None or base is None or add is None:
                outcome = json_element(rec, r, index)
            else:
                w = meters.get(meter_id)
                if w is None or w.info is not info:
                    w = self.meter(meter_id, info)
                ts_ms = base + add
                cap = w.power_max
                power: float = power_w
                kept = w.energy_wh
                over = False
                if chans is not None:
                    for watts in chans.values():
                        if watts > cap:
                            over = True
                            break
                if (
                    over
                    or w.household_id != household_id
                    or ts_ms <= w.last_ts_ms
                    or not (oldest <= ts_ms <= newest)
                    or not (w.power_min <= power <= cap)
                    or (va is not None and va > w.apparent_max)
                    or (
                        energy is not None
                        and kept is not None
                        and not (
                            kept - tol <= energy
                            and energy - kept
                            <= cap * (ts_ms - w.energy_ts_ms) / 3_600_000.0 + slack
                        )
                    )
                ):
                    outcome = json_element(rec, r, index)
                else:
                    stamp: Any = ts_ms
                    reading = make(
                        w.household_id, meter_id, stamp, power_w, energy, device_id, volts,
                        amps, va, None, None, chans, "json", w.series,
                    )  # fmt: skip
                    w.last_ts_ms = ts_ms
                    if energy is not None:
                        w.energy_ts_ms = ts_ms
                        if kept is None or energy > kept:
                            w.energy_wh = energy
                        w.candidate = None
                    recent = w.recent
                    recent.append(stamp)
                    if len(recent) >= trim_at:
                        del recent[:-memory]
                    changed.add(w.meter_id)
                    readings.append(reading)
                    valid += 1
                    continue
            if outcome == _OK:
                valid += 1
            elif outcome == _DUP:
                duplicate += 1
            else:
                dead += 1
        return valid, duplicate, dead

    def general(
        self,
        rec: RawRecord,
        decoded: JsonReadingV1 | list[JsonReadingV1] | None = None,
        fast: bool = False,
    ) -> tuple[int, int, int]:
        """The reference path for one record (``decoded``: the JSON value when the fast path
        already decoded it; ``fast``: run its elements through the fast path), with its own
        last-resort error handling."""
        self._elements = None
        n_read, n_dead, n_dup = len(self.readings), len(self.dead), self.duplicates
        try:
            if decoded is not None:
                if fast and isinstance(decoded, list) and decoded:
                    return self._fast_elements(rec, decoded)
                return self._decoded(rec, decoded, self.json_element)
            return self.record(rec)
        except Exception as exc:  # noqa: BLE001 - total function: a bug must not stop a partition
            # Keep what this record already produced, dead-letter the rest of it as one.
            self.reject(rec, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return (
                len(self.readings) - n_read,
                self.duplicates - n_dup,
                len(self.dead) - n_dead,
            )

    # -- dead letters ------------------------------------------------------------------
    def reject(
        self,
        rec: RawRecord,
        reason: Reason,
        detail: str,
        index: int | None = None,
        raw: bytes | None = None,
        meter_id: str = "",
    ) -> int:
        if raw is None:
            raw = rec.value if index is None else self._element_bytes(rec, index)
        self.dead.append(
            DeadLetter(
                reason=reason,
                detail=detail,
                topic=rec.topic,
                partition=rec.partition,
                offset=rec.offset,
                raw=raw,
                received_ms=rec.received_ms,
                rejected_ms=rec.received_ms if self.now_ms is None else self.now_ms,
                index=index,
                meter_id=meter_id,
            )
        )
        return _BAD

    def _element_bytes(self, rec: RawRecord, index: int) -> bytes:
        """Bytes of element ``index`` of an array record (split lazily, on failures only)."""
        if self._elements is None:
            try:
                self._elements = _RAW_LIST.decode(rec.value)
            except msgspec.DecodeError:
                return rec.value
        if 0 <= index < len(self._elements):
            return bytes(self._elements[index])
        return rec.value

    # -- shared tail of JSON and TIC elements --------------------------------------------
    def accept(
        self,
        rec: RawRecord,
        index: int | None,
        info: MeterInfo,
        meter_id: str,
        ts_ms: int,
        power: float,
        energy: float | None,
        voltage: float | None,
        current: float | None,
        apparent: float | None,
        channels: dict[str, float] | None,
        make: Callable[[int], Reading],
    ) -> int:
        """Duplicate, then event time, then values, then the meter's history (the reference
        rules, on the frozen state); ``make(series)`` builds the accepted reading."""
        work = self.meter(meter_id, info)
        limits = self.limits
        state = work.freeze(limits.dedup_memory)
        if is_duplicate(state, ts_ms):
            self.duplicates += 1
            return _DUP
        bad_ts = check_ts(ts_ms, rec.received_ms, limits)
        if bad_ts is not None:
            return self.reject(rec, bad_ts[0], bad_ts[1], index, meter_id=meter_id)
        problem = check_values(info, limits, power, energy, voltage, current, apparent, channels)
        if problem is not None:
            if beyond_connection(info, limits, power):  # still evidence of a spike
                self.implausible.append(
                    msgspec.structs.replace(make(work.series), implausible=True))
            return self.reject(rec, Reason.OUT_OF_RANGE, problem, index, meter_id=meter_id)
        verdict = admit(state, ts_ms, energy, info, limits)
        if not isinstance(verdict, Admitted):
            if verdict.state is not None:  # a counter discontinuity waiting for confirmation
                work.thaw(verdict.state)
                self.store.changed.add(meter_id)
            return self.reject(rec, verdict.reason, verdict.detail, index, meter_id=meter_id)
        if verdict.reset_from_wh is not None and energy is not None:
            self.resets.append(
                CounterReset(meter_id, info.household_id, ts_ms, verdict.reset_from_wh, energy)
            )
        work.thaw(verdict.state)
        self.store.changed.add(meter_id)
        self.readings.append(make(work.series))
        return _OK

    # -- JSON ----------------------------------------------------------------------------
    def json_element(self, rec: RawRecord, r: JsonReadingV1, index: int | None) -> int:
        if r.v not in SUPPORTED_JSON_VERSIONS:
            return self.reject(rec, Reason.UNSUPPORTED_VERSION, f"v={r.v}", index)
        meter_id = r.meter_id
        info = self.registry.get(meter_id)
        if info is None or info.household_id != r.household_id or not r.device_id:
            return self.reject(rec, Reason.UNKNOWN_ID, _id_problem(r, info), index, None, meter_id)
        ts_ms = TIMESTAMPS.parse(r.ts)
        if ts_ms is None:
            detail = f"ts {r.ts!r} is not RFC 3339 with an explicit UTC offset"
            return self.reject(rec, Reason.SCHEMA_VIOLATION, detail, index, None, meter_id)
        event_ms = ts_ms

        def make(series: int) -> Reading:
            return Reading(
                r.household_id, meter_id, event_ms, r.power_w, r.energy_wh, r.device_id,
                r.voltage_v, r.current_a, r.apparent_va, None, None, r.channels, "json", series,
            )  # fmt: skip

        return self.accept(
            rec, index, info, meter_id, ts_ms, r.power_w, r.energy_wh, r.voltage_v,
            r.current_a, r.apparent_va, r.channels, make,
        )  # fmt: skip

    # -- TIC -----------------------------------------------------------------------------
    def tic_element(
        self,
        rec: RawRecord,
        frame: str | bytes,
        ts_ms: int,
        device_id: str,
        index: int | None,
    ) -> int:
        try:
            m = measures(parse_frame(frame))
        except TicError as exc:
            return self.reject(rec, Reason(exc.reason), exc.detail, index)
        meter_id = m.meter_id
        info = self.registry.get(meter_id)
        if info is None:
            detail = "TIC frame without ADCO/ADSC" if not meter_id else "meter not in registry"
            return self.reject(rec, Reason.UNKNOWN_ID, detail, index, None, meter_id)

        def make(series: int) -> Reading:
            return Reading(
                info.household_id, meter_id, ts_ms, m.power_w, m.energy_wh, device_id,
                m.voltage_v, m.current_a, m.apparent_va, m.tariff, m.indexes_wh, None, "tic",
                series,
            )  # fmt: skip

        return self.accept(
            rec, index, info, meter_id, ts_ms, m.power_w, m.energy_wh, m.voltage_v,
            m.current_a, m.apparent_va, None, make,
        )  # fmt: skip

    def tic_envelope(self, rec: RawRecord, env: TicEnvelopeV1, index: int | None) -> int:
        if env.v not in SUPPORTED_TIC_VERSIONS:
            return self.reject(rec, Reason.UNSUPPORTED_VERSION, f"v={env.v}", index)
        ts_ms = TIMESTAMPS.parse(env.ts)
        if ts_ms is None:
            detail = f"ts {env.ts!r} is not RFC 3339 with an explicit UTC offset"
            return self.reject(rec, Reason.SCHEMA_VIOLATION, detail, index)
        return self.tic_element(rec, env.frame, ts_ms, env.device_id, index)

    # -- records -------------------------------------------------------------------------
    def record(self, rec: RawRecord) -> tuple[int, int, int]:
        value = rec.value
        if len(value) > self.limits.max_record_bytes:
            detail = f"{len(value)} bytes > max_record_bytes {self.limits.max_record_bytes}"
            self.reject(rec, Reason.OVERSIZED, detail)
            return _DEAD
        if rec.topic in self.limits.tic_topics:
            if value[:1] == b"\x02":  # a bare frame: no envelope, event time = broker time
                return _TALLY[self.tic_element(rec, value, rec.received_ms, "", None)]
            return self._structured(
                rec, _TIC_RECORD, _TIC_ELEMENT, SUPPORTED_TIC_VERSIONS, self.tic_envelope
            )
        return self._structured(
            rec, _JSON_RECORD, _JSON_ELEMENT, SUPPORTED_JSON_VERSIONS, self.json_element
        )

    def _structured(
        self,
        rec: RawRecord,
        record_decoder: msgspec.json.Decoder[T | list[T]],
        element_decoder: msgspec.json.Decoder[T],
        versions: frozenset[int],
        element: Callable[[RawRecord, T, int | None], int],
    ) -> tuple[int, int, int]:
        try:
            decoded = record_decoder.decode(rec.value)
        except msgspec.ValidationError:
            return self._slow(rec, element_decoder, versions, element)
        except msgspec.DecodeError as exc:
            self.reject(rec, Reason.NOT_DECODABLE, str(exc))
            return _DEAD
        return self._decoded(rec, decoded, element)

    def _decoded(
        self,
        rec: RawRecord,
        decoded: T | list[T],
        element: Callable[[RawRecord, T, int | None], int],
    ) -> tuple[int, int, int]:
        if not isinstance(decoded, list):
            return _TALLY[element(rec, decoded, None)]
        if not decoded:
            self.reject(rec, Reason.SCHEMA_VIOLATION, "empty array")
            return _DEAD
        counts = [0, 0, 0]
        for i, item in enumerate(decoded):
            counts[element(rec, item, i)] += 1
        return counts[0], counts[1], counts[2]

    def _slow(
        self,
        rec: RawRecord,
        element_decoder: msgspec.json.Decoder[T],
        versions: frozenset[int],
        element: Callable[[RawRecord, T, int | None], int],
    ) -> tuple[int, int, int]:
        """Part of the record does not fit the schema: classify element by element."""
        try:
            parts = _RAW_LIST.decode(rec.value)
        except msgspec.ValidationError:  # valid JSON but not an array: one element
            return _TALLY[self._one(rec, rec.value, None, element_decoder, versions, element)]
        except msgspec.DecodeError as exc:
            self.reject(rec, Reason.NOT_DECODABLE, str(exc))
            return _DEAD
        if not parts:
            self.reject(rec, Reason.SCHEMA_VIOLATION, "empty array")
            return _DEAD
        self._elements = parts
        counts = [0, 0, 0]
        for i, part in enumerate(parts):
            counts[self._one(rec, bytes(part), i, element_decoder, versions, element)] += 1
        return counts[0], counts[1], counts[2]

    def _one(
        self,
        rec: RawRecord,
        raw: bytes,
        index: int | None,
        element_decoder: msgspec.json.Decoder[T],
        versions: frozenset[int],
        element: Callable[[RawRecord, T, int | None], int],
    ) -> int:
        try:
            item = element_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            reason, detail = _classify_invalid(raw, exc, versions)
            return self.reject(rec, reason, detail, index, raw)
        except msgspec.DecodeError as exc:
            return self.reject(rec, Reason.NOT_DECODABLE, str(exc), index, raw)
        return element(rec, item, index)

    def result(self) -> IngestResult:
        return IngestResult(
            readings=self.readings,
            dead=self.dead,
            duplicates=self.duplicates,
            counter_resets=self.resets,
            per_record=self.per_record,
            implausible=self.implausible,
        )


def _classify_invalid(
    raw: bytes, exc: msgspec.ValidationError, versions: frozenset[int]
) -> tuple[Reason, str]:
    """A future version is reported as such even when its shape differs from ours."""
    try:
        v = _PROBE.decode(raw).v
    except msgspec.DecodeError:
        return Reason.SCHEMA_VIOLATION, str(exc)
    if type(v) is int and v not in versions:
        return Reason.UNSUPPORTED_VERSION, f"v={v} ({exc})"
    return Reason.SCHEMA_VIOLATION, str(exc)


def _id_problem(r: JsonReadingV1, info: MeterInfo | None) -> str:
    if not r.meter_id:
        return "missing meter_id"
    if info is None:
        return f"meter {r.meter_id!r} not in registry"
    if not r.household_id:
        return "missing household_id"
    if info.household_id != r.household_id:
        return (
            f"household_id {r.household_id!r} does not match registry {info.household_id!r} "
            f"for meter {r.meter_id!r}"
        )
    return "missing device_id"


def ingest_batch(
    records: Sequence[RawRecord],
    registry: Mapping[str, MeterInfo],
    store: MeterStore,
    limits: IngestLimits = DEFAULT_LIMITS,
    *,
    now_ms: int | None = None,
    fast: bool = True,
) -> IngestResult:
    """Decode, validate and de-duplicate a batch of raw records. Never raises, no I/O.

    Args:
        records: in partition order; state evolves record by record, element by element.
        registry: meter id -> :class:`MeterInfo`.
        store: the per-meter state, **updated in place**: after the call it holds the state
            after the batch, and ``store.changed`` names every meter whose state changed
            (write ``store.take_changed()`` at checkpoints). Only meters of the registry get
            an entry. Running a batch again on the updated store treats its readings as
            re-sent (duplicates): to validate rejected readings again, see
            :func:`retry_unknown_ids`.
        limits: thresholds; ``limits.tic_topics`` says which topics carry TIC.
        now_ms: wall-clock time stamped on dead letters as ``rejected_ms`` (the caller's
            clock); defaults to each record's ``received_ms``.
        fast: ``False`` disables the inlined fast path (tests compare both paths).
    """
    batch = _Batch(registry, store, limits, now_ms)
    done = 0
    while done < len(records):
        try:
            batch.run(records, done, fast)
        except Exception as exc:  # noqa: BLE001 - total function: a bug must not stop a partition
            # The fast path failed on record len(per_record) before producing anything.
            rec = records[len(batch.per_record)]
            batch.reject(rec, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            batch.per_record.append(_DEAD)
        done = len(batch.per_record)
    return batch.result()


def retry_unknown_ids(
    result: IngestResult,
    records: Sequence[RawRecord],
    registry: Mapping[str, MeterInfo],
    store: MeterStore,
    limits: IngestLimits = DEFAULT_LIMITS,
    *,
    now_ms: int | None = None,
) -> IngestResult:
    """Validate again, against a refreshed ``registry``, the readings that ``result`` (of
    ``ingest_batch(records, ...)`` on ``store``) dead-lettered as ``unknown_id``.

    Each such reading is ingested again on its own (its dead letter's ``raw`` is the reading)
    and its outcome replaces the dead letter: an accepted reading is appended to
    ``readings``, a reading still rejected keeps a dead letter (with the new reason, at the
    same ``index``). ``per_record``, ``duplicates`` and ``counter_resets`` are updated to
    match. The other readings of the batch are not ingested twice. Returns the merged result.
    """
    retry = [i for i, d in enumerate(result.dead) if d.reason is Reason.UNKNOWN_ID]
    if not retry:
        return result
    again = ingest_batch(
        [
            RawRecord(d.raw, d.topic, d.partition, d.offset, d.received_ms)
            for d in [result.dead[i] for i in retry]
        ],
        registry,
        store,
        limits,
        now_ms=now_ms,
    )
    position = {(r.topic, r.partition, r.offset): n for n, r in enumerate(records)}
    per_record = list(result.per_record)
    replaced: dict[int, list[DeadLetter]] = {}
    new_dead = iter(again.dead)
    for i, (v, d, x) in zip(retry, again.per_record, strict=True):
        old = result.dead[i]
        n = position[old.topic, old.partition, old.offset]
        tally = per_record[n]
        per_record[n] = (tally[0] + v, tally[1] + d, tally[2] - 1 + x)
        replaced[i] = [
            msgspec.structs.replace(dl, index=old.index) for dl in islice(new_dead, x)
        ]
    return IngestResult(
        readings=result.readings + again.readings,
        dead=[
            dl for i, d in enumerate(result.dead) for dl in replaced.get(i, (d,))
        ],
        duplicates=result.duplicates + again.duplicates,
        counter_resets=result.counter_resets + again.counter_resets,
        per_record=per_record,
        implausible=result.implausible + again.implausible,
    )

"""ingest_batch: JSON and TIC records to readings, dead letters, duplicates and meter state."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest

from app.domain.ingest import (
    DeadLetter,
    IngestLimits,
    IngestResult,
    MeterState,
    MeterStore,
    RawRecord,
    Reason,
    ingest_batch,
    retry_unknown_ids,
)
from app.domain.ingest_validate import CounterCandidate, recent_ts
from app.domain.reading import Reading
from app.domain.registry import MeterInfo
from app.domain.tic import build_frame_historique, build_frame_standard

T0 = 1_795_662_000_000  # 2026-11-26T03:00:00Z
REGISTRY = {
    "m-1": MeterInfo("hh-1", 9_000.0, exports=False),
    "m-2": MeterInfo("hh-2", 6_000.0, exports=True),
    "031762120152": MeterInfo("hh-h", 6_900.0, exports=False),
    "041876097289": MeterInfo("hh-s", 9_000.0, exports=False),
}


def iso(ts_ms: int) -> str:
    s, ms = divmod(ts_ms, 1000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def reading(ts_ms: int = T0, meter: str = "m-1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "device_id": f"node-{meter}",
        "meter_id": meter,
        "household_id": REGISTRY[meter].household_id if meter in REGISTRY else "hh-x",
        "ts": iso(ts_ms),
        "power_w": 500.0,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def rec(
    value: Any, offset: int = 0, received: int = T0 + 1_000, topic: str = "meter.raw.json"
) -> RawRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return RawRecord(raw, topic, 3, offset, received)


@dataclass(slots=True)
class Ran(IngestResult):
    """An :class:`IngestResult` with the states the batch changed (``store.take_changed()``)."""

    states: dict[str, MeterState] = field(default_factory=dict)


def stored(store: MeterStore, limits: IngestLimits) -> dict[str, MeterState]:
    """Every state of the store, frozen."""
    frozen = {m: store.state(m, limits.dedup_memory) for m in store.meters}
    return {m: s for m, s in frozen.items() if s is not None}


def run(
    records: Sequence[RawRecord],
    states: dict[str, MeterState] | None = None,
    limits: IngestLimits | None = None,
    **kw: Any,
) -> Ran:
    """Run both the fast and the reference path, each on a store restored from ``states``,
    and insist they agree, on the result and on the whole store after the batch."""
    limits = limits or IngestLimits()
    ran = []
    for fast in (True, False):
        store = MeterStore((states or {}).items())
        r = ingest_batch(records, REGISTRY, store, limits, fast=fast, **kw)
        changed = store.take_changed(limits.dedup_memory)
        ran.append((Ran(r.readings, r.dead, r.duplicates, r.counter_resets, r.per_record,
                        r.implausible, changed),
                    stored(store, limits)))  # fmt: skip
    (fast_result, fast_store), (slow_result, slow_store) = ran
    assert fast_result == slow_result
    assert fast_store == slow_store
    assert fast_result.balanced()
    assert len(fast_result.per_record) == len(records)
    return fast_result


def reasons(result: IngestResult) -> list[str]:
    return [d.reason.value for d in result.dead]


# -- JSON --------------------------------------------------------------------------------------


def test_valid_json_reading_is_normalized() -> None:
    body = reading(T0, energy_wh=1234.5, voltage_v=231.2, current_a=2.3, apparent_va=540.0,
                   channels={"fridge": 80.0}, fw="1.4.2", future_field={"x": 1})  # fmt: skip
    result = run([rec(body)])
    assert result.readings == [
        Reading(
            "hh-1",
            "m-1",
            T0,
            500.0,
            1234.5,
            "node-m-1",
            231.2,
            2.3,
            540.0,
            channels_w={"fridge": 80.0},
            source="json",
        )
    ]
    assert result.per_record == [(1, 0, 0)]
    assert result.states["m-1"] == MeterState(T0, 1234.5, T0, T0.to_bytes(8, "little"))


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-26T03:00:00Z", T0),
        ("2026-11-26T04:00:00.250+01:00", T0 + 250),
        ("2026-11-26T02:30:00.1234567-00:30", T0 + 123),
        ("2026-11-26t03:00:00z", T0),
    ],
)
def test_timestamps_with_offsets(ts: str, expected: int) -> None:
    result = run([rec(reading(ts=...) | {"ts": ts})])
    assert [r.ts_ms for r in result.readings] == [expected]


def test_store_and_forward_array_keeps_event_time_and_isolates_bad_elements() -> None:
    items = [reading(T0 - 60_000 * (5 - i), energy_wh=1000.0 + i) for i in range(5)]
    items[2]["power_w"] = "lots"  # schema violation in element 2
    raw = orjson.dumps(items)
    result = run([rec(raw)])
    assert [r.ts_ms for r in result.readings] == [T0 - 300_000, T0 - 240_000, T0 - 120_000,
                                                   T0 - 60_000]  # fmt: skip
    assert result.per_record == [(4, 0, 1)]
    (dead,) = result.dead
    assert (dead.reason, dead.index, dead.offset, dead.partition) == (
        Reason.SCHEMA_VIOLATION, 2, 0, 3)  # fmt: skip
    assert orjson.loads(dead.raw) == items[2]  # the element's own bytes
    assert dead.raw in raw


def test_array_element_rejected_by_validation_carries_its_bytes() -> None:
    items = [reading(T0 - 2000), reading(T0 - 1000, meter="m-9"), reading(T0)]
    result = run([rec(items)])
    assert result.per_record == [(2, 0, 1)]
    assert (result.dead[0].reason, result.dead[0].index) == (Reason.UNKNOWN_ID, 1)
    assert orjson.loads(result.dead[0].raw) == items[1]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe not json", Reason.NOT_DECODABLE),
        (b'{"v": 1, "ts": ', Reason.NOT_DECODABLE),
        (b"", Reason.NOT_DECODABLE),
        (b"42", Reason.SCHEMA_VIOLATION),
        (b"[]", Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(power_w=...)), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(power_w=True)), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(v=...)), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(v=1.0)), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(channels={"a": "b"})), Reason.SCHEMA_VIOLATION),
        (b'{"v":1,"meter_id":"m-1","household_id":"hh-1","device_id":"d",'
         b'"ts":"2026-11-26T03:00:00Z","power_w":1e999}', Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading() | {"ts": "2026-11-26T03:00:00"}), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading() | {"ts": "2026-02-30T03:00:00Z"}), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading() | {"ts": "26/11/2026 03:00"}), Reason.SCHEMA_VIOLATION),
        (orjson.dumps(reading(v=2)), Reason.UNSUPPORTED_VERSION),
        (orjson.dumps({"v": 3, "readings": [1, 2]}), Reason.UNSUPPORTED_VERSION),
        (orjson.dumps(reading(meter="m-9")), Reason.UNKNOWN_ID),
        (orjson.dumps(reading(meter_id=...)), Reason.UNKNOWN_ID),
        (orjson.dumps(reading(household_id="hh-2")), Reason.UNKNOWN_ID),
        (orjson.dumps(reading(household_id=...)), Reason.UNKNOWN_ID),
        (orjson.dumps(reading(device_id=...)), Reason.UNKNOWN_ID),
        (orjson.dumps(reading(power_w=-5.0)), Reason.OUT_OF_RANGE),  # m-1 does not export
        (orjson.dumps(reading(power_w=9_000.5)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(meter="m-2", power_w=-6_000.5)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(voltage_v=2300.0)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(voltage_v=12.0)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(current_a=-900.0)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(apparent_va=-1.0)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(energy_wh=-1.0)), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(channels={"kettle": 2000.0, "ghost": -3.0})), Reason.OUT_OF_RANGE),
        (orjson.dumps(reading(T0 + 1_000 + 300_001)), Reason.TS_FUTURE),
        (orjson.dumps(reading(T0 + 1_000 - 7 * 86_400_000 - 1)), Reason.TS_TOO_OLD),
    ],
)  # fmt: skip
def test_reason_codes(value: bytes, reason: Reason) -> None:
    result = run([rec(value, offset=42)], now_ms=T0 + 5_000)
    assert reasons(result) == [reason.value]
    dead = result.dead[0]
    assert (dead.topic, dead.partition, dead.offset, dead.index) == ("meter.raw.json", 3, 42, None)
    assert (dead.raw, dead.received_ms, dead.rejected_ms) == (value, T0 + 1_000, T0 + 5_000)
    assert dead.detail
    assert result.per_record == [(0, 0, 1)]


def test_boundaries_are_inclusive() -> None:
    limits = IngestLimits()
    records = [
        rec(reading(T0 - 2, power_w=9_000.0, voltage_v=100.0)),
        rec(reading(T0 - 1, power_w=0.0, voltage_v=300.0, current_a=-200.0)),
        rec(reading(T0 + 1_000 + limits.max_future_ms)),
        rec(reading(T0 + 1_000 - limits.max_age_ms, meter="m-2", power_w=-6_000.0)),
    ]
    assert run(records).per_record == [(1, 0, 0)] * 4


def test_oversized_record_is_not_decoded() -> None:
    value = orjson.dumps([reading(T0 - i * 1000) for i in range(50)])
    result = run([rec(value)], limits=IngestLimits(max_record_bytes=len(value) - 1))
    assert reasons(result) == ["oversized"]
    assert result.per_record == [(0, 0, 1)]


def test_received_ms_defaults_rejected_ms() -> None:
    result = run([rec(b"nope", received=T0 + 77)])
    assert result.dead[0].rejected_ms == T0 + 77


# -- duplicates, late data, state ----------------------------------------------------------


def test_exact_duplicates_are_counted_not_dead_lettered() -> None:
    first = rec(reading(T0, energy_wh=10.0), offset=1)
    again = rec(reading(T0, energy_wh=10.0), offset=2)
    result = run([first, again, again])
    assert len(result.readings) == 1
    assert result.duplicates == 2
    assert result.dead == []
    assert result.per_record == [(1, 0, 0), (0, 1, 0), (0, 1, 0)]


def test_duplicate_is_same_meter_and_same_timestamp_only() -> None:
    result = run([rec(reading(T0)), rec(reading(T0, meter="m-2"))])
    assert len(result.readings) == 2
    assert result.duplicates == 0


def test_resent_store_and_forward_batch_is_recognised_in_a_later_batch() -> None:
    backlog = [reading(T0 - 60_000 * (10 - i), energy_wh=100.0 + i) for i in range(10)]
    live = rec(reading(T0, energy_wh=111.0), offset=2)
    first = run([rec(backlog, offset=1), live])
    assert len(first.readings) == 11
    # the node never saw the ack and re-sends everything (plus one new reading)
    resent = [*backlog, reading(T0 + 500, energy_wh=111.5)]
    second = run([rec(resent, offset=3)], states=first.states)
    assert second.per_record == [(1, 10, 0)]
    assert [r.ts_ms for r in second.readings] == [T0 + 500]
    assert second.duplicates == 10


def test_late_reading_is_accepted_once_and_not_counter_checked() -> None:
    result = run(
        [rec(reading(T0, energy_wh=5_000.0)), rec(reading(T0 - 30_000, energy_wh=4_990.0))]
    )
    assert [r.ts_ms for r in result.readings] == [T0, T0 - 30_000]
    state = result.states["m-1"]
    assert (state.last_ts_ms, state.energy_wh) == (T0, 5_000.0)
    assert recent_ts(state) == [T0 - 30_000, T0]
    again = run([rec(reading(T0 - 30_000, energy_wh=4_990.0))], states=result.states)
    assert again.duplicates == 1


def test_late_reading_beyond_the_dedup_memory_is_too_old() -> None:
    limits = IngestLimits(dedup_memory=3)
    records = [rec(reading(T0 - 1000 * (5 - i))) for i in range(5)]
    first = run(records, limits=limits)
    assert recent_ts(first.states["m-1"]) == [T0 - 3000, T0 - 2000, T0 - 1000]
    late = run([rec(reading(T0 - 4000)), rec(reading(T0 - 4500))], first.states, limits)
    assert late.duplicates == 0  # T0-4000 was accepted but is no longer remembered
    assert reasons(late) == ["ts_too_old", "ts_too_old"]


def test_only_changed_meters_are_taken_and_the_others_stay_as_restored() -> None:
    kept = MeterState(T0 - 1000, 50.0, T0 - 1000, (T0 - 1000).to_bytes(8, "little"))
    store = MeterStore([("m-2", kept)])
    assert store.changed == set()  # restoring is not a change
    ingest_batch([rec(reading(T0))], REGISTRY, store)
    assert store.changed == {"m-1"}
    assert set(store.take_changed()) == {"m-1"}
    assert store.take_changed() == {}  # taken: nothing changed since
    assert store.state("m-2") == kept
    ingest_batch([rec(reading(T0))], REGISTRY, store)  # a re-send changes nothing
    assert store.changed == set()
    store.drop(["m-2"])
    assert store.state("m-2") is None


def test_unknown_meters_get_no_state() -> None:
    store = MeterStore()
    ingest_batch([rec(reading(T0, meter="m-9")), rec(b"{")], REGISTRY, store)
    assert store.meters == {} and store.changed == set()


def test_the_store_follows_a_registry_change() -> None:
    """Bounds are cached per meter, and derived again when the registry entry changes."""
    store = MeterStore()
    assert len(ingest_batch([rec(reading(T0 - 1000, power_w=8_000.0))], REGISTRY, store).readings)
    smaller = REGISTRY | {"m-1": MeterInfo("hh-1", 6_000.0, exports=False)}
    result = ingest_batch([rec(reading(T0, power_w=8_000.0))], smaller, store)
    assert [d.reason for d in result.dead] == [Reason.OUT_OF_RANGE]
    moved = REGISTRY | {"m-1": MeterInfo("hh-9", 9_000.0, exports=False)}
    result = ingest_batch([rec(reading(T0 + 500) | {"household_id": "hh-9"})], moved, store)
    assert [r.household_id for r in result.readings] == ["hh-9"]


def test_retry_unknown_ids_validates_only_those_again() -> None:
    records = [
        rec(reading(T0 - 2000, meter="m-9"), offset=0),
        rec([reading(T0 - 1000), reading(T0 - 1000, meter="m-9"),
             reading(T0, meter="m-9", power_w=50_000.0)], offset=1),
        rec(reading(T0 - 2000, meter="m-9"), offset=2),  # a re-send of offset 0
        rec(reading(T0 - 500, meter="m-8"), offset=3),
    ]  # fmt: skip
    store = MeterStore()
    first = ingest_batch(records, REGISTRY, store)
    assert first.per_record == [(0, 0, 1), (1, 0, 2), (0, 0, 1), (0, 0, 1)]
    registry = REGISTRY | {"m-9": MeterInfo("hh-x", 9_000.0, exports=False)}
    result = retry_unknown_ids(first, records, registry, store)
    assert result.balanced()
    assert result.per_record == [(1, 0, 0), (2, 0, 1), (0, 1, 0), (0, 0, 1)]
    assert [(r.meter_id, r.ts_ms) for r in result.readings] == [
        ("m-1", T0 - 1000), ("m-9", T0 - 2000), ("m-9", T0 - 1000)]  # fmt: skip
    assert [(d.offset, d.index, d.reason) for d in result.dead] == [
        (1, 2, Reason.OUT_OF_RANGE), (3, None, Reason.UNKNOWN_ID)]  # fmt: skip
    assert orjson.loads(result.dead[0].raw)["power_w"] == 50_000.0
    assert result.duplicates == 1
    # the reading of m-1 was not ingested twice: its state has it once
    assert recent_ts(store.take_changed()["m-1"]) == [T0 - 1000]


def test_meter_state_is_small_and_round_trips_through_json() -> None:
    records = [rec(reading(T0 - 1000 * i, energy_wh=10.0)) for i in range(100, 0, -1)]
    state = run(records).states["m-1"]
    encoded = msgspec.json.encode(state)
    assert len(encoded) < 800
    assert msgspec.json.decode(encoded, type=MeterState) == state
    assert len(recent_ts(state)) == 64


# -- energy counter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "new", "outcome"),
    [
        (1_000_000.0, 1_000_010.0, "ok"),
        (1_000_000.0, 999_999.5, "ok"),  # within counter_tolerance_wh: rounding
        (1_000_000.0, 999_000.0, "counter_backwards"),  # glitch
        (1_000_000.0, 500_000.0, "counter_backwards"),
        (1_000_000.0, 100_000.0, "reset"),  # <= 10 % of previous: replacement meter
        (1_000_000.0, 12.0, "reset"),  # near zero
        (5_000.0, 900.0, "reset"),  # <= reset_floor_wh even if > 10 %
        (5_000.0, 1_200.0, "counter_backwards"),
        (1_000_000.0, 1_000_250.0, "ok"),  # 60 s at 9 kW = 150 Wh, + 100 Wh slack
        (1_000_000.0, 1_000_251.0, "out_of_range"),  # faster than the connection allows
    ],
)
def test_counter_rules(previous: float, new: float, outcome: str) -> None:
    result = run([rec(reading(T0 - 60_000, energy_wh=previous)), rec(reading(T0, energy_wh=new))])
    assert len(result.readings) == (1 if outcome in ("counter_backwards", "out_of_range") else 2)
    if outcome == "reset":
        (reset,) = result.counter_resets
        assert (reset.meter_id, reset.household_id, reset.ts_ms) == ("m-1", "hh-1", T0)
        assert (reset.previous_wh, reset.new_wh) == (previous, new)
        assert result.states["m-1"].energy_wh == new
    else:
        assert result.counter_resets == []
    if outcome in ("counter_backwards", "out_of_range"):
        assert reasons(result) == [outcome]
        assert result.states["m-1"].energy_wh == previous  # state untouched by the reject
    elif outcome == "ok":
        assert result.states["m-1"].energy_wh == max(previous, new)


def test_after_a_glitch_the_next_good_reading_is_accepted() -> None:
    records = [
        rec(reading(T0 - 2000, energy_wh=1_000_000.0)),
        rec(reading(T0 - 1000, energy_wh=900_000.0)),  # glitch
        rec(reading(T0, energy_wh=1_000_001.0)),
    ]
    result = run(records)
    assert result.per_record == [(1, 0, 0), (0, 0, 1), (1, 0, 0)]


# -- TIC -----------------------------------------------------------------------------------


def tic_envelope(frame: str, ts_ms: int = T0, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "device_id": "node-tic", "ts": iso(ts_ms), "frame": frame} | extra


HIST = {"ADCO": "031762120152", "OPTARIF": "HC..", "ISOUSC": "30", "HCHC": "000001000",
        "HCHP": "000002000", "PTEC": "HC..", "IINST": "002", "IMAX": "030", "PAPP": "00460",
        "HHPHC": "A", "MOTDETAT": "000000"}  # fmt: skip
STD = {"ADSC": "041876097289", "VTIC": "02", "DATE": ("H261126040000", ""),
       "NGTF": "    BASE        ", "LTARF": "     BASE       ", "EAST": "000123456",
       "EASF01": "000123456", "IRMS1": "004", "URMS1": "229", "SINSTS": "00920",
       "SMAXSN": ("H261126031522", "03218")}  # fmt: skip


def tic_rec(value: Any, offset: int = 0, received: int = T0 + 1_000) -> RawRecord:
    return rec(value, offset, received, topic="meter.raw.tic")


def test_tic_historique_envelope() -> None:
    result = run([tic_rec(tic_envelope(build_frame_historique(HIST)))])
    assert result.readings == [
        Reading(
            "hh-h",
            "031762120152",
            T0,
            460.0,
            3000.0,
            "node-tic",
            None,
            2.0,
            460.0,
            "HC",
            {"HCHC": 1000.0, "HCHP": 2000.0},
            None,
            "tic",
        )
    ]


def test_tic_standard_envelope() -> None:
    result = run([tic_rec(tic_envelope(build_frame_standard(STD)))])
    assert result.readings == [
        Reading(
            "hh-s",
            "041876097289",
            T0,
            920.0,
            123456.0,
            "node-tic",
            229.0,
            4.0,
            920.0,
            "BASE",
            {"EASF01": 123456.0},
            None,
            "tic",
        )
    ]


def test_tic_bare_frame_uses_broker_time() -> None:
    frame = build_frame_standard(STD).encode("ascii")
    result = run([tic_rec(frame, received=T0 + 1234)])
    assert [(r.ts_ms, r.device_id) for r in result.readings] == [(T0 + 1234, "")]


def test_tic_store_and_forward_and_duplicates() -> None:
    frames = [tic_envelope(build_frame_historique(HIST | {"PAPP": f"{p:05d}"}), T0 - i * 2000)
              for i, p in enumerate((100, 200, 300))]  # fmt: skip
    result = run([tic_rec(frames), tic_rec(frames[0])])
    assert [r.power_w for r in result.readings] == [100.0, 200.0, 300.0]
    assert result.per_record == [(3, 0, 0), (0, 1, 0)]


def _bad_checksum(frame: str) -> str:
    return frame.replace("PAPP 00460", "PAPP 00461").replace("SINSTS\t00920", "SINSTS\t00921")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (tic_envelope(_bad_checksum(build_frame_historique(HIST))), Reason.BAD_CHECKSUM),
        (tic_envelope(_bad_checksum(build_frame_standard(STD))), Reason.BAD_CHECKSUM),
        (_bad_checksum(build_frame_standard(STD)).encode("ascii"), Reason.BAD_CHECKSUM),
        (tic_envelope(build_frame_historique(HIST | {"ADCO": "999999999999"})), Reason.UNKNOWN_ID),
        (tic_envelope(build_frame_historique({"PAPP": "00100"})), Reason.UNKNOWN_ID),
        (tic_envelope(build_frame_historique(HIST | {"PAPP": "07000"})), Reason.OUT_OF_RANGE),
        (tic_envelope(build_frame_standard(STD | {"URMS1": "400"})), Reason.OUT_OF_RANGE),
        (tic_envelope(build_frame_standard(STD | {"SINSTS": "ABCDE"})), Reason.SCHEMA_VIOLATION),
        (tic_envelope("\x02\nADCO 031762120152 5\r\x04"), Reason.SCHEMA_VIOLATION),
        (tic_envelope("\x02\nADCO 0317é 5\r\x03"), Reason.NOT_DECODABLE),
        (tic_envelope(build_frame_historique(HIST), v=2), Reason.UNSUPPORTED_VERSION),
        ({"v": 2, "frames": []}, Reason.UNSUPPORTED_VERSION),
        ({"v": 1, "ts": iso(T0)}, Reason.SCHEMA_VIOLATION),
        (tic_envelope(build_frame_historique(HIST)) | {"ts": "2026-11-26 03:00"},
         Reason.SCHEMA_VIOLATION),
        (tic_envelope(build_frame_historique(HIST), T0 + 3_600_000), Reason.TS_FUTURE),
        (b"\x02garbage", Reason.SCHEMA_VIOLATION),
        (b"garbage", Reason.NOT_DECODABLE),
    ],
)  # fmt: skip
def test_tic_reason_codes(value: Any, reason: Reason) -> None:
    result = run([tic_rec(value)])
    assert reasons(result) == [reason.value]
    assert result.per_record == [(0, 0, 1)]


def test_tic_counter_reset_on_meter_replacement() -> None:
    old = tic_envelope(build_frame_standard(STD | {"EAST": "045000000"}), T0 - 2000)
    new = tic_envelope(build_frame_standard(STD | {"EAST": "000000012"}), T0)
    result = run([tic_rec(old), tic_rec(new)])
    assert len(result.readings) == 2
    assert [(c.previous_wh, c.new_wh) for c in result.counter_resets] == [(45_000_000.0, 12.0)]


# -- output encodings ----------------------------------------------------------------------


def test_dead_letter_json_has_base64_raw_and_reason_string() -> None:
    value = b"\x00\xffnot json"
    dead = run([rec(value, offset=9)]).dead[0]
    doc = orjson.loads(msgspec.json.encode(dead))
    assert doc["reason"] == "not_decodable"
    assert base64.b64decode(doc["raw"]) == value
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("meter.raw.json", 3, 9)
    assert "index" not in doc  # omitted for whole-record dead letters
    assert msgspec.json.decode(msgspec.json.encode(dead), type=DeadLetter) == dead


def test_mixed_batch_accounting() -> None:
    records = [
        rec(reading(T0 - 3000), offset=0),
        rec(b"{", offset=1),
        rec([reading(T0 - 2000), reading(T0 - 2000), {"v": 1}], offset=2),
        tic_rec(tic_envelope(build_frame_historique(HIST)), offset=3),
        rec(reading(T0 - 3000), offset=4),
    ]
    result = run(records)
    assert result.per_record == [(1, 0, 0), (0, 0, 1), (1, 1, 1), (1, 0, 0), (0, 1, 0)]
    assert result.elements == 7
    assert [(d.offset, d.index, d.reason.value) for d in result.dead] == [
        (1, None, "not_decodable"), (2, 2, "schema_violation")]  # fmt: skip


# -- fast path specifics (the reference path must agree: ``run`` compares both) ------------


def test_duplicate_with_an_out_of_range_value_is_still_a_duplicate() -> None:
    """The fast decoder refuses the bad voltage; the reference path keeps the rule order."""
    result = run([rec(reading(T0)), rec(reading(T0, voltage_v=12.0))])
    assert result.per_record == [(1, 0, 0), (0, 1, 0)]


def test_fast_decoder_follows_the_limits() -> None:
    records = [rec(reading(T0, voltage_v=260.0))]
    assert run(records).per_record == [(1, 0, 0)]
    strict = run(records, limits=IngestLimits(voltage_max_v=250.0))
    assert reasons(strict) == ["out_of_range"]


def test_array_mixing_new_late_duplicate_and_bad_elements() -> None:
    states = {"m-1": MeterState(T0 - 10_000, 1e6, T0 - 10_000, (T0 - 10_000).to_bytes(8, "little"))}
    items = [
        reading(T0 - 5_000, energy_wh=1_000_001.0),
        reading(T0 - 10_000, energy_wh=1e6),  # duplicate of the stored state
        reading(T0 - 7_000, energy_wh=1_000_000.5),  # late: accepted, not counter-checked
        reading(T0 - 4_000, meter="m-2", power_w=-100.0),
        reading(T0 - 3_000, energy_wh=900_000.0),  # counter_backwards
        reading(T0 - 2_000, energy_wh=1_000_002.0),
        reading(T0 - 2_000, energy_wh=1_000_002.0),  # duplicate inside the array
    ]
    result = run([rec(items), rec(reading(T0, energy_wh=1_000_003.0))], states=states)
    assert result.per_record == [(4, 2, 1), (1, 0, 0)]
    assert reasons(result) == ["counter_backwards"]
    assert recent_ts(result.states["m-1"]) == [T0 - 10_000, T0 - 7_000, T0 - 5_000, T0 - 2_000, T0]
    assert result.states["m-1"].energy_wh == 1_000_003.0


def test_dedup_memory_is_kept_across_many_readings_of_one_meter_in_a_batch() -> None:
    limits = IngestLimits(dedup_memory=3)
    records = [rec(reading(T0 - 1000 * i)) for i in range(10, 0, -1)]
    result = run([*records, rec(reading(T0 - 3000)), rec(reading(T0 - 4000))], limits=limits)
    assert recent_ts(result.states["m-1"]) == [T0 - 3000, T0 - 2000, T0 - 1000]
    assert result.per_record[-2:] == [(0, 1, 0), (0, 0, 1)]
    assert reasons(result) == ["ts_too_old"]


# -- counter discontinuities: a rejected jump/drop is confirmed by the readings after it ----------

OK, RESET, OOR, BACK = "ok", "reset", "out_of_range", "counter_backwards"


def outcomes(result: IngestResult, records: Sequence[RawRecord]) -> list[str]:
    """Per record: ``ok``, ``reset`` (accepted, in counter_resets) or the dead-letter reason."""
    resets = {c.ts_ms for c in result.counter_resets}
    dead = {d.offset: d.reason.value for d in result.dead}
    accepted = iter(result.readings)
    out = []
    for r, tally in zip(records, result.per_record, strict=True):
        if tally == (1, 0, 0):
            out.append(RESET if next(accepted).ts_ms in resets else OK)
        else:
            out.append(dead[r.offset] if tally == (0, 0, 1) else "duplicate")
    return out


def counter_records(series: Sequence[tuple[int, float | None]]) -> list[RawRecord]:
    """``(seconds after T0 - 1 h, energy_wh)`` -> one m-1 record each (9 kW: 150 Wh a minute)."""
    t = T0 - 3_600_000
    return [
        rec(reading(t + s * 1000, energy_wh=e if e is not None else ...), i, t + s * 1000 + 500)
        for i, (s, e) in enumerate(series)
    ]


@pytest.mark.parametrize(
    ("series", "expected", "final_wh"),
    [
        pytest.param(  # one spike: rejected, the reference does not move, normal readings go on
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_000_100.0), (180, 1_000_200.0),
             (240, 1_000_300.0), (300, 1_000_400.0)],
            [OK, OOR, OK, OK, OK, OK], 1_000_400.0, id="single-spike"),
        pytest.param(  # three spikes in a row at a consistent level, then back: not confirmed
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_200_100.0), (180, 1_200_200.0),
             (240, 1_000_300.0), (300, 1_200_300.0)],
            [OK, OOR, OOR, OOR, OK, OOR], 1_000_300.0, id="spikes-then-back"),
        pytest.param(  # meter replaced by one reading 200 kWh higher: confirmed by 3 readings
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_200_100.0), (180, 1_200_200.0),
             (240, 1_200_300.0), (300, 1_200_400.0)],
            [OK, OOR, OOR, OOR, RESET, OK], 1_200_400.0, id="persistent-jump"),
        pytest.param(  # equal values count as continuing (within counter_tolerance_wh too)
            [(0, 1_000_000.0), (1, 1_200_000.0), (2, 1_200_000.0), (3, 1_199_999.5),
             (4, 1_200_000.0), (5, 1_200_000.5)],
            [OK, OOR, OOR, OOR, RESET, OK], 1_200_000.5, id="persistent-jump-1hz"),
        pytest.param(  # a spike between normal readings is never confirmed
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_000_100.0), (180, 1_200_000.0),
             (240, 1_000_200.0), (300, 1_200_000.0), (360, 1_000_300.0), (420, 1_200_000.0)],
            [OK, OOR, OK, OOR, OK, OOR, OK, OOR], 1_000_300.0, id="alternating-spikes"),
        pytest.param(  # two garbage levels alternating: each restarts the candidate
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 5_000_000.0), (180, 1_200_100.0),
             (240, 5_000_100.0), (300, 1_200_200.0), (360, 5_000_200.0), (420, 1_200_300.0)],
            [OK, OOR, OOR, OOR, OOR, OOR, OOR, OOR], 1_000_000.0, id="alternating-garbage"),
        pytest.param(  # rising faster than the connection from the candidate: not continuing it
            [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_201_000.0), (180, 1_202_000.0),
             (240, 1_203_000.0)],
            [OK, OOR, OOR, OOR, OOR], 1_000_000.0, id="candidate-rising-too-fast"),
        pytest.param(  # a spurious reset, then the real counter returns and is confirmed
            [(0, 5_000_000.0), (60, 0.0), (120, 5_000_100.0), (180, 5_000_200.0),
             (240, 5_000_300.0), (300, 5_000_400.0), (360, 5_000_500.0)],
            [OK, RESET, OOR, OOR, OOR, RESET, OK], 5_000_500.0, id="reset-then-back"),
        pytest.param(  # a drop that is not a reset, persisting: a replacement meter
            [(0, 1_000_000.0), (60, 600_000.0), (120, 600_050.0), (180, 600_100.0),
             (240, 600_150.0), (300, 600_200.0)],
            [OK, BACK, BACK, BACK, RESET, OK], 600_200.0, id="persistent-drop"),
        pytest.param(  # a one-off drop glitch
            [(0, 1_000_000.0), (60, 600_000.0), (120, 1_000_100.0), (180, 600_000.0),
             (240, 1_000_200.0)],
            [OK, BACK, OK, BACK, OK], 1_000_200.0, id="drop-glitches"),
        pytest.param(  # elapsed counts from the last accepted counter, not from the spike
            [(0, 1_000_000.0), (60, 1_500_000.0), (120, 1_000_400.0)],
            [OK, OOR, OK], 1_000_400.0, id="elapsed-from-last-accepted"),
        pytest.param(  # ... nor from a reading without a counter: 120 s -> 300 + 100 Wh
            [(0, 1_000_000.0), (60, None), (120, 1_000_400.0), (180, 1_000_651.0)],
            [OK, OK, OK, OOR], 1_000_400.0, id="elapsed-ignores-no-counter"),
        pytest.param(  # offline 3 days, back within 9 kW x 72 h: a plain reading
            [(0, 1_000_000.0), (3 * 86_400, 1_600_000.0)],
            [OK, OK], 1_600_000.0, id="offline-days-plausible"),
        pytest.param(  # readings without a counter neither confirm nor drop the candidate
            [(0, 1_000_000.0), (60, 1_200_000.0), (90, None), (120, 1_200_100.0), (150, None),
             (180, 1_200_200.0), (240, 1_200_300.0)],
            [OK, OOR, OK, OOR, OK, OOR, RESET], 1_200_300.0, id="no-counter-in-between"),
    ],
)  # fmt: skip
def test_counter_discontinuity_needs_confirmation(
    series: list[tuple[int, float | None]], expected: list[str], final_wh: float
) -> None:
    records = counter_records(series)
    result = run(records)
    assert outcomes(result, records) == expected
    assert result.states["m-1"].energy_wh == final_wh
    # the same readings one batch each: the candidate lives in the stored state
    states: dict[str, MeterState] = {}
    one_by_one = []
    for r in records:
        step = run([r], states=states)
        one_by_one += outcomes(step, [r])
        states = {**states, **step.states}
        # the state goes through the changelog between batches
        states = {k: msgspec.msgpack.decode(msgspec.msgpack.encode(v), type=MeterState)
                  for k, v in states.items()}  # fmt: skip
    assert one_by_one == expected
    assert states["m-1"] == result.states["m-1"]


def test_confirmed_jump_is_reported_as_a_counter_reset_with_a_clear_trail() -> None:
    series = [(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_200_100.0), (180, 1_200_200.0),
              (240, 1_200_300.0)]  # fmt: skip
    records = counter_records(series)
    result = run(records)
    t = T0 - 3_600_000
    (reset,) = result.counter_resets
    assert (reset.meter_id, reset.household_id, reset.ts_ms) == ("m-1", "hh-1", t + 240_000)
    assert (reset.previous_wh, reset.new_wh) == (1_000_000.0, 1_200_300.0)
    assert [d.detail for d in result.dead] == [
        f"counter jump +{j:.1f} Wh in {s} s since the last accepted counter 1000000.0 at ts {t} "
        f"(the connection allows {9_000 * s / 3600 + 100:.1f} Wh); awaiting confirmation "
        f"({n}/4 readings at the new level)"
        for n, (s, j) in enumerate([(60, 200_000), (120, 200_100), (180, 200_200)], start=1)
    ]
    state = result.states["m-1"]
    assert (state.energy_wh, state.energy_ts_ms) == (1_200_300.0, t + 240_000)
    assert state.candidate is None


def test_candidate_is_kept_in_state_and_a_resend_does_not_confirm_it() -> None:
    t = T0 - 3_600_000
    spike = rec(reading(t + 60_000, energy_wh=1_200_000.0), offset=1)
    result = run([rec(reading(t, energy_wh=1_000_000.0)), spike, spike, spike, spike])
    assert reasons(result) == [OOR] * 4  # rejected readings are not remembered as duplicates
    state = result.states["m-1"]
    assert (state.last_ts_ms, state.energy_wh, state.energy_ts_ms) == (t, 1_000_000.0, t)
    assert state.candidate == CounterCandidate(1_200_000.0, t + 60_000, 1)
    assert all(d.detail.endswith("(1/4 readings at the new level)") for d in result.dead)


def test_old_four_field_state_decodes_without_a_candidate() -> None:
    old = msgspec.msgpack.encode([T0, 1_000.0, T0, T0.to_bytes(8, "little")])
    state = msgspec.msgpack.decode(old, type=MeterState)
    assert state == MeterState(T0, 1_000.0, T0, T0.to_bytes(8, "little"))
    assert state.candidate is None


def test_counter_confirmations_is_a_limit() -> None:
    limits = IngestLimits(counter_confirmations=1)
    records = counter_records([(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_200_100.0)])
    assert outcomes(run(records, limits=limits), records) == [OK, OOR, RESET]
    with pytest.raises(ValueError, match="counter_confirmations"):
        IngestLimits(counter_confirmations=0)


def test_store_and_forward_array_confirms_a_jump_on_both_paths() -> None:
    t = T0 - 3_600_000
    items = [reading(t + 60_000 * i, energy_wh=e) for i, e in enumerate(
        [1_000_000.0, 1_000_100.0, 3_000_000.0, 3_000_100.0, 3_000_200.0, 3_000_300.0,
         3_000_400.0])]  # fmt: skip
    result = run([rec(items)])
    assert result.per_record == [(4, 0, 3)]
    assert [d.index for d in result.dead] == [2, 3, 4]
    resets = [(c.previous_wh, c.new_wh) for c in result.counter_resets]
    assert resets == [(1_000_100.0, 3_000_300.0)]
    assert result.states["m-1"].energy_wh == 3_000_400.0


def test_tic_meter_replaced_by_one_with_a_higher_counter() -> None:
    east = [123_456, 45_000_000, 45_000_010, 45_000_020, 45_000_030]
    frames = [
        tic_envelope(build_frame_standard(STD | {"EAST": f"{e:09d}"}), T0 - 60_000 * (5 - i))
        for i, e in enumerate(east)
    ]
    result = run([tic_rec(f, offset=i) for i, f in enumerate(frames)])
    assert result.per_record == [(1, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 1), (1, 0, 0)]
    resets = [(c.previous_wh, c.new_wh) for c in result.counter_resets]
    assert resets == [(123_456.0, 45_000_030.0)]


# -- counter series: every accepted discontinuity starts a new one ------------------------------


def series_of(result: IngestResult) -> list[tuple[int, int]]:
    return [(r.ts_ms, r.counter_series) for r in result.readings]


def test_a_reset_starts_a_new_counter_series() -> None:
    records = counter_records([(0, 1_000_000.0), (60, 1_000_100.0), (120, 12.0), (180, 40.0),
                               (240, None), (300, 90.0)])  # fmt: skip
    result = run(records)
    assert [s for _, s in series_of(result)] == [0, 0, 1, 1, 1, 1]
    assert result.states["m-1"].series == 1
    assert msgspec.json.decode(msgspec.json.encode(result.readings[2]), type=Reading) == (
        result.readings[2])


def test_a_confirmed_jump_starts_a_new_counter_series() -> None:
    records = counter_records([(0, 1_000_000.0), (60, 1_200_000.0), (120, 1_200_100.0),
                               (180, 1_200_200.0), (240, 1_200_300.0), (300, 1_200_400.0),
                               (360, 0.0), (420, 50.0)])  # fmt: skip
    result = run(records)
    assert outcomes(result, records) == [OK, OOR, OOR, OOR, RESET, OK, RESET, OK]
    assert [s for _, s in series_of(result)] == [0, 1, 1, 2, 2]
    assert result.states["m-1"].series == 2


def test_rejected_discontinuities_and_late_readings_keep_the_series() -> None:
    t = T0 - 3_600_000
    records = [
        *counter_records([(0, 1_000_000.0), (60, 10.0), (120, 20.0), (180, 500_000.0)]),
        rec(reading(t + 90_000, energy_wh=15.0), 9, t + 200_000),  # late
    ]
    result = run(records)
    assert outcomes(result, records) == [OK, RESET, OK, OOR, OK]
    assert [s for _, s in series_of(result)] == [0, 1, 1, 1]
    assert result.states["m-1"].series == 1


def test_a_restored_state_keeps_its_series() -> None:
    first = run(counter_records([(0, 1_000_000.0), (60, 10.0)]))
    assert first.states["m-1"].series == 1
    # through the changelog (msgpack), then a new store
    states = {k: msgspec.msgpack.decode(msgspec.msgpack.encode(v), type=MeterState)
              for k, v in first.states.items()}  # fmt: skip
    later = run(counter_records([(120, 20.0), (180, 5.0)]), states=states)
    assert [s for _, s in series_of(later)] == [1, 2]
    again = run(counter_records([(240, 30.0)]), states=later.states)
    assert [s for _, s in series_of(again)] == [2]


def test_states_stored_before_the_series_decode_with_series_zero() -> None:
    recent = T0.to_bytes(8, "little")
    five = msgspec.msgpack.encode([T0, 1_000.0, T0, recent, [2_000.0, T0, 1]])
    state = msgspec.msgpack.decode(five, type=MeterState)
    assert state == MeterState(T0, 1_000.0, T0, recent, CounterCandidate(2_000.0, T0, 1), 0)
    json_four = msgspec.json.encode([T0, 1_000.0, T0, recent])
    assert msgspec.json.decode(json_four, type=MeterState).series == 0
    result = run([rec(reading(T0 + 1000, energy_wh=1_000.5))], states={"m-1": state})
    assert series_of(result) == [(T0 + 1000, 0)]


def test_array_and_tic_readings_carry_the_series() -> None:
    t = T0 - 3_600_000
    items = [reading(t + 60_000 * i, energy_wh=e)
             for i, e in enumerate([1_000_000.0, 5.0, 6.0, 7.0])]  # fmt: skip
    assert [s for _, s in series_of(run([rec(items)]))] == [0, 1, 1, 1]
    old = tic_envelope(build_frame_standard(STD | {"EAST": "045000000"}), T0 - 2000)
    new = tic_envelope(build_frame_standard(STD | {"EAST": "000000012"}), T0)
    assert [s for _, s in series_of(run([tic_rec(old), tic_rec(new), tic_rec([new])]))] == [0, 1]


def test_power_beyond_the_connection_is_dead_lettered_and_forwarded_for_spike_detection() -> None:
    spike = reading(T0, power_w=50_000.0, energy_wh=1_000.0)  # m-1: 9 kVA, no export
    negative = reading(T0 + 1_000, power_w=-5.0, energy_wh=1_000.0)
    bad_volts = reading(T0 + 2_000, power_w=500.0, energy_wh=1_000.0, voltage_v=400.0)
    fine = reading(T0 + 3_000, power_w=500.0, energy_wh=1_000.2)
    result = run([rec(spike), rec(negative, 1), rec(bad_volts, 2), rec(fine, 3)])
    assert reasons(result) == ["out_of_range"] * 3
    assert [r.ts_ms for r in result.readings] == [T0 + 3_000]
    [flagged] = result.implausible
    assert (flagged.implausible, flagged.power_w, flagged.ts_ms, flagged.household_id) == (
        True, 50_000.0, T0, "hh-1")
    assert not result.readings[0].implausible
    assert result.per_record == [(0, 0, 1), (0, 0, 1), (0, 0, 1), (1, 0, 0)]  # still dead
    # an exporting meter's power beyond minus the connection is a spike too
    export = reading(T0, meter_id="m-2", household_id="hh-2", power_w=-60_000.0)
    assert [r.power_w for r in run([rec(export)]).implausible] == [-60_000.0]


def test_absorbing_readings_already_produced_makes_their_replay_duplicates() -> None:
    """A worker checkpoints, ingests more, produces those readings and crashes; the next owner
    restores the checkpoint and reads back what was produced (agents/ingest.absorb_produced):
    the store is then as the crashed worker's was, and the replayed records are duplicates."""
    first = [rec(reading(T0 + 1000 * i, energy_wh=1000.0 + i), offset=i) for i in range(5)]
    first.append(rec(reading(T0, meter="m-2", energy_wh=50.0), offset=5))
    later = [
        rec(reading(T0 + 5000, energy_wh=1005.0), offset=6),
        rec(reading(T0 + 2500, energy_wh=1002.5), offset=7),  # late: accepted, no counter move
        rec(reading(T0 + 6000, energy_wh=0.5), offset=8),  # meter replaced: counter reset
        rec(reading(T0 + 7000, power_w=90_000.0), offset=9),  # beyond the connection
        rec(reading(T0 + 1000, meter="m-2", energy_wh=50.1), offset=10),
        rec(reading(T0, meter="m-1"), offset=11),  # a duplicate: nothing produced
    ]
    crashed = MeterStore()
    ingest_batch(first, REGISTRY, crashed)
    checkpoint = crashed.take_changed()
    produced = ingest_batch(later, REGISTRY, crashed)
    assert len(produced.readings) == 4 and len(produced.implausible) == 1
    assert produced.readings[2].counter_series == 1 and len(produced.counter_resets) == 1

    owner = MeterStore(checkpoint.items())
    # what the readings topic holds: the readings, and the flagged one for spike detection
    assert owner.absorb([*produced.readings, *produced.implausible]) == 4
    assert owner.changed == {"m-1", "m-2"}
    assert stored(owner, IngestLimits()) == stored(crashed, IngestLimits())
    assert owner.absorb(produced.readings) == 0  # twice is once
    replay = ingest_batch(later, REGISTRY, owner)
    assert replay.readings == [] and replay.duplicates == 5
    assert [d.reason.value for d in replay.dead] == ["out_of_range"]  # rejected again
    after = ingest_batch([rec(reading(T0 + 8000, energy_wh=0.7), offset=12)], REGISTRY, owner)
    assert [(r.ts_ms, r.counter_series) for r in after.readings] == [(T0 + 8000, 1)]

"""Properties of ingest_batch on arbitrary input: total, every reading accounted for, and the
fast path always agrees with the reference path."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.ingest import (
    IngestLimits,
    IngestResult,
    MeterState,
    MeterStore,
    RawRecord,
    Reason,
    ingest_batch,
)
from app.domain.registry import MeterInfo
from app.domain.tic import build_frame_historique, build_frame_standard

T0 = 1_795_662_000_000
REGISTRY = {
    "m-1": MeterInfo("hh-1", 9_000.0, exports=False),
    "m-2": MeterInfo("hh-2", 6_000.0, exports=True),
    "000000000001": MeterInfo("hh-t", 9_000.0, exports=False),
}
LIMITS = IngestLimits(dedup_memory=4, max_record_bytes=4_096)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)  # orjson encodes 64-bit integers only
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

# Mostly plausible readings, with every field able to go wrong.
reading_like = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2, "1"]),
        "device_id": st.sampled_from(["node-1", ""]),
        "meter_id": st.sampled_from(["m-1", "m-2", "m-9"]),
        "household_id": st.sampled_from(["hh-1", "hh-2"]),
        "ts": st.integers(T0 - 10_000, T0 + 10_000).map(
            lambda t: f"2026-11-26T02:59:{50 + (t - T0 + 10_000) // 2_000:02d}.{t % 1000:03d}Z"
        )
        | st.sampled_from(["2026-11-26T03:00:00", "nope", "2026-11-26T03:00:00+01:00"]),
        "power_w": st.floats(-7_000, 10_000) | st.sampled_from([0.0, 500.0]),
    },
    optional={
        "energy_wh": st.sampled_from([1_000_000.0, 1_000_010.0, 999_000.0, 5.0, -1.0]),
        "voltage_v": st.floats(0, 400),
        "channels": st.dictionaries(st.sampled_from(["a", "b"]), st.floats(-10, 10_000)),
        "extra": json_values,
    },
)

tic_frames = st.fixed_dictionaries(
    {"ADCO": st.sampled_from(["000000000001", "000000000002"]),
     "BASE": st.integers(0, 10**9 - 1).map(lambda n: f"{n:09d}"),
     "PAPP": st.integers(0, 99_999).map(lambda n: f"{n:05d}")}
).map(build_frame_historique) | st.fixed_dictionaries(
    {"ADSC": st.just("000000000001"),
     "EAST": st.integers(0, 10**9 - 1).map(lambda n: f"{n:09d}"),
     "SINSTS": st.integers(0, 99_999).map(lambda n: f"{n:05d}")}
).map(build_frame_standard)  # fmt: skip


def corrupt(frame: str, at: int) -> str:
    i = at % len(frame)
    return frame[:i] + chr((ord(frame[i]) + 1) % 128) + frame[i + 1 :]


tic_values = st.one_of(
    tic_frames.map(lambda f: orjson.dumps({"v": 1, "device_id": "n", "ts": "2026-11-26T03:00:00Z",
                                           "frame": f})),
    st.tuples(tic_frames, st.integers(0, 1000)).map(
        lambda p: orjson.dumps({"v": 1, "ts": "2026-11-26T03:00:00Z", "frame": corrupt(*p)})
    ),
    tic_frames.map(lambda f: f.encode("ascii")),
    st.binary(max_size=64).map(lambda b: b"\x02" + b),
)  # fmt: skip


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


record_values = st.one_of(
    st.binary(max_size=200),
    json_values.map(encode),
    reading_like.map(encode),
    st.lists(reading_like | json_values, max_size=6).map(encode),
)


def frozen(store: MeterStore, limits: IngestLimits) -> dict[str, MeterState]:
    """Every state of the store (the fast path may create empty entries the reference path
    does not: they freeze to ``None``)."""
    states = {m: store.state(m, limits.dedup_memory) for m in store.meters}
    return {m: s for m, s in states.items() if s is not None}


def check(records: list[RawRecord]) -> IngestResult:
    fast_store, slow_store = MeterStore(), MeterStore()
    fast = ingest_batch(records, REGISTRY, fast_store, LIMITS, now_ms=T0)
    slow = ingest_batch(records, REGISTRY, slow_store, LIMITS, now_ms=T0, fast=False)
    assert fast == slow
    assert frozen(fast_store, LIMITS) == frozen(slow_store, LIMITS)
    assert fast_store.changed == slow_store.changed
    assert fast.balanced()
    assert len(fast.per_record) == len(records)
    for record, (valid, dup, dead) in zip(records, fast.per_record, strict=True):
        assert valid + dup + dead >= 1
        mine = [d for d in fast.dead if d.offset == record.offset]
        assert len(mine) == dead
        for d in mine:
            assert d.reason in Reason
            assert d.reason is not Reason.INTERNAL_ERROR, d.detail
            assert d.detail
            assert d.raw == record.value or d.raw in record.value
    return fast


@SETTINGS
@given(st.lists(record_values, max_size=8))
def test_json_topic_never_raises_and_accounts_for_everything(values: list[bytes]) -> None:
    records = [RawRecord(v, "meter.raw.json", 0, i, T0) for i, v in enumerate(values)]
    check(records)


@SETTINGS
@given(st.lists(tic_values | st.binary(max_size=64), max_size=6))
def test_tic_topic_never_raises_and_accounts_for_everything(values: list[bytes]) -> None:
    records = [RawRecord(v, "meter.raw.tic", 0, i, T0) for i, v in enumerate(values)]
    check(records)


@SETTINGS
@given(st.lists(reading_like, min_size=1, max_size=12))
def test_replaying_a_batch_yields_only_duplicates_and_the_same_dead(
    items: list[dict[str, Any]],
) -> None:
    """Idempotence, within the dedup memory (here larger than the batch).

    A reading that was dead the first time stays dead, unless a later reading of the batch was
    accepted at the same meter and event time: duplicates are checked first (docs/ingest.md),
    so on replay it is that reading's duplicate."""
    limits = IngestLimits(dedup_memory=16)
    records = [RawRecord(encode(x), "meter.raw.json", 0, i, T0) for i, x in enumerate(items)]
    store, slow_store = MeterStore(), MeterStore()
    first = ingest_batch(records, REGISTRY, store, limits, now_ms=T0)
    assert first == ingest_batch(records, REGISTRY, slow_store, limits, now_ms=T0, fast=False)
    store.take_changed(limits.dedup_memory)
    slow_store.take_changed(limits.dedup_memory)
    replay = ingest_batch(records, REGISTRY, store, limits, now_ms=T0)
    assert replay == ingest_batch(records, REGISTRY, slow_store, limits, now_ms=T0, fast=False)
    assert replay.balanced()
    assert replay.readings == []
    assert store.changed == set()
    assert frozen(store, limits) == frozen(slow_store, limits)
    for before, after in zip(first.per_record, replay.per_record, strict=True):
        assert after == (0, 1, 0) or after == before == (0, 0, 1)

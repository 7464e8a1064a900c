"""The ingest stage's batch step: routing per partition, dead letters, state checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import orjson
import pytest

import agents.ingest as ingest
from app.domain.ingest import MeterState, RawRecord
from app.domain.reading import decode_batch
from app.domain.registry import MeterInfo
from app.partitioning import HouseholdPartitioner
from app.settings import get_settings
from app.topics import ingest_changelog_topic

T0 = 1_795_000_000_000
PART = HouseholdPartitioner(4)
S = get_settings()


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes, int | None, int | None]] = field(
        default_factory=list)
    flushed: int = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None) -> None:
        self.sent.append((topic, key, value, partition, timestamp_ms))

    async def flush(self) -> None:
        self.flushed += 1

    def on(self, topic: str) -> list[tuple[str, bytes | None, bytes, int | None, int | None]]:
        return [x for x in self.sent if x[0] == topic]


class _Registry(dict):  # type: ignore[type-arg]
    stale = False

    @property
    def snapshot(self) -> dict[str, MeterInfo]:
        return self

    async def refresh(self, *, min_age_s: float = 0.0) -> bool:
        return False


def doc(meter: str, hid: str, i: int, power: float = 500.0) -> bytes:
    ts = datetime.fromtimestamp((T0 + i * 1000) / 1000, tz=UTC).isoformat()
    return orjson.dumps({"v": 1, "device_id": "n", "meter_id": meter, "household_id": hid,
                         "ts": ts, "power_w": power, "energy_wh": 1000.0 + i})


def records(docs: list[tuple[str, bytes]]) -> tuple[list[RawRecord], list[bytes | None]]:
    recs = [RawRecord(v, S.topic_raw_json, PART(k), off, T0 + 5000)
            for off, (k, v) in enumerate(docs)]
    return recs, [k.encode() for k, _ in docs]


@pytest.fixture
def stage(monkeypatch: pytest.MonkeyPatch) -> ingest.IngestStage:
    registry = {f"m{i}": MeterInfo(f"h{i}", 9000.0, False, "Europe/Paris") for i in range(8)}
    monkeypatch.setattr(ingest, "registry", _Registry(registry))
    return ingest.IngestStage(S, FakeProducer(), ingest.MeterStates())  # type: ignore[arg-type]


async def test_readings_are_batched_per_partition_of_their_household(stage) -> None:  # type: ignore[no-untyped-def]
    await stage.process(*records([(f"m{m}", doc(f"m{m}", f"h{m}", i))
                                  for i in range(5) for m in range(8)]))
    sent = stage.producer.on(S.topic_readings)
    batches = [(p, decode_batch(v)) for _, _, v, p, _ in sent]
    assert sum(len(rs) for _, rs in batches) == 40
    assert len(sent) == len({PART(f"h{m}") for m in range(8)})  # one message per partition
    for p, rs in batches:
        assert {PART(r.household_id) for r in rs} == {p}
    assert {ts for *_, ts in sent} == {T0 + 5000}  # the raw records' broker time
    assert stage.producer.on(S.topic_deadletter) == []

    # checkpoint: one changelog record per meter, in the partition its records arrive on
    assert await stage.write_states() == 8
    log = stage.producer.on(ingest_changelog_topic(S))
    assert {(k, p) for _, k, _, p, _ in log} == {(f"m{m}".encode(), PART(f"m{m}"))
                                               for m in range(8)}
    state = msgspec.msgpack.decode(log[0][2], type=MeterState)
    assert state.last_ts_ms == T0 + 4000
    assert await stage.write_states() == 0  # nothing changed since


async def test_bad_records_become_dead_letters_and_duplicates_are_dropped(stage) -> None:  # type: ignore[no-untyped-def]
    await stage.process(*records([("m1", doc("m1", "h1", 0)), ("m1", doc("m1", "h1", 0)),
                                  ("m1", b"{not json"), ("m2", doc("m2", "h2", 1, power=-5.0))]))
    sent = stage.producer.on(S.topic_readings)
    assert sum(len(decode_batch(v))
               for _, _, v, _, _ in sent) == 1
    dead = [orjson.loads(v) for _, _, v, _, _ in stage.producer.on(S.topic_deadletter)]
    assert sorted(d["reason"] for d in dead) == ["not_decodable", "out_of_range"]
    assert {d["offset"] for d in dead} == {2, 3}


def test_dropping_revoked_partitions_forgets_only_their_meters() -> None:
    states = ingest.MeterStates()
    s = MeterState(1, None, 1, (1).to_bytes(8, "little"))
    states.restore("a", s, 0)
    states.restore("b", s, 1)
    states.store.changed.update({"a", "b"})
    states.drop_partitions([0])
    assert states.get("a") is None and states.get("b") == s
    assert [(m, p) for m, _, p in states.changed()] == [("b", 1)]


async def test_restored_states_are_continued_and_not_written_back(stage) -> None:  # type: ignore[no-untyped-def]
    recs, keys = records([("m1", doc("m1", "h1", 0)), ("m2", doc("m2", "h2", 0))])
    await stage.process(recs, keys)
    await stage.write_states()
    log = stage.producer.on(ingest_changelog_topic(S))
    restored = ingest.MeterStates()
    for _, key, value, partition, _ in log:
        restored.restore(key.decode(), msgspec.msgpack.decode(value, type=MeterState), partition)
    stage.states = restored
    stage.producer.sent.clear()
    await stage.process(*records([("m1", doc("m1", "h1", 0)), ("m1", doc("m1", "h1", 1))]))
    assert await stage.write_states() == 1  # m1 only: m2 was restored, not changed
    (state,) = [msgspec.msgpack.decode(v, type=MeterState)
                for _, _, v, _, _ in stage.producer.on(ingest_changelog_topic(S))]
    assert state.last_ts_ms == T0 + 1000
    readings = [r for _, _, v, _, _ in stage.producer.on(S.topic_readings)
                for r in decode_batch(v)]
    assert [r.ts_ms for r in readings] == [T0 + 1000]  # the first one was a duplicate


async def test_an_unknown_meter_is_validated_again_after_a_registry_refresh(  # type: ignore[no-untyped-def]
        stage, monkeypatch: pytest.MonkeyPatch) -> None:
    class Refreshing(_Registry):

        async def refresh(self, *, min_age_s: float = 0.0) -> bool:
            self["m9"] = MeterInfo("h9", 9000.0, False)
            return True

    monkeypatch.setattr(ingest, "registry", Refreshing({"m1": MeterInfo("h1", 9000.0, False)}))
    await stage.process(*records([("m1", doc("m1", "h1", 0)), ("m9", doc("m9", "h9", 0)),
                                  ("m8", doc("m8", "h8", 0))]))
    readings = [r for _, _, v, _, _ in stage.producer.on(S.topic_readings)
                for r in decode_batch(v)]
    assert sorted(r.meter_id for r in readings) == ["m1", "m9"]  # m1 once
    dead = [orjson.loads(v) for _, _, v, _, _ in stage.producer.on(S.topic_deadletter)]
    assert [(d["reason"], d["meter_id"]) for d in dead] == [("unknown_id", "m8")]


def test_a_replayed_record_is_skipped_only_when_all_its_readings_were_produced() -> None:
    from aiokafka import TopicPartition

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")

    def doc(device: str, ms: int) -> dict[str, object]:
        return {"v": 1, "device_id": device, "meter_id": "m", "household_id": "h",
                "ts": iso(ms), "power_w": 1.0}

    topic = S.topic_raw_json
    replay = ingest.Replay({TopicPartition(topic, 0): 10},
                           {("n1", T0), ("n1", T0 + 1000), ("n2", T0)})

    def rec(value: object, offset: int = 3, partition: int = 0) -> RawRecord:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return RawRecord(raw, topic, partition, offset, T0)

    assert replay.already_produced(rec(doc("n1", T0))) == 1
    assert replay.already_produced(rec([doc("n1", T0), doc("n1", T0 + 1000)])) == 2
    assert replay.already_produced(rec([doc("n1", T0), doc("n1", T0 + 2000)])) == 0  # not all
    assert replay.already_produced(rec(doc("n1", T0 + 2000))) == 0  # never produced
    assert replay.already_produced(rec(doc("n1", T0), offset=10)) == 0  # after the replay
    assert replay.already_produced(rec(doc("n1", T0), partition=1)) == 0  # not replayed
    assert replay.already_produced(rec(b"{not json")) == 0  # ingestion says what it is
    tic = {"v": 1, "device_id": "n2", "ts": iso(T0), "frame": "\u0002\n...\u0003"}
    assert replay.already_produced(RawRecord(orjson.dumps(tic), topic, 0, 4, T0)) == 1
    replay.passed({TopicPartition(topic, 0): 9})
    assert replay.ends and replay.produced
    replay.passed({TopicPartition(topic, 0): 10})
    assert not replay.ends and not replay.produced

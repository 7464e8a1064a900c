"""The ingest agent's batch step: routing per partition, dead letters, checkpoints."""

from __future__ import annotations

import msgspec
import orjson
import pytest

import agents.ingest as ingest
from app.checkpoint import StateCheckpoint
from app.domain.ingest import MeterState
from app.domain.reading import ReadingBatch
from app.domain.registry import MeterInfo
from app.partitioning import HouseholdPartitioner
from app.topics import deadletter_topic, readings_topic

from .conftest import Capture, FakeEvent, FakeMessage, FakeStream, FakeTable

T0 = 1_795_000_000_000


def doc(meter: str, hid: str, i: int, power: float = 500.0) -> bytes:
    from datetime import UTC, datetime

    ts = datetime.fromtimestamp((T0 + i * 1000) / 1000, tz=UTC).isoformat()
    return orjson.dumps({"v": 1, "device_id": "n", "meter_id": meter, "household_id": hid,
                         "ts": ts, "power_w": power, "energy_wh": 1000.0 + i})


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, capture: Capture):  # type: ignore[no-untyped-def]
    registry = {f"m{i}": MeterInfo(f"h{i}", 9000.0, False, "Europe/Paris") for i in range(8)}
    monkeypatch.setattr(ingest, "registry", _Registry(registry))
    table = FakeTable()
    cp = StateCheckpoint(table, "meter-state", topic="raw", partition_of=HouseholdPartitioner(4),
                         encode=msgspec.msgpack.encode,
                         decode=msgspec.msgpack.Decoder(MeterState).decode, interval_s=0.0)
    monkeypatch.setattr(ingest, "meter_states", cp)
    capture.patch_topic(monkeypatch, readings_topic)
    capture.patch_topic(monkeypatch, deadletter_topic)
    return table, cp


class _Registry(dict):  # type: ignore[type-arg]
    stale = False

    async def refresh(self, *, min_age_s: float = 0.0) -> bool:
        return False


PARTITION_OF = HouseholdPartitioner(4)


def events(records: list[tuple[str, bytes]]):  # type: ignore[no-untyped-def]
    return [FakeEvent(FakeMessage(v, "meter.raw.json", PARTITION_OF(k), off, T0 / 1000 + 5,
                                  k.encode())) for off, (k, v) in enumerate(records)]


async def test_readings_are_batched_per_partition_of_their_household(wired, capture) -> None:  # type: ignore[no-untyped-def]
    table, cp = wired
    recs = [(f"m{m}", doc(f"m{m}", f"h{m}", i)) for i in range(5) for m in range(8)]
    batch = events(recs)
    await ingest.process(batch)

    part = HouseholdPartitioner(4)
    sent = capture.sent[readings_topic.get_topic_name()]
    assert sum(len(msgspec.json.decode(s.value, type=ReadingBatch).readings) for s in sent) == 40
    assert len(sent) == len({part(f"h{m}") for m in range(8)})  # one message per partition
    for s in sent:
        readings = msgspec.json.decode(s.value, type=ReadingBatch).readings
        assert {part(r.household_id) for r in readings} == {s.partition}
        assert s.timestamp == pytest.approx(T0 / 1000 + 5)  # the raw records' broker time
    assert capture.sent[deadletter_topic.get_topic_name()] == []

    # checkpoint: one table write per meter, filed under its raw partition, then acks
    stream = FakeStream()
    cp.attach(stream)
    cp.hold(batch)
    assert await cp.commit(force=True)
    assert table.writes == 8
    assert table.partitions[b"m3"] == part("m3")
    assert stream.acked == batch


async def test_bad_records_become_dead_letters_and_duplicates_are_dropped(wired, capture) -> None:  # type: ignore[no-untyped-def]
    recs = [("m1", doc("m1", "h1", 0)), ("m1", doc("m1", "h1", 0)),  # exact duplicate
            ("m1", b"{not json"), ("m2", doc("m2", "h2", 1, power=-5.0))]
    await ingest.process(events(recs))
    sent = capture.sent[readings_topic.get_topic_name()]
    assert sum(len(msgspec.json.decode(s.value, type=ReadingBatch).readings) for s in sent) == 1
    dead = [orjson.loads(s.value) for s in capture.sent[deadletter_topic.get_topic_name()]]
    assert sorted(d["reason"] for d in dead) == ["not_decodable", "out_of_range"]
    assert {d["offset"] for d in dead} == {2, 3}

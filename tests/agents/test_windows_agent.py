"""The windows agent's batch step: windows emitted once with exact energy; late data routed."""

from __future__ import annotations

import msgspec
import orjson
import pytest

import agents.windows as windows
from app import runtime
from app.checkpoint import StateCheckpoint
from app.domain.reading import Reading, encode_batch
from app.domain.windows import ClosedWindow, HouseholdWindows
from app.partitioning import HouseholdPartitioner
from app.topics import late_topic, window_topics

from .conftest import Capture, FakeEvent, FakeMessage, FakeTable

T0 = 1_795_000_020_000 - 1_795_000_020_000 % 3_600_000  # on the hour


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, capture: Capture):  # type: ignore[no-untyped-def]
    table = FakeTable()
    cp = StateCheckpoint(table, "window-state", topic="readings",
                         partition_of=HouseholdPartitioner(4), encode=msgspec.msgpack.encode,
                         decode=msgspec.msgpack.Decoder(HouseholdWindows).decode, interval_s=0)
    monkeypatch.setattr(windows, "window_states", cp)
    monkeypatch.setattr(windows, "timezone_of", lambda meter_id: "Europe/Paris")
    for t in (*window_topics.values(), late_topic):
        capture.patch_topic(monkeypatch, t)
    capture.patch_producer(monkeypatch, windows.app.producer)
    monkeypatch.setattr(windows, "_clock", {})
    monkeypatch.setattr(windows, "_due", {})
    monkeypatch.setattr(runtime, "_decoded", {})  # messages are decoded once per offset
    return cp


def batch_event(readings: list[Reading], offset: int) -> FakeEvent:
    part = HouseholdPartitioner(4)(readings[0].household_id)
    value = encode_batch(readings)
    return FakeEvent(FakeMessage(value, "meter.readings", part, offset,
                                 readings[-1].ts_ms / 1000 + 1))


async def test_minute_windows_close_once_with_counter_energy(wired, capture) -> None:  # type: ignore[no-untyped-def]
    # 3 minutes + 40 s of a 600 W load at 1 Hz, counter exact, in batches of 25 s
    rs = [Reading("h1", "m1", T0 + i * 1000, 600.0, energy_wh=100.0 + 600.0 * i / 3600)
          for i in range(220)]
    # a spike ingestion dead-lettered travels flagged for the anomaly stage: windows skip it
    rs.insert(70, Reading("h1", "m1", T0 + 69_500, 90_000.0, implausible=True))
    for k in range(0, 220, 25):
        await windows.process([batch_event(rs[k:k + 25], k)])
    out = [msgspec.json.decode(s.value, type=ClosedWindow)
           for s in capture.sent[window_topics["1m"].get_topic_name()]]
    # watermark 219 s - 30 s grace = 189 s: windows [0,60), [60,120), [120,180) closed
    assert [w.start_ms - T0 for w in out] == [0, 60_000, 120_000]
    for w in out:
        assert w.energy_wh == pytest.approx(10.0, abs=1e-9)  # 600 W x 1 min
        assert w.readings == 60 and not w.gap
    assert all(s.key == b"h1" for s in capture.sent[window_topics["1m"].get_topic_name()])


async def test_late_readings_go_to_the_late_topic(wired, capture) -> None:  # type: ignore[no-untyped-def]
    rs = [Reading("h2", "m2", T0 + i * 1000, 100.0) for i in range(200)]
    await windows.process([batch_event(rs, 0)])
    late = Reading("h2", "m2", T0 + 5_000 + 500, 100.0)  # 3 minutes late: beyond grace
    await windows.process([batch_event([late], 1)])
    sent = capture.sent[late_topic.get_topic_name()]
    assert len(sent) == 1
    assert orjson.loads(sent[0].value)["reason"] == "late"


async def test_the_partition_clock_closes_windows_of_the_other_households(wired, capture) -> None:  # type: ignore[no-untyped-def]
    # two households of one partition at 1 Hz, "a" at a 200 ms phase, "b" at 900 ms
    part = HouseholdPartitioner(4)
    b = next(f"b{i}" for i in range(100) if part(f"b{i}") == part("a"))

    def readings(second: int) -> list[Reading]:
        return [Reading("a", "ma", T0 + second * 1000 + 200, 600.0, 10.0 + second / 6),
                Reading(b, "mb", T0 + second * 1000 + 900, 60.0, 5.0 + second / 60)]

    def minute_windows() -> list[ClosedWindow]:
        return [msgspec.json.decode(s.value, type=ClosedWindow)
                for s in capture.sent[window_topics["1m"].get_topic_name()]]

    for second in range(90):  # up to 89.9 s: nobody's watermark reaches 90 s yet
        await windows.process([batch_event(readings(second), second)])
    assert minute_windows() == []
    # "a" at 90.2 s moves the partition clock past 60 s + 30 s grace: both windows close,
    # "b"'s without waiting for its own reading at 90.9 s
    await windows.process([batch_event(readings(90)[:1], 90)])
    closed = {w.household_id: w for w in minute_windows()}
    assert sorted(closed) == sorted(["a", b])
    assert closed[b].energy_wh == pytest.approx(0.985)  # 60 W from 0.9 s to 60 s (counter)
    assert closed[b].readings == 60
    # its own next reading closes nothing more: the window is emitted once
    await windows.process([batch_event(readings(90)[1:], 91)])
    assert len(minute_windows()) == 2


async def test_a_replay_skips_windows_already_in_the_topic(wired, capture, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # what the read-back of an assignment found (app.emitted): the first minute of "h3"
    monkeypatch.setattr(windows, "_emitted", {("h3", "1m", T0)})
    rs = [Reading("h3", "m3", T0 + i * 1000, 600.0, energy_wh=100.0 + i / 6) for i in range(160)]
    await windows.process([batch_event(rs, 0)])
    out = [msgspec.json.decode(s.value, type=ClosedWindow)
           for s in capture.sent[window_topics["1m"].get_topic_name()]]
    # [0, 60) closed again by the replay but not sent; [60, 120) is new and sent
    assert [w.start_ms - T0 for w in out] == [60_000]
    assert windows._emitted == set()  # each key skips once


async def test_a_replay_behind_the_checkpoint_is_skipped_not_applied_twice(  # type: ignore[no-untyped-def]
        wired, capture, monkeypatch) -> None:
    from .conftest import FakeStream

    table = wired.table
    wired.attach(FakeStream())
    rs = [Reading("h4", "m4", T0 + i * 1000, 600.0, energy_wh=100.0 + i / 6) for i in range(200)]
    events = [batch_event(rs[k:k + 20], k // 20) for k in range(0, 200, 20)]
    for e in events[:6]:  # 120 s applied and checkpointed (interval 0: every batch)
        await windows.handle([e])
    part = events[0].message.partition
    last_ms = int(events[5].message.timestamp * 1000)
    assert table[b"\x00offset/" + str(part).encode()] == f"5 {last_ms}".encode()
    minute = window_topics["1m"].get_topic_name()
    before = len(capture.sent[minute])
    assert before == 1  # [0, 60) closed at the clock's 90 s

    # a crash: the committed offset lagged (another agent had not acked), so offsets 3..5 come
    # again; a new owner starts from the table alone
    cp = StateCheckpoint(table, "window-state", topic="readings",
                         partition_of=HouseholdPartitioner(4), encode=msgspec.msgpack.encode,
                         decode=msgspec.msgpack.Decoder(HouseholdWindows).decode, interval_s=0)
    cp.attach(FakeStream())
    monkeypatch.setattr(windows, "window_states", cp)
    monkeypatch.setattr(windows, "_clock", {})
    monkeypatch.setattr(windows, "_due", {})
    replayed, new = cp.split(events[3:])
    assert replayed == events[3:6] and new == events[6:]
    for e in events[3:]:
        await windows.handle([e])
    # nothing went to the late topic as a duplicate, and the minutes are those of one pass
    assert capture.sent[late_topic.get_topic_name()] == []
    out = [msgspec.json.decode(s.value, type=ClosedWindow) for s in capture.sent[minute]]
    assert [w.start_ms - T0 for w in out] == [0, 60_000]  # clock 199 s - 30 s grace
    assert all(w.readings == 60 and w.energy_wh == pytest.approx(10.0) for w in out)
    # the partition clock moved through the skipped events: 119 s -> due boundary 60 s
    assert windows._due[part] >= T0 + 60_000


async def test_a_recreated_topic_under_a_kept_table_is_not_skipped(wired) -> None:  # type: ignore[no-untyped-def]
    from .conftest import FakeStream

    wired.attach(FakeStream())
    rs = [Reading("h5", "m5", T0 + i * 1000, 600.0) for i in range(40)]
    await windows.handle([batch_event(rs[:20], 7)])
    # offsets restart at 0 in a re-created topic; its records are newer than the mark
    newer = batch_event(rs[20:], 0)
    newer.message.timestamp += 3600
    old = batch_event(rs[:20], 7)
    assert wired.split([old, newer]) == ([old], [newer])

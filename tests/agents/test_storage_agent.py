"""The storage agents' batch step: line protocol out, bad records set aside (never a crash)."""

from __future__ import annotations

import msgspec

from agents import storage
from app.domain.reading import Reading, encode_batch
from app.domain.windows import ClosedWindow
from app.settings import get_settings
from app.topics import alerts_topic, appliance_energy_topic, appliance_events_topic

from .conftest import FakeEvent, FakeMessage

S = get_settings()
T0 = 1_795_000_000_000


def event(value: bytes, topic: str, offset: int = 0) -> FakeEvent:
    return FakeEvent(FakeMessage(value, topic, 0, offset, T0 / 1000))


def test_readings_become_points_with_channels_after_readings() -> None:
    rs = [Reading("h1", "m1", T0, 500.0, energy_wh=10.0, channels_w={"fridge": 80.0}),
          Reading("h2", "m2", T0, 200.0),
          Reading("h2", "m2", T0 + 1, 90_000.0, implausible=True)]  # for spike detection only
    lines, invalid = storage.reading_lines(
        [event(encode_batch(rs), S.topic_readings, 9_999)])
    assert invalid == []
    assert [ln.split(",", 1)[0] for ln in lines] == ["reading", "reading", "channel_power"]
    assert lines[0] == (f"reading,household=h1,meter=m1,source=json "
                        f"power_w=500.0,energy_wh=10.0 {T0}")


def test_malformed_windows_and_events_are_set_aside_not_raised() -> None:
    good = ClosedWindow("h1", "1m", T0, T0 + 60_000, 10.0, 600.0, 590.0, 610.0, 60, 1.0,
                        False, False, False)
    batch = storage.window_batch([event(msgspec.json.encode(good), S.window_topic("1m")),
                                  event(b"{broken", S.window_topic("1m"), 1)])
    assert sum(len(v) for v in batch.by_rp.values()) == 1 and list(batch.by_rp) == ["1m"]
    assert len(batch.invalid) == 1 and "not a closed window" in batch.invalid[0][1]

    batch = storage.events_batch([
        event(b"not json", alerts_topic.get_topic_name()),
        event(b"[1, 2]", alerts_topic.get_topic_name(), 1),             # wrong shape
        event(b'{"household_id": "h1"}', appliance_energy_topic.get_topic_name(), 2),
        event(msgspec.json.encode({"household_id": "h1", "ts_ms": T0, "appliance": "kettle",
                                   "state": "on", "delta_w": 2000.0, "confidence": 0.9}),
              appliance_events_topic.get_topic_name(), 3),
    ])
    assert [k for k, v in batch.by_rp.items() if v] == ["events"]
    assert len(batch.invalid) == 3

"""Closed windows are exact and the same after a SIGKILL mid-load and restart (with or without
the local RocksDB directory), and with two workers sharing the partitions."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from app.domain.registry import MeterInfo
from app.domain.windows import ClosedWindow

from .conftest import World, consume_all, produce
from .helpers import encode, register, steady_series

pytestmark = pytest.mark.integration

HOUSEHOLDS = 12
MINUTES = 8
T0 = (int(time.time()) // 3600 - 2) * 3600 * 1000  # two hours ago, on the hour
METERS = {f"rec-m{i}": MeterInfo(f"rec-h{i}", 9000.0, False, "Europe/Paris")
          for i in range(HOUSEHOLDS)}


def waves() -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The same load for every run, cut in two waves (first half, second half of the time)."""
    first: list[tuple[bytes, bytes]] = []
    second: list[tuple[bytes, bytes]] = []
    half = MINUTES * 60 // 2
    for i, (m, info) in enumerate(METERS.items()):
        docs = steady_series(m, info.household_id, T0, MINUTES * 60, 200.0 + 60 * i,
                             10_000.0 + 1000 * i)
        first += [(m.encode(), encode(d)) for d in docs[:half]]
        second += [(m.encode(), encode(d)) for d in docs[half:]]
    return first, second


async def closed_windows(world: World, expect: int) -> list[ClosedWindow]:
    decoder = msgspec.json.Decoder(ClosedWindow)
    values = await consume_all(world.settings, world.settings.window_topic("1m"),
                               expect=expect, timeout_s=90)
    await asyncio.sleep(1.0)
    values = await consume_all(world.settings, world.settings.window_topic("1m"), idle_s=2.0)
    return [decoder.decode(v) for v in values]


def expected_1m_windows() -> int:
    # the watermark ends at the last reading; windows closed = those ending <= last - grace(30s)
    return HOUSEHOLDS * (MINUTES - 1)


async def wait_metric(world: World, proc, name: str, at_least: float,  # type: ignore[no-untyped-def]
                      limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if world.metrics(proc).get(name, 0.0) >= at_least:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} < {at_least}: {world.log_tail(proc)}")


def by_key(windows: list[ClosedWindow]) -> dict[tuple[str, int], ClosedWindow]:
    out: dict[tuple[str, int], ClosedWindow] = {}
    for w in windows:
        key = (w.household_id, w.start_ms)
        # emitted once: a replay after a crash or a rebalance reads back what is already in
        # the window topics and does not send it again (app.emitted)
        assert key not in out, ("emitted twice", out[key], w)
        out[key] = w
    return out


async def reference(world: World) -> dict[tuple[str, int], ClosedWindow]:
    first, second = waves()
    await produce(world.settings, world.settings.topic_raw_json, first + second)
    worker = world.start_worker()
    world.wait_ready(worker)
    return by_key(await closed_windows(world, expected_1m_windows()))


@pytest.mark.parametrize("keep_local_state", [True, False], ids=["with-rocksdb", "without"])
async def test_sigkill_mid_load_gives_the_same_windows(world: World, tmp_path_factory,  # type: ignore[no-untyped-def]
                                                       keep_local_state: bool) -> None:
    await register(world.settings, METERS)
    first, second = waves()
    s = world.settings
    await produce(s, s.topic_raw_json, first)
    worker = world.start_worker(index=0)
    world.wait_ready(worker)
    await wait_metric(world, worker, "wattflow_readings_windowed_total", len(first))
    world.kill(worker)  # SIGKILL: whatever was not checkpointed is lost from memory
    await produce(s, s.topic_raw_json, second)
    restarted = world.start_worker(index=0 if keep_local_state else 1)
    world.wait_ready(restarted)
    got = by_key(await closed_windows(world, expected_1m_windows()))

    assert len(got) == expected_1m_windows()
    for (hid, start), w in got.items():
        i = int(hid.removeprefix("rec-h"))
        # constant load: energy of a full minute is exact, from the counter
        assert w.energy_wh == pytest.approx((200.0 + 60 * i) / 60.0, abs=1e-6), w
        assert w.readings == 60 and w.coverage == pytest.approx(1.0)
        assert not w.counter_reset and start % 60_000 == 0
    # the readings produced after the ingest stage's last checkpoint were read back before
    # its replay (agents/ingest.absorb_produced): none is produced twice, so no stage sees a
    # duplicate and nothing goes to the late topic
    assert await consume_all(s, s.topic_late, idle_s=1.0) == []
    m = world.metrics(restarted)
    assert m.get("wattflow_windows_duplicates_dropped_total", 0.0) == 0.0
    # the replayed records already produced are exact duplicates, and nothing is dead-lettered
    assert m["wattflow_readings_duplicate_total"] == m.get(
        "wattflow_ingest_replay_skipped_records_total", 0.0)
    assert m.get("wattflow_deadletters_total", 0.0) == 0.0
    assert (m["wattflow_readings_valid_total"] + m["wattflow_readings_duplicate_total"]
            == m["wattflow_raw_records_total"])


async def test_two_workers_give_the_same_windows_as_one(world: World) -> None:
    await register(world.settings, METERS)
    first, second = waves()
    s = world.settings
    await produce(s, s.topic_raw_json, first + second)
    a = world.start_worker(index=0)
    b = world.start_worker(index=1)
    world.wait_ready(a)
    world.wait_ready(b)
    got = by_key(await closed_windows(world, expected_1m_windows()))
    assert len(got) == expected_1m_windows()
    for (hid, _), w in got.items():
        i = int(hid.removeprefix("rec-h"))
        assert w.energy_wh == pytest.approx((200.0 + 60 * i) / 60.0, abs=1e-6), w
        assert w.readings == 60

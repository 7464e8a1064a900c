"""InfluxDB stopped for over a minute while readings keep flowing through a real worker: once
it is back, every reading and every closed window is in InfluxDB exactly once, and the worker
never crashed. Then the worker is SIGKILLed mid-load and restarted: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import sys
import time

import msgspec
import pytest

from app.domain.registry import MeterInfo
from app.domain.windows import ClosedWindow

from .conftest import REPO, World, consume_all, produce
from .helpers import encode, register, steady_series
from .test_pipeline import influx_count, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 62.0


async def influxdb(action: str) -> None:
    """Stop/start the stack's InfluxDB from a child process (the server must not become a
    child of pytest)."""
    code = ("from app.stack import servers; "
            f"next(s for s in servers() if s.name == 'influxdb').{action}()")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=REPO)
    assert await proc.wait() == 0, f"influxdb {action} failed"


async def test_influxdb_outage_and_worker_kill_lose_nothing_and_write_once(world: World) -> None:
    s = world.settings
    households, minutes = 6, 12
    meters = {f"{world.name}-m{i}": MeterInfo(f"{world.name}-h{i}", 9000.0, False,
                                              "Europe/Paris") for i in range(households)}
    await register(s, meters)
    t0 = (int(time.time()) // 3600 - 2) * 3600 * 1000
    series = {m: [(m.encode(), encode(d)) for d in steady_series(
        m, info.household_id, t0, minutes * 60, 300.0 + 25 * i, 2000.0)]
        for i, (m, info) in enumerate(meters.items())}
    slices = 24  # the load arrives in 24 slices spread over the test
    per = minutes * 60 // slices

    def slice_(k: int) -> list[tuple[bytes, bytes]]:
        return [rec for recs in series.values() for rec in recs[k * per:(k + 1) * per]]

    worker = world.start_worker(index=0)
    world.wait_ready(worker)
    k = 0
    for _ in range(4):  # flowing, InfluxDB up
        await produce(s, s.topic_raw_json, slice_(k))
        k += 1
        await asyncio.sleep(1.0)
    await influxdb("down")
    try:
        outage_end = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_end:  # readings keep flowing while InfluxDB is down
            if k < 14:
                await produce(s, s.topic_raw_json, slice_(k))
                k += 1
            await asyncio.sleep(OUTAGE_S / 10)
            assert worker.poll() is None, world.log_tail(worker)
        paused = world.metrics(worker).get("wattflow_influx_retries_total", 0.0)
        assert paused > 0, "the sink never retried: was InfluxDB really down?"
    finally:
        await influxdb("up")
    await produce(s, s.topic_raw_json, slice_(k))
    k += 1
    # SIGKILL mid-load, then the rest of the load, then a restart without local state
    world.kill(worker)
    while k < slices:
        await produce(s, s.topic_raw_json, slice_(k))
        k += 1
    restarted = world.start_worker(index=1)
    world.wait_ready(restarted)

    total = households * minutes * 60
    await wait_for(lambda: (c := influx_count(world, "reading")) == total or c, limit_s=120)
    windows = [msgspec.json.decode(v, type=ClosedWindow) for v in await consume_all(
        s, s.window_topic("1m"), idle_s=5.0)]
    distinct = {(w.household_id, w.start_ms) for w in windows}
    assert len(distinct) == households * (minutes - 1)
    await wait_for(lambda: (c := influx_count(world, "power_1m", "1m", "energy_wh"))
                   == len(distinct) or c, limit_s=60)
    assert restarted.poll() is None, world.log_tail(restarted)

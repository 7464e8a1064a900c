"""Readings in on the real broker, through a real worker process, out in InfluxDB and on the
readings and dead-letter topics, with every record accounted for."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from app import devrun
from app.domain.reading import decode_batch
from app.domain.registry import MeterInfo
from app.services.influx_query import InfluxQuery  # noqa: F401 - the query layer must import

from .conftest import World, consume_all, produce
from .helpers import encode, reading, register, steady_series

pytestmark = pytest.mark.integration


def influx_count(world: World, measurement: str, rp: str = "raw", field: str = "power_w") -> int:
    return devrun.influx_count(measurement, rp, field, world.settings)


async def wait_for(pred, limit_s: float = 90.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last is True:
            return
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met in {limit_s}s (last: {last})")


async def test_every_record_is_accounted_for_and_readings_reach_influxdb(world: World) -> None:
    s = world.settings
    n_households, seconds = 8, 45
    meters = {f"{world.name}-m{i}": MeterInfo(f"{world.name}-h{i}", 9000.0, False,
                                              "Europe/Paris") for i in range(n_households)}
    await register(s, meters)
    t0 = (int(time.time()) - 300) * 1000
    good: list[tuple[bytes, bytes]] = []
    for i, (m, info) in enumerate(meters.items()):
        for doc in steady_series(m, info.household_id, t0, seconds, 100.0 + 10 * i, 5000.0):
            good.append((m.encode(), encode(doc)))
    # one store-and-forward batch (an array of 3 readings) for the first meter, later in time
    m0, info0 = next(iter(meters.items()))
    batch = [reading(m0, info0.household_id, t0 + (seconds + k) * 1000, 100.0,
                     5000.0 + 100.0 * (seconds + k) / 3600) for k in range(3)]
    good.append((m0.encode(), encode(batch)))
    dupes = good[:5]  # a node re-sending after a lost ack
    m1, info1 = list(meters.items())[1]
    bad = [
        (m1.encode(), b"\x00\xffnot json"),                                       # not_decodable
        (m1.encode(), encode({"v": 1, "meter_id": m1, "ts": "2026-01-01T00:00:00Z"})),  # schema
        (b"nobody", encode(reading("nobody", "hh-nobody", t0, 1.0, None))),       # unknown_id
        (m1.encode(), encode(reading(m1, info1.household_id, t0 + 500, 50_000.0, None))),  # range
        (m1.encode(), encode(reading(m1, info1.household_id, t0 + 10**9, 1.0, None))),     # future
        (m1.encode(), b"[" + b" " * 300_000 + b"]"),                              # oversized
    ]
    await produce(s, s.topic_raw_json, good)
    await produce(s, s.topic_raw_json, dupes + bad)
    expected_valid = n_households * seconds + 3

    worker = world.start_worker()
    world.wait_ready(worker)

    values = await consume_all(s, s.topic_readings, idle_s=5.0, timeout_s=90)
    everything = [r for v in values for r in decode_batch(v)]
    readings = [r for r in everything if not r.implausible]
    dead = [orjson.loads(v) for v in await consume_all(s, s.topic_deadletter, expect=len(bad))]

    # the 50 kW reading on a 9 kVA connection is dead-lettered and also forwarded, flagged,
    # for spike detection (not a valid reading: windows, NILM and storage skip it)
    assert [(r.power_w, r.ts_ms) for r in everything if r.implausible] == [(50_000.0, t0 + 500)]
    assert len(readings) == expected_valid
    assert len({(r.meter_id, r.ts_ms) for r in readings}) == expected_valid
    assert sorted(d["reason"] for d in dead) == sorted(
        ["not_decodable", "schema_violation", "unknown_id", "out_of_range", "ts_future",
         "oversized"])
    for d in dead:
        assert d["topic"] == s.topic_raw_json and d["offset"] >= 0 and d["detail"]
    await wait_for(lambda: influx_count(world, "reading") == expected_valid or
                   influx_count(world, "reading"))
    m = world.metrics(worker)
    assert m["wattflow_readings_duplicate_total"] == len(dupes)
    assert m["wattflow_readings_valid_total"] == expected_valid
    assert m["wattflow_readings_invalid_total"] == len(bad)
    # valid + duplicate + dead-lettered = everything produced (the array counts 3)
    assert (m["wattflow_readings_valid_total"] + m["wattflow_readings_duplicate_total"]
            + m["wattflow_readings_invalid_total"]) == len(good) + 2 + len(dupes) + len(bad)
    assert worker.poll() is None, world.log_tail(worker)

"""From readings on the real broker to alert records (opened, then resolved with the same id)
and to NILM appliance events and per-appliance energy, through a real worker."""

from __future__ import annotations

import time

import orjson
import pytest

from app.domain.registry import MeterInfo

from .conftest import World, consume_all, produce
from .helpers import encode, reading, register

pytestmark = pytest.mark.integration


async def test_voltage_and_spike_alerts_open_and_resolve_and_appliances_are_seen(
    world: World,
) -> None:
    s = world.settings
    meter, hid = f"{world.name}-m", f"{world.name}-h"
    await register(s, {meter: MeterInfo(hid, 9000.0, False, "Europe/Paris")})
    minutes = 70
    t0 = (int(time.time()) // 3600 - 3) * 3600 * 1000
    records, stamps = [], []
    energy = 1_000_000.0
    spike_at = 40 * 60 + 7
    for i in range(minutes * 60):
        ts = t0 + i * 1000
        minute = i // 60
        volts = 262.0 if 10 <= minute < 35 else 231.0  # EN 50160: 230 V +10 % = 253 V
        # a 2 kW kettle-like load for 3 minutes, twice
        power = 150.0 + (2000.0 if (20 <= minute < 23 or 50 <= minute < 53) else 0.0)
        energy += power / 3600.0
        doc = reading(meter, hid, ts, power, round(energy, 4))
        doc["voltage_v"] = volts
        if i == spike_at:  # one absurd power value (the counter is fine): dead-lettered
            doc["power_w"] = 50_000.0
        records.append((meter.encode(), encode(doc)))
        stamps.append(ts + 300)  # reached the broker 0.3 s after the reading was taken
    await produce(s, s.topic_raw_json, records, stamps)
    worker = world.start_worker()
    world.wait_ready(worker)

    alerts = [orjson.loads(v) for v in await consume_all(s, s.topic_alerts, expect=4)]
    voltage = [a for a in alerts if a["type"] == "voltage"]
    assert [a["status"] for a in voltage] == ["open", "resolved"], alerts
    opened, resolved = voltage
    assert opened["alert_id"] == resolved["alert_id"]
    assert opened["household_id"] == hid and opened["meter_id"] == meter
    # the detector smooths voltage (EWMA, 5 min) so the excursion counts from when the
    # smoothed value crossed 253 V, a few minutes after it began
    assert t0 + 10 * 60_000 <= opened["opened_at"] <= t0 + 20 * 60_000
    assert opened["evidence"]["observed"] > 253.0
    assert t0 + 35 * 60_000 <= resolved["resolved_at"] <= t0 + 55 * 60_000
    assert not [a for a in alerts if a["type"] == "clock_skew"], alerts
    # the spike beyond the 9 kW connection is dead-lettered, and still opens a spike alert
    # (critical) that resolves once readings stay plausible; no other stage saw it
    spike = [a for a in alerts if a["type"] == "spike"]
    assert [a["status"] for a in spike] == ["open", "resolved"], alerts
    assert spike[0]["opened_at"] == t0 + spike_at * 1000
    assert spike[0]["severity"] == "critical" and spike[0]["evidence"]["observed"] == 50_000.0
    dead = [orjson.loads(v) for v in await consume_all(s, s.topic_deadletter, expect=1)]
    assert [d["reason"] for d in dead] == ["out_of_range"]

    events = [orjson.loads(v) for v in await consume_all(s, s.topic_appliance_events,
                                                         expect=4, timeout_s=60)]
    ons = [e for e in events if e["state"] == "on" and e["delta_w"] > 1500]
    offs = [e for e in events if e["state"] == "off" and e["delta_w"] < -1500]
    assert len(ons) == 2 and len(offs) == 2, events
    assert abs(ons[0]["ts_ms"] - (t0 + 20 * 60_000)) <= 5_000
    energy_windows = [orjson.loads(v) for v in await consume_all(
        s, s.topic_appliance_energy, expect=minutes // 15 - 1, timeout_s=60)]
    assert energy_windows
    for w in energy_windows:
        parts = (sum(w["measured_wh"].values()) + sum(w["estimated_wh"].values())
                 + w["residual_wh"])
        assert parts == pytest.approx(w["total_wh"], abs=1e-6)
    assert worker.poll() is None

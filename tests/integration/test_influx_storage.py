"""InfluxSink + InfluxQuery against the real local InfluxDB 1.8 (each test on its own database)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from app.domain import lineproto as lp
from app.domain.anomaly.alerts import AlertRecord, Evidence
from app.domain.nilm.model import ApplianceEvent, EnergyBreakdown
from app.domain.reading import Reading
from app.domain.windows import ClosedWindow
from app.services.influx import InfluxSink, InfluxSinkStopped
from app.services.influx_query import InfluxQuery
from app.services.influx_schema import drop_database, provision
from app.settings import Settings, get_settings

pytestmark = pytest.mark.integration

M, H, D = 60_000, 3_600_000, 86_400_000
HOUSEHOLD = "hh 42,odd=id"  # needs escaping in line protocol; a bound parameter when read
OTHER = "hh-43"


@pytest.fixture
def settings() -> Iterator[Settings]:
    s = get_settings().model_copy(update={"influx_db": f"wattflow_test_{secrets.token_hex(4)}"})
    provision(s)
    yield s
    drop_database(s)


@pytest.fixture
async def query(settings: Settings) -> AsyncIterator[InfluxQuery]:
    async with InfluxQuery(settings) as q:
        yield q


RejectLog = list[tuple[bytes, str]]


@pytest.fixture
def make_sink(settings: Settings) -> Callable[..., InfluxSink]:
    def factory(rejected: RejectLog | None = None, **kw: object) -> InfluxSink:
        def on_rejected(line: bytes, message: str) -> None:
            assert rejected is not None, f"unexpected rejection {line!r}: {message}"
            rejected.append((line, message))
        return InfluxSink(settings, on_rejected=on_rejected, **kw)  # type: ignore[arg-type]
    return factory


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def count(q: InfluxQuery, rp: str, measurement: str, field: str) -> int:
    series = await q.query(
        f'SELECT count("{field}") FROM "{q.database}"."{rp}"."{measurement}"', {})
    return int(series[0].values[0][1]) if series else 0


def day_of_data(end_ms: int) -> lp.LineBatch:
    """One household's last hour of 1 s readings, windows of every size, NILM, alerts."""
    batch = lp.LineBatch()
    t0 = end_ms - end_ms % H - H  # a whole hour, ending before now
    for i in range(3600):
        batch.add_reading(Reading(HOUSEHOLD, "m-42", t0 + i * 1000, 400.0 + i % 60,
                                  energy_wh=1e6 + i * 0.12, channels_w={"fridge": 80.0}))
    batch.add_reading(Reading(OTHER, "m-43", t0, 9999.0))
    for size, step, n in (("1m", M, 60), ("15m", 15 * M, 4), ("1h", H, 1)):
        for k in range(n):
            start = t0 + k * step
            batch.add_window(ClosedWindow(
                household_id=HOUSEHOLD, size=size, start_ms=start, end_ms=start + step,
                energy_wh=step / H * 430.0, mean_power_w=430.0, min_power_w=400.0,
                max_power_w=459.0, readings=step // 1000, coverage=1.0, gap=False,
                counter_reset=False, estimated=k == 0))
    day0 = t0 - t0 % D
    batch.add_window({"household_id": HOUSEHOLD, "size": "1d", "start_ms": day0,
                      "end_ms": day0 + D, "energy_wh": 10_320.0, "mean_w": 430.0,
                      "min_w": 12.0, "max_w": 3000.0, "count": 86_400, "coverage": 0.98,
                      "flags": ["gap"]})
    batch.add_appliance_energy(HOUSEHOLD, "1h", EnergyBreakdown(
        start_ms=t0, end_ms=t0 + H, total_wh=430.0, measured_wh={"fridge": 80.0},
        estimated_wh={"kettle": 150.0}, residual_wh=200.0))
    for k in range(4):
        batch.add_appliance_energy(HOUSEHOLD, "15m", EnergyBreakdown(
            start_ms=t0 + k * 15 * M, end_ms=t0 + (k + 1) * 15 * M, total_wh=107.5,
            measured_wh={"fridge": 20.0}, estimated_wh={"kettle": 37.5}, residual_wh=50.0))
    batch.add_appliance_event(ApplianceEvent(household_id=HOUSEHOLD, ts_ms=t0 + 600_000,
                                             appliance="kettle", state="on", delta_w=2000.0,
                                             confidence=0.9))
    batch.add_appliance_event(ApplianceEvent(household_id=HOUSEHOLD, ts_ms=t0 + 780_000,
                                             appliance="kettle", state="off", delta_w=-2000.0,
                                             confidence=0.9, duration_ms=180_000))
    for status in ("open", "resolved"):
        batch.add_alert(AlertRecord(
            alert_id="a1", household_id=HOUSEHOLD, meter_id="m-42", type="spike",
            severity="warning", status=status, opened_at=t0 + 900_000,
            detected_at=t0 + 905_000, resolved_at=t0 + 960_000 if status == "resolved" else None,
            evidence=Evidence(observed=9000.0, baseline=450.0, threshold=6000.0,
                              duration_ms=5_000, unit="W")))
    batch.add_alert({"alert_id": "a2", "household_id": OTHER, "type": "offline",
                     "severity": "critical", "status": "open", "opened_at": t0,
                     "detected_at": t0, "evidence": {"observed": 0.0, "unit": "s"}})
    assert not batch.invalid
    return batch


async def test_provision_is_idempotent_and_alters(settings: Settings, query: InfluxQuery
                                                  ) -> None:
    assert provision(settings) == [f'CREATE DATABASE "{settings.influx_db}"']
    changed = settings.model_copy(update={"influx_retention_1m": "30d"})
    assert provision(changed)[1:] == [
        f'ALTER RETENTION POLICY "1m" ON "{settings.influx_db}" DURATION 30d SHARD DURATION 1d']
    rps = await query.query(f'SHOW RETENTION POLICIES ON "{settings.influx_db}"', {})
    by_name = {row["name"]: row for row in rps[0].rows()}
    assert set(by_name) >= {"raw", "1m", "15m", "1h", "1d", "events"}
    assert by_name["1m"]["duration"] == "720h0m0s"
    assert by_name["raw"]["duration"] == "168h0m0s" and by_name["raw"]["default"] is True
    assert by_name["1d"]["duration"] == "87600h0m0s"


async def test_round_trip_every_measurement(make_sink: Callable[..., InfluxSink],
                                            query: InfluxQuery) -> None:
    now = now_ms()
    batch = day_of_data(now)
    async with make_sink() as sink:
        report = await sink.write(batch.by_rp)
    assert report.written == report.points == len(batch) and report.rejected == 0
    t0 = now - now % H - H

    # raw readings for an hour, per-minute windows for a day, daily for a year
    raw = await query.power_series(HOUSEHOLD, t0, t0 + H, now_ms=now)
    assert raw.resolution == "raw" and len(raw.points) == 3600
    assert raw.points[0].ts_ms == t0 and raw.points[59].mean_w == 459.0
    day = await query.power_series(HOUSEHOLD, t0 + H - D, t0 + H, now_ms=now)
    assert day.resolution == "1m" and len(day.points) == 60
    assert day.points[0].energy_wh == pytest.approx(430.0 / 60)
    week = await query.power_series(HOUSEHOLD, t0 + H - 7 * D, t0 + H, now_ms=now)
    assert week.resolution == "15m" and len(week.points) == 4
    year = await query.power_series(HOUSEHOLD, now - 365 * D, now, now_ms=now)
    assert year.resolution == "1d" and [p.max_w for p in year.points] == [3000.0]

    # energy per period and totals
    hours = await query.energy(HOUSEHOLD, t0 - D, now, "1h")
    assert [(p.start_ms, p.end_ms, p.energy_wh) for p in hours] == [(t0, t0 + H, 430.0)]
    assert await query.energy_total(HOUSEHOLD, t0, t0 + H, now_ms=now) == pytest.approx(430.0)
    assert await query.energy_total(OTHER, t0, t0 + H, now_ms=now) == 0.0

    # appliance breakdown (15m series for a day; 1h series for a quarter)
    breakdown = await query.appliance_breakdown(HOUSEHOLD, t0 - D + H, t0 + H, now_ms=now)
    assert [(a.appliance, a.kind, a.energy_wh) for a in breakdown] == [
        ("unidentified", "residual", 200.0), ("kettle", "estimated", 150.0),
        ("fridge", "measured", 80.0)]
    quarter = await query.appliance_breakdown(HOUSEHOLD, now - 90 * D, now, now_ms=now)
    assert {a.appliance: a.energy_wh for a in quarter} == {
        "unidentified": 200.0, "kettle": 150.0, "fridge": 80.0}

    # appliance events, alerts (type filter bound too), channel power
    events = await query.appliance_events(HOUSEHOLD, t0, now, appliance="kettle")
    assert [(e["state"], e["duration_ms"]) for e in events] == [("on", None), ("off", 180_000)]
    alerts = await query.anomalies(HOUSEHOLD, t0, now)
    assert sorted(a["status"] for a in alerts) == ["open", "resolved"]
    assert {a["observed"] for a in alerts} == {9000.0}
    assert await query.anomalies(HOUSEHOLD, t0, now, types=["offline", "voltage"]) == []
    assert [a["alert_id"] for a in await query.anomalies(OTHER, t0, now, types=["offline"])] \
        == ["a2"]
    assert await count(query, "raw", "channel_power", "power_w") == 3600


async def test_household_is_a_bound_parameter(make_sink: Callable[..., InfluxSink],
                                              query: InfluxQuery) -> None:
    now = now_ms()
    async with make_sink() as sink:
        await sink.write(day_of_data(now).by_rp)
    t0 = now - now % H - H
    # the escaped id round-trips exactly; an injection attempt is just an unknown household
    assert len((await query.power_series(HOUSEHOLD, t0, t0 + H, now_ms=now)).points) == 3600
    for hostile in (f"x' OR household='{OTHER}", f'x" OR "household" = \'{OTHER}\'',
                    "x' OR 1=1 --", "hh-43' ; DROP DATABASE wattflow"):
        assert (await query.power_series(hostile, t0, t0 + H, now_ms=now)).points == []
        assert await query.anomalies(hostile, t0, now) == []
    assert len((await query.power_series(OTHER, t0, t0 + H, now_ms=now)).points) == 1


async def test_replay_is_idempotent(make_sink: Callable[..., InfluxSink],
                                    query: InfluxQuery) -> None:
    now = now_ms()
    batch = day_of_data(now)
    measurements = [("raw", "reading", "power_w"), ("raw", "channel_power", "power_w"),
                    ("1m", "power_1m", "energy_wh"), ("15m", "power_15m", "energy_wh"),
                    ("1h", "power_1h", "energy_wh"), ("1d", "power_1d", "energy_wh"),
                    ("15m", "appliance_energy", "energy_wh"),
                    ("1h", "appliance_energy", "energy_wh"),
                    ("events", "appliance_event", "delta_w"), ("events", "alert", "alert_id")]
    async with make_sink(batch_points=500) as sink:
        await sink.write(batch.by_rp)
        first = [await count(query, *m) for m in measurements]
        for _ in range(2):
            report = await sink.write(batch.by_rp)
            assert report.written == len(batch)
    assert first == [3601, 3600, 60, 4, 1, 1, 12, 3, 2, 3]
    assert [await count(query, *m) for m in measurements] == first


async def test_rejected_points_are_isolated_and_dead_lettered(
        make_sink: Callable[..., InfluxSink], query: InfluxQuery) -> None:
    t0 = now_ms() - H
    good = [f"reading,household=hh-1,meter=m-1,source=json power_w={i}.5 {t0 + i}"
            for i in range(10_000)]
    conflict = f"reading,household=hh-2,meter=m-2,source=json power_w=7i {t0}"
    garbage = "reading,household=hh-3 power_w= oops"
    lines: list[str | bytes] = [*good]
    lines.insert(1234, conflict)
    lines.insert(7777, garbage.encode())
    rejected: RejectLog = []
    async with make_sink(rejected, batch_points=4000) as sink:
        report = await sink.write({"raw": lines})
    assert report.written == 10_000 and report.rejected == 2
    assert await count(query, "raw", "reading", "power_w") == 10_000
    by_line = dict(rejected)
    assert set(by_line) == {conflict.encode(), garbage.encode()}
    assert "field type conflict" in by_line[conflict.encode()]
    assert 'is type integer, already exists as type float' in by_line[conflict.encode()]
    assert "unable to parse" in by_line[garbage.encode()]


async def test_async_dead_letter_callback_and_empty_write(settings: Settings) -> None:
    got: RejectLog = []

    async def dead_letter(line: bytes, message: str) -> None:
        await asyncio.sleep(0)
        got.append((line, message))

    async with InfluxSink(settings, on_rejected=dead_letter) as sink:
        assert (await sink.write({})).points == 0
        assert (await sink.write({"raw": []})).points == 0
        report = await sink.write({"raw": ["nonsense"]})
    assert report.rejected == 1 and got[0][0] == b"nonsense"


async def test_unreachable_influx_blocks_until_stopped(settings: Settings) -> None:
    nowhere = settings.model_copy(update={"influx_url": "http://127.0.0.1:9",
                                          "influx_retry_max_s": 0.2})
    sink = InfluxSink(nowhere)
    await sink.start()
    task = asyncio.create_task(sink.write({"raw": [f"m,t=x v=1 {now_ms()}"]}))
    await asyncio.sleep(1.0)
    assert not task.done() and sink.paused  # blocked, retrying: nothing acknowledged
    await sink.stop()
    with pytest.raises(InfluxSinkStopped):
        await task
    assert not sink.paused

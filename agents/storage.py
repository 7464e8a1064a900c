"""Storage agents: readings and closed windows -> InfluxDB.

Each batch of Kafka messages becomes line protocol (``app.domain.lineproto``) and is written
through ``InfluxSink``; the batch's events are acknowledged only after ``sink.write`` returned,
that is after InfluxDB acknowledged every point (or refused a point, which then went to the
dead-letter topic). While InfluxDB is down ``write`` waits and retries, so consumption pauses.
Points are idempotent (same series and timestamp), so replays after a crash overwrite.
"""

from __future__ import annotations

import logging
import time

import msgspec

from app import metrics
from app.domain import lineproto
from app.domain.windows import ClosedWindow
from app.main import app
from app.runtime import decode_batch, json_encoder
from app.services.influx import InfluxSink
from app.settings import get_settings
from app.topics import (
    alerts_topic,
    appliance_energy_topic,
    appliance_events_topic,
    deadletter_topic,
    readings_topic,
    window_topics,
)

log = logging.getLogger(__name__)
settings = get_settings()
_window_decoder = msgspec.json.Decoder(ClosedWindow)
_json = msgspec.json.Decoder()


class StorageDeadLetter(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    line: str
    rejected_ms: int


async def _rejected(line: bytes, message: str) -> None:
    record = StorageDeadLetter("influx_rejected", message, line.decode("utf-8", "replace"),
                               int(time.time() * 1000))
    await deadletter_topic.send(key=None, value=json_encoder.encode(record))
    metrics.DEADLETTERS.labels("storage").inc()


sink = InfluxSink(settings, on_rejected=_rejected)


@app.on_before_shutdown.connect
async def _close_sink(app_, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Close the InfluxDB client (its aiohttp session) when the worker stops."""
    await sink.stop()

_window_topic_set = app.topic(*(t.get_topic_name() for t in window_topics.values()),
                              key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")


@app.agent(readings_topic, name="store-readings")
async def store_readings(stream):  # type: ignore[no-untyped-def]
    await sink.start()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        lines: list[str] = []
        channels: list[str] = []
        reading_line = lineproto.reading
        for e in events:
            for r in decode_batch(e.message):
                lines.append(reading_line(r))
                if r.channels_w:
                    channels.extend(lineproto.channel_power(r))
        lines.extend(channels)  # runs of one measurement: cheap per-measurement accounting
        await sink.write({"raw": lines})
        metrics.PROCESSING_LATENCY.labels("store-readings").observe(
            max(0.0, time.time() - events[-1].message.timestamp))


@app.agent(_window_topic_set, name="store-windows")
async def store_windows(stream):  # type: ignore[no-untyped-def]
    await sink.start()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        by_rp: dict[str, list[str]] = {}
        for e in events:
            w = _window_decoder.decode(e.message.value)
            by_rp.setdefault(lineproto.window_rp(w.size), []).append(lineproto.window(w))
        await sink.write(by_rp)


_events_topic_set = app.topic(alerts_topic.get_topic_name(),
                              appliance_events_topic.get_topic_name(),
                              appliance_energy_topic.get_topic_name(), key_type=bytes,
                              value_type=bytes, key_serializer="raw", value_serializer="raw")


@app.agent(_events_topic_set, name="store-events")
async def store_events(stream):  # type: ignore[no-untyped-def]
    """Alerts, appliance events and per-appliance window energy."""
    await sink.start()
    alerts = alerts_topic.get_topic_name()
    appliance = appliance_events_topic.get_topic_name()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        by_rp: dict[str, list[str]] = {}
        for e in events:
            doc = _json.decode(e.message.value)
            topic = e.message.topic
            if topic == alerts:
                by_rp.setdefault(lineproto.RP_EVENTS, []).append(lineproto.alert(doc))
            elif topic == appliance:
                by_rp.setdefault(lineproto.RP_EVENTS, []).append(lineproto.appliance_event(doc))
            else:
                by_rp.setdefault(lineproto.window_rp(doc["size"]), []).extend(
                    lineproto.appliance_energy(doc["household_id"], doc["size"], doc))
        await sink.write(by_rp)

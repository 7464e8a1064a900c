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


async def _dead(reason: str, detail: str, payload: str) -> None:
    record = StorageDeadLetter(reason, detail, payload, int(time.time() * 1000))
    await deadletter_topic.send(key=None, value=json_encoder.encode(record))
    metrics.DEADLETTERS.labels("storage").inc()


async def _rejected(line: bytes, message: str) -> None:
    """A point InfluxDB refused (4xx), with the server's message."""
    await _dead("influx_rejected", message, line.decode("utf-8", "replace"))


async def _unstorable(invalid: list[tuple[object, str]]) -> None:
    """Records that cannot become a point (or be decoded): dead-lettered, never a crash."""
    for record, why in invalid:
        payload = record.decode("utf-8", "replace") if isinstance(record, bytes) else repr(record)
        await _dead("unstorable", why, payload)


sink = InfluxSink(settings, on_rejected=_rejected)


@app.on_before_shutdown.connect
async def _close_sink(app_, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Close the InfluxDB client (its aiohttp session) when the worker stops."""
    await sink.stop()

_window_topic_set = app.topic(*(t.get_topic_name() for t in window_topics.values()),
                              key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")


def reading_lines(events: list) -> tuple[list[str], list[tuple[object, str]]]:  # type: ignore[type-arg]
    """Line protocol of the readings in a batch of readings messages (reading points first,
    then channel points), and the readings that cannot be stored."""
    lines: list[str] = []
    channels: list[str] = []
    invalid: list[tuple[object, str]] = []
    reading_line = lineproto.reading
    for e in events:
        for r in decode_batch(e.message):
            if r.implausible:  # dead-lettered by ingestion; forwarded for spike detection only
                continue
            try:
                lines.append(reading_line(r))
                if r.channels_w:
                    channels.extend(lineproto.channel_power(r))
            except ValueError as err:
                invalid.append((r, str(err)))
    lines.extend(channels)  # runs of one measurement: cheap per-measurement accounting
    return lines, invalid


def window_batch(events: list) -> lineproto.LineBatch:  # type: ignore[type-arg]
    batch = lineproto.LineBatch()
    for e in events:
        try:
            batch.add_window(_window_decoder.decode(e.message.value))
        except msgspec.DecodeError as err:
            batch.invalid.append((e.message.value, f"not a closed window: {err}"))
    return batch


def events_batch(events: list) -> lineproto.LineBatch:  # type: ignore[type-arg]
    """Alerts, appliance events and appliance energy, by the topic they came from."""
    batch = lineproto.LineBatch()
    for e in events:
        try:
            doc = _json.decode(e.message.value)
        except msgspec.DecodeError as err:
            batch.invalid.append((e.message.value, f"not JSON: {err}"))
            continue
        topic = e.message.topic
        if topic == alerts_topic.get_topic_name():
            batch.add_alert(doc)
        elif topic == appliance_events_topic.get_topic_name():
            batch.add_appliance_event(doc)
        elif isinstance(doc, dict) and "size" in doc and "household_id" in doc:
            batch.add_appliance_energy(doc["household_id"], doc["size"], doc)
        else:
            batch.invalid.append((e.message.value, "appliance energy without size/household"))
    return batch


@app.agent(readings_topic, name="store-readings")
async def store_readings(stream):  # type: ignore[no-untyped-def]
    await sink.start()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        lines, invalid = reading_lines(events)
        await _unstorable(invalid)
        await sink.write({lineproto.RP_RAW: lines})
        metrics.PROCESSING_LATENCY.labels("store-readings").observe(
            max(0.0, time.time() - events[-1].message.timestamp))


@app.agent(_window_topic_set, name="store-windows")
async def store_windows(stream):  # type: ignore[no-untyped-def]
    await sink.start()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        batch = window_batch(events)
        await _unstorable(batch.invalid)
        await sink.write(batch.by_rp)


_events_topic_set = app.topic(alerts_topic.get_topic_name(),
                              appliance_events_topic.get_topic_name(),
                              appliance_energy_topic.get_topic_name(), key_type=bytes,
                              value_type=bytes, key_serializer="raw", value_serializer="raw")


@app.agent(_events_topic_set, name="store-events")
async def store_events(stream):  # type: ignore[no-untyped-def]
    """Alerts, appliance events and per-appliance window energy."""
    await sink.start()
    async for events in stream.take_events(settings.influx_batch_points,
                                           settings.stream_within_s):
        batch = events_batch(events)
        await _unstorable(batch.invalid)
        await sink.write(batch.by_rp)

"""The worker entry point: the Faust app with every agent loaded, plus the metrics endpoint.

    faust -A app.worker worker -l info        (Procfile)
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.exceptions import ConsumerNotStarted
from prometheus_client import start_http_server

from app import metrics
from app.main import app
from app.runtime import registry
from app.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()

STAGES = ("ingest", "windows", "anomaly", "nilm", "storage")
"""The stages a worker can run (``agents/<stage>.py``); ``WATTFLOW_AGENTS`` picks some."""


def load_agents(names: str) -> list[Any]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise SystemExit(f"WATTFLOW_AGENTS: unknown stage(s) {unknown}; known: {STAGES}")
    return [importlib.import_module(f"agents.{n}") for n in STAGES if n in wanted]


AGENT_MODULES = load_agents(settings.agents)

if not app.agents:  # e.g. an ingest-only worker: Faust's consumer needs one subscription
    from app.topics import deadletter_topic

    @app.agent(deadletter_topic, name="deadletter-watch")
    async def deadletter_watch(stream):  # type: ignore[no-untyped-def]
        """Reads the dead-letter topic (counted where produced) so a worker without Faust
        agents still has a subscription."""
        async for _ in stream.noack_take(10_000, 1.0):
            pass


@app.task
async def quiet_root_logger() -> None:
    """Undo the root logger's DEBUG level that Faust's terminal spinner sets at ``-l warn`` or
    above: it made every ``log.debug`` of aiokafka's fetcher build a record that no handler
    keeps (8 % of a loaded worker's CPU in a profile). The root level goes back to the most
    verbose of the real handlers, and the spinner's handler is dropped."""
    from faust.utils.terminal import SpinnerHandler

    root = logging.getLogger()
    kept = [h for h in root.handlers if not isinstance(h, SpinnerHandler)]
    if kept and len(kept) != len(root.handlers):
        for h in root.handlers:
            if isinstance(h, SpinnerHandler):
                root.removeHandler(h)
        root.setLevel(min(h.level for h in kept) or logging.WARNING)


@app.task
async def start_metrics() -> None:
    """Serve /metrics for Prometheus (loopback only)."""
    start_http_server(settings.metrics_port, addr=settings.host)
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    await registry.refresh()


@app.task
async def event_loop_lag() -> None:
    """How late the loop wakes a task that asked to sleep 0.5 s: the event-loop lag."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(0.5)
        metrics.EVENT_LOOP_LAG.set(max(0.0, time.perf_counter() - t0 - 0.5))


_lag_labels: set[tuple[str, str]] = set()
"""(topic, partition) label pairs of the consumer-lag gauge set by the last update."""


def partition_lags(consumer: Any, changelog_topics: set[str]) -> dict[tuple[str, int], int]:
    """Messages not yet committed per assigned source partition: the partition's highwater
    (offset of the next message produced) minus the committed offset (the next one to read
    after a restart), or minus the next offset to read when nothing was committed yet.
    Changelog partitions (read only during table recovery) are left out. Partitions whose
    highwater is not known yet (no fetch so far) are skipped."""
    try:
        assigned = consumer.assignment()
    except (ConsumerNotStarted, AttributeError, RuntimeError):
        return {}
    out: dict[tuple[str, int], int] = {}
    for tp in assigned:
        if tp.topic in changelog_topics:
            continue
        try:
            high = consumer.highwater(tp)
        except (ConsumerNotStarted, AssertionError, KeyError, AttributeError, RuntimeError):
            continue  # revoked meanwhile, or the consumer thread is not running
        if high is None:
            continue
        position = consumer._committed_offset.get(tp)
        if position is None:
            read = consumer._read_offset.get(tp)
            position = None if read is None else read + 1
        if position is None:
            continue
        out[(tp.topic, tp.partition)] = max(0, int(high) - int(position))
    return out


def service_consumer_lags(services: Iterable[Any]) -> dict[tuple[str, int], int]:
    """Lag of the plain aiokafka consumers that services run beside Faust's (the ingest
    stage's raw-topic consumer, ``agents.ingest.IngestService``): highwater minus the
    service's next offset to commit (``positions``, last processed + 1). Partitions not
    processed since their assignment, or not fetched yet, are skipped."""
    out: dict[tuple[str, int], int] = {}
    for service in services:
        consumer = getattr(service, "consumer", None)
        positions = getattr(service, "positions", None)
        if not isinstance(consumer, AIOKafkaConsumer) or not isinstance(positions, dict):
            continue
        try:
            assigned = consumer.assignment()
        except (AssertionError, AttributeError, RuntimeError):
            continue
        for tp in assigned:
            try:
                high = consumer.highwater(tp)
            except (AssertionError, KeyError, AttributeError):
                continue  # revoked meanwhile
            position = positions.get(tp)
            if high is None or position is None:
                continue
            out[(tp.topic, tp.partition)] = max(0, int(high) - int(position))
    return out


@app.timer(5.0, name="consumer-lag")
async def consumer_lag() -> None:
    """Set wattflow_consumer_lag_messages for every assigned partition (Faust's consumer and
    the services' own consumers); drop the partitions no longer assigned."""
    lags = partition_lags(app.consumer, set(app.tables.changelog_topics))
    lags.update(service_consumer_lags(app._extra_service_instances or ()))
    labels = {(topic, str(partition)) for topic, partition in lags}
    for (topic, partition), lag in lags.items():
        metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
    for stale in _lag_labels - labels:
        metrics.CONSUMER_LAG.remove(*stale)
    _lag_labels.clear()
    _lag_labels.update(labels)


__all__ = ["app"]

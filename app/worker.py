"""The worker entry point: the Faust app with every agent loaded, plus the metrics endpoint.

    faust -A app.worker worker -l info        (Procfile)
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import start_http_server

import agents.anomaly
import agents.ingest
import agents.nilm
import agents.storage
import agents.windows
from app import metrics
from app.main import app
from app.runtime import registry
from app.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()

AGENT_MODULES = (agents.ingest, agents.windows, agents.anomaly, agents.nilm, agents.storage)


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


__all__ = ["app"]

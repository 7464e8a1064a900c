"""The worker entry point: the Faust app with every agent loaded, plus the metrics endpoint.

    faust -A app.worker worker -l info        (Procfile)
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import start_http_server

import agents.ingest
import agents.storage
import agents.windows
from app import metrics
from app.main import app
from app.runtime import registry
from app.settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()

AGENT_MODULES = (agents.ingest, agents.windows, agents.storage)


@app.on_after_configured.connect
def _configure(app_, **kwargs) -> None:  # type: ignore[no-untyped-def]
    pass


@app.task
async def start_metrics() -> None:
    """Serve /metrics for Prometheus (loopback only)."""
    start_http_server(settings.metrics_port, addr=settings.host)
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    await registry.refresh()


@app.timer(1.0)
async def event_loop_lag() -> None:
    t0 = time.perf_counter()
    await asyncio.sleep(0)
    metrics.EVENT_LOOP_LAG.set(time.perf_counter() - t0)


__all__ = ["app"]

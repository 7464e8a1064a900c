"""The local Prometheus scrapes a real worker's metrics endpoint."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import SCRAPED_METRICS_PORT, World, prom_query

pytestmark = pytest.mark.integration



async def test_prometheus_scrapes_the_worker(world: World) -> None:
    worker = world.start_worker(metrics_port=SCRAPED_METRICS_PORT)
    world.wait_ready(worker)
    instance = f"127.0.0.1:{SCRAPED_METRICS_PORT}"
    deadline = time.monotonic() + 60
    up: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        up = prom_query(f'up{{job="wattflow",instance="{instance}"}}')
        if up and up[0]["value"][1] == "1":
            break
        await asyncio.sleep(1)
    assert up and up[0]["value"][1] == "1", up
    # a wattflow metric of that worker is stored in Prometheus
    series = prom_query(f'wattflow_event_loop_lag_seconds{{instance="{instance}"}}')
    assert series, "no wattflow metric scraped"

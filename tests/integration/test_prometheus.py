"""The local Prometheus scrapes a real worker's metrics endpoint."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
import urllib.request

import orjson
import pytest

from app.settings import get_settings

from .conftest import SCRAPED_METRICS_PORT, World

pytestmark = pytest.mark.integration


def prom_query(expr: str) -> list[dict]:  # type: ignore[type-arg]
    s = get_settings()
    url = (f"http://{s.host}:{s.prometheus_port}/api/v1/query?"
           + urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = orjson.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


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

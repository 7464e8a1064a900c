"""A small bounded load test through a real worker in an isolated world, and Prometheus
scraping that worker."""

from __future__ import annotations

import asyncio
import time

import pytest

from simulators.loadtest import LoadtestConfig, run

from .conftest import SCRAPED_METRICS_PORT, World, prom_query

pytestmark = pytest.mark.integration

HOUSEHOLDS = 200
DURATION_S = 20
GRACE_S = 2.0
"""Short grace so that 1-minute windows close within a 20-s run."""



async def test_bounded_load_test_reports_latencies_and_prometheus_scrapes(world: World) -> None:
    world.env["WATTFLOW_WINDOW_GRACE_S"] = str(GRACE_S)
    settings = world.settings.model_copy(update={"window_grace_s": GRACE_S})
    worker = world.start_worker(metrics_port=SCRAPED_METRICS_PORT)
    world.wait_ready(worker)
    metrics_url = f"http://127.0.0.1:{SCRAPED_METRICS_PORT}/metrics"
    cfg = LoadtestConfig(households=HOUSEHOLDS, duration_s=DURATION_S, seed=0,
                         signal_faults_per_day=2000.0, influx_sample=3, drain_timeout_s=60,
                         progress=False, metrics_urls=(metrics_url,))
    t0 = time.monotonic()
    report = await run(cfg, settings)
    assert time.monotonic() - t0 < 240
    print(report.to_table())
    r = report.to_dict()

    produce = r["produce"]
    assert produce["produce_errors"] == 0, produce["error_kinds"]
    assert produce["messages_sent"] == produce["acked"] > 0.9 * HOUSEHOLDS * DURATION_S

    windows = r["latency_window_1m"]
    assert windows["after_close_count"] > 0.5 * HOUSEHOLDS, windows
    assert 0 < windows["after_close_p50_s"] <= windows["after_close_max_s"] < 60
    assert windows["after_end_p50_s"] == pytest.approx(windows["after_close_p50_s"] + GRACE_S,
                                                       abs=0.01)
    influx = r["latency_influx"]
    assert influx["count"] > 0 and influx["poll_errors"] == 0, influx
    assert 0 < influx["p50_s"] <= influx["max_s"] < 60
    alerts = r["latency_alert"]
    assert alerts["count"] > 0, alerts  # spikes and counter resets were injected
    assert alerts["max_s"] < 60

    lag = r["consumer_lag"]
    assert lag["samples"] > DURATION_S / 2
    assert r["loadtest"]["drained"], lag  # every partition committed up to its end
    for topic in (settings.topic_raw_json, settings.topic_raw_tic, settings.topic_readings):
        assert lag["max_by_topic"][topic] > 0 and lag["final_by_topic"][topic] == 0, lag
    assert lag["worker_gauge_max"] is not None and lag["worker_gauge_max"] > 0
    # the gauge is refreshed every 5 s: once drained it comes down to 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        total = sum(v for k, v in world.metrics(worker).items()
                    if k.startswith("wattflow_consumer_lag_messages{"))
        if total == 0:
            break
        await asyncio.sleep(1)
    assert total == 0, world.metrics(worker)

    # the worker's gauge per partition, and Prometheus scraped the worker's counters
    gauges = world.metrics(worker)
    for topic in (settings.topic_raw_json, settings.topic_readings):  # Faust's and ingest's
        assert any(k.startswith("wattflow_consumer_lag_messages{") and f'"{topic}"' in k
                   for k in gauges), topic
    instance = f"127.0.0.1:{SCRAPED_METRICS_PORT}"
    expr = f'sum(wattflow_readings_valid_total{{job="wattflow",instance="{instance}"}})'
    valid = gauges["wattflow_readings_valid_total"]
    deadline = time.monotonic() + 30
    scraped = 0.0
    while time.monotonic() < deadline:
        result = prom_query(expr)
        scraped = float(result[0]["value"][1]) if result else 0.0
        if scraped >= valid > 0:
            break
        await asyncio.sleep(1)
    assert scraped > 0 and scraped >= valid, (scraped, valid)

"""Load test helpers without a broker: start alignment, latency maths, lag parsing, report."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from simulators.loadgen import LoadgenConfig, run
from simulators.loadtest import (
    AlertLatency,
    WindowLatency,
    aligned_start,
    build_parser,
    by_topic,
    caught_up,
    config_from_args,
    lag_gauge,
    partition_lag,
    sampled_households,
    window_latency,
)
from simulators.report import Report, percentiles
from simulators.sinks import MemorySink

from .test_loadgen import VirtualClock

T0 = 1_768_953_600  # a minute boundary


@pytest.mark.parametrize(("earliest", "duration", "grace", "expected"), [
    (T0 + 40, 60, 30, T0 + 40),     # next boundary in 20 s <= 25 s budget: start at once
    (T0 + 35, 60, 30, T0 + 35),     # exactly the budget
    (T0 + 10, 60, 30, T0 + 35),     # boundary 50 s away: wait until it is 25 s away
    (T0, 60, 30, T0 + 35),          # on a boundary: the next one is 60 s away
    (T0 + 10, 120, 30, T0 + 10),    # long run: any start closes a round of windows
    (T0 + 10, 20, 30, T0 + 10),     # too short to close any window: start at once
    (T0 + 59, 40, 30, T0 + 59),     # budget 5 s, boundary in 1 s
])
def test_aligned_start(earliest: int, duration: float, grace: float, expected: int) -> None:
    start = aligned_start(earliest, duration, grace)
    assert start == expected
    budget = duration - grace - 5
    if 1 <= budget < 60:  # a minute boundary M with start < M <= start + budget
        assert 60 - start % 60 <= budget


def test_window_latency() -> None:
    end_ms = T0 * 1000
    assert window_latency(end_ms, T0 + 31.5, 30.0) == pytest.approx((1.5, 31.5))


def _record(value: bytes, timestamp_ms: int) -> ConsumerRecord:
    return ConsumerRecord(topic="t", partition=0, offset=0, timestamp=timestamp_ms,
                          timestamp_type=0, key=None, value=value, checksum=None,
                          serialized_key_size=0, serialized_value_size=len(value), headers=())


def test_window_latency_counts_only_windows_of_the_run() -> None:
    w = WindowLatency(grace_s=30.0, min_end_ms=T0 * 1000)
    w.on_record(_record(b'{"end_ms": %d, "size": "1m"}' % (T0 * 1000), 0), T0 + 32)  # before
    w.on_record(_record(b'{"end_ms": %d, "size": "1m"}' % ((T0 + 60) * 1000),
                        (T0 + 91) * 1000), T0 + 92)
    assert w.ignored == 1
    section = w.section()
    assert section["after_close_count"] == 1
    assert section["after_close_p99_s"] == pytest.approx(2.0)
    assert section["after_end_max_s"] == pytest.approx(32.0)
    assert section["broker_after_close_p50_s"] == pytest.approx(1.0)


def test_alert_latency_skips_alerts_stamped_outside_the_run() -> None:
    a = AlertLatency(min_ms=T0 * 1000)
    for detected, kind in ((T0 + 10, b"spike"), (T0 - 3600, b"spike"), (T0 + 3600, b"spike"),
                           (T0 + 10, b"offline")):
        body = b'{"detected_at": %d, "type": "%s", "status": "open"}' % (detected * 1000, kind)
        a.on_record(_record(body, (T0 + 11) * 1000), T0 + 12)
    section = a.section()
    assert section["count"] == 1 and section["p50_s"] == pytest.approx(2.0)
    assert section["broker_p50_s"] == pytest.approx(1.0)
    assert section["untimed"] == 3  # skewed clocks and the clock-driven offline alert
    assert section["by_type"] == {"offline/open": 1, "spike/open": 3}


def test_lag_gauge_sums_series() -> None:
    text = """# HELP wattflow_consumer_lag_messages Consumer lag by topic and partition
# TYPE wattflow_consumer_lag_messages gauge
wattflow_consumer_lag_messages{partition="0",topic="meter.raw.json"} 120.0
wattflow_consumer_lag_messages{partition="1",topic="meter.readings"} 3.0
wattflow_consumer_lag_messages_other 7
wattflow_event_loop_lag_seconds 0.01
"""
    assert lag_gauge(text) == 123.0
    assert lag_gauge("wattflow_event_loop_lag_seconds 0.01\n") is None


def test_partition_lag_counts_never_committed_partitions_from_the_log_start() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    lags = partition_lag({a0: 10, a1: 5, b0: -1}, {b0: 2}, {a0: 15, a1: 5, b0: 9})
    assert lags == {a0: 5, a1: 0, b0: 7}
    assert partition_lag({}, {a0: 0}, {a0: 4}) == {a0: 4}  # fresh group
    assert by_topic(lags) == {"a": 5, "b": 7}


def test_caught_up_against_the_baseline() -> None:
    a0, b0 = TopicPartition("a", 0), TopicPartition("b", 0)
    baseline = {a0: 0, b0: 3}  # b0: a partition the workers never commit
    assert caught_up({a0: 0, b0: 3}, baseline)
    assert not caught_up({a0: 1, b0: 3}, baseline)
    assert not caught_up({a0: 0, b0: 3, TopicPartition("c", 0): 1}, baseline)


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values, "x_") == {"x_count": 100, "x_p50_s": 50.0, "x_p95_s": 95.0,
                                         "x_p99_s": 99.0, "x_max_s": 100.0}
    assert percentiles([])["p99_s"] is None
    report = Report("t")
    report.add("latency", percentiles([0.25]))
    assert "p99_s" in report.to_table() and b'"p50_s": 0.25' in report.to_json()


def test_sampled_households_are_in_the_population() -> None:
    ids = sampled_households(100, 0, 5)
    assert len(ids) == 5 and len(set(ids)) == 5
    assert sampled_households(100, 0, 5) == ids
    assert sampled_households(3, 0, 5) == sampled_households(3, 0, 3)


def test_cli_defaults_are_the_issue_run() -> None:
    cfg = config_from_args(build_parser().parse_args([]))
    assert (cfg.households, cfg.rate_hz, cfg.duration_s) == (10_000, 1.0, 60.0)
    assert cfg.register and cfg.align and cfg.drain_timeout_s <= 120


async def test_loadgen_start_at_hook_moves_the_start() -> None:
    clock = VirtualClock()
    seen: list[int] = []

    def start_at(earliest: int) -> int:
        seen.append(earliest)
        return earliest + 7

    cfg = LoadgenConfig(households=4, duration_s=2, progress=False, start_at=start_at)
    sink = MemorySink()
    report = await run(cfg, sink, clock=clock, sleep=clock.sleep, wall=clock.wall)
    assert report.sections["config"]["start_ts_ms"] == (seen[0] + 7) * 1000
    assert sink.sent == 8

"""Latency under paced load: reading -> closed 1-minute window, at 20 %, 50 % and 80 % of the
maximum rate of one worker (``pipeline_wall`` of :mod:`bench.pipeline`).

For each load level an isolated worker (own app, raw and intermediate topics) is driven by
:mod:`bench.drive` (the load generator at 1 reading/s per household; the number of
households sets the rate) while this process consumes the ``1m`` windows topic and the alerts
topic, stamping each message with its receive time. A 1-minute window ``[start, end)`` of a
household closes when that household's first reading at or after ``end + grace`` is
processed (event time; grace 30 s by default). For each window three latencies are reported:

- ``beyond_end``: receive time - the wall time of ``end`` (includes the grace period, by
  design at least ``grace``);
- ``beyond_close``: ``beyond_end - grace``: how long after the close instant the window
  arrived; includes up to one reading interval (1 s) of waiting for the household's first
  reading past ``end + grace`` (each household sends at its own sub-second phase);
- ``reading_to_window``: receive time - send time of that closing reading (computed from the
  generator's schedule): the pipeline's own delay, reading -> window emitted and received.

``latency`` = p99 of ``beyond_close`` at 50 % load against the 1 s target (ratio <= 1 meets
it). Reading -> alert: the generator injects about ``ALERTS_PER_LEVEL`` energy-counter resets
per level (``bench.drive --resets-per-day``); each opens a ``counter_backwards`` alert at the
reading that shows it, and the latency is the alert's receive time - the send time of that
reading (its ``detected_at``, event time, converted with the schedule).

    python -m bench.latency [--quick] [--max-rate READINGS_PER_S]
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from bench.harness import (
    PYTHON,
    REPO,
    Isolation,
    MachineCpu,
    Samples,
    Worker,
    bootstrap,
    code_fingerprint,
    log,
    metric_sum,
    new_run_id,
    percentile,
    register_population,
)

SEED = 1
LEVELS = (0.2, 0.5, 0.8)
TARGET_S = 1.0
LEAD_S = 3
DRAIN_MAX_S = 30.0
ALERTS_PER_LEVEL = 40
"""Energy-counter resets injected per level (expected): each opens a ``counter_backwards``
alert at the reading that shows it, so reading -> alert is measured on a clean run."""
QUICK_RATE_CAP = 10_000.0
"""--quick drives at most 80 % of this many readings/s: rendering and sending 20 k+ households
from one Python generator takes longer than the quick budget (and a core of its own)."""


@dataclass(frozen=True)
class Schedule:
    """When the generator sent what: household ``h`` of ``households`` sends its reading of
    period ``k`` stamped ``start_s*1000 + k*interval + phase(h)`` at wall ``ts - shift_ms``."""

    start_s: int
    shift_ms: float
    households: int
    interval_s: int
    periods: int

    def phase_ms(self, h: int) -> int:
        return int(h * self.interval_s * 1000 / self.households)

    def closing_reading_ts(self, h: int, threshold_ms: int) -> int | None:
        """Event time of household ``h``'s first reading at or after ``threshold_ms``, or
        None when the generator stopped before it."""
        step = self.interval_s * 1000
        base = self.start_s * 1000 + self.phase_ms(h)
        k = max(0, math.ceil((threshold_ms - base) / step))
        return base + k * step if k < self.periods else None

    def wall_ms(self, ts_ms: float) -> float:
        return ts_ms - self.shift_ms


class _Alert(msgspec.Struct):
    household_id: str
    status: str
    detected_at: int
    resolved_at: int | None = None


_decode_alert = msgspec.json.Decoder(_Alert).decode


def _stage_means(samples: Samples) -> dict[str, float]:
    """Mean of wattflow_processing_seconds per stage (Kafka timestamp -> processed)."""
    out = {}
    for (name, labels), v in samples.items():
        if name == "wattflow_processing_seconds_sum":
            stage = dict(labels).get("stage", "?")
            n = samples.get(("wattflow_processing_seconds_count", labels), 0.0)
            if n:
                out[stage] = round(v / n, 3)
    return out


async def _sample_loop_lag(worker: Worker, out: list[float], stop: asyncio.Event) -> None:
    """The worker's event-loop lag gauge (a 1-s timer's sleep(0) delay), every 0.5 s."""
    while not stop.is_set():
        m = await asyncio.to_thread(worker.metrics)
        if m:
            out.append(metric_sum(m, "wattflow_event_loop_lag_seconds"))
        await asyncio.sleep(0.5)


class _Window(msgspec.Struct):
    household_id: str
    size: str
    end_ms: int
    readings: int


_decode_window = msgspec.json.Decoder(_Window).decode


def window_latency(household_id: str, end_ms: int, recv_ms: float, sched: Schedule,
                   grace_ms: int) -> dict[str, float] | None:
    """The three latencies (seconds) of one received window; None if not attributable (a
    household outside the schedule, or its closing reading was never sent)."""
    try:
        h = int(household_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None
    if not 0 <= h < sched.households:
        return None
    ts_close = sched.closing_reading_ts(h, end_ms + grace_ms)
    if ts_close is None:
        return None
    beyond_end = (recv_ms - sched.wall_ms(end_ms)) / 1000
    return {"beyond_end": beyond_end, "beyond_close": beyond_end - grace_ms / 1000,
            "reading_to_window": (recv_ms - sched.wall_ms(ts_close)) / 1000}


def summarize(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values) if values else math.nan, "n": len(values)}


async def _collect(topics: list[str], sink: list[tuple[float, str, bytes, int]],
                   stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap(), group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        await c._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t)
                                                                     or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        while not stop.is_set():
            batches = await c.getmany(timeout_ms=100, max_records=5000)
            now_ms = time.time() * 1000
            for tp, records in batches.items():
                for m in records:
                    sink.append((now_ms, tp.topic, m.value, m.timestamp))
    finally:
        await c.stop()


async def _level(run_id: str, pct: int, households: int, duration_s: float,
                 grace_ms: int, worker_env: dict[str, str] | None = None,
                 drain_max_s: float = DRAIN_MAX_S) -> dict[str, Any]:
    """One load level on a fresh isolated worker (``worker_env``: extra WATTFLOW_* settings
    of the worker, e.g. ``WATTFLOW_BATCH_WITHIN_S``, for experiments)."""
    iso = Isolation.for_run(run_id, f"lat{pct}", shared_raw=False)
    worker: Worker | None = None
    received: list[tuple[float, str, bytes, int]] = []
    loop_lag: list[float] = []
    stop = asyncio.Event()
    collector: asyncio.Task[None] | None = None
    sampler: asyncio.Task[None] | None = None
    proc: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(iso.setup)
        code = code_fingerprint()
        worker = Worker(iso, name=f"lat{pct}", extra_env=worker_env)
        worker.start()
        # the generator renders its households (seconds) while the worker starts
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bench.drive", "--households", str(households), "--duration",
            str(duration_s), "--seed", str(SEED), "--lead-s", str(LEAD_S),
            "--resets-per-day", str(round(ALERTS_PER_LEVEL * 86_400 / duration_s / households, 3)),
            cwd=REPO,
            env=iso.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await asyncio.to_thread(worker.wait_ready)
        win_topic = f"{iso.window_prefix}1m"
        alerts_topic = f"{iso.prefix}.alerts"
        collector = asyncio.create_task(_collect([win_topic, alerts_topic], received, stop))
        cpu0, t0 = worker.cpu(), time.monotonic()
        machine = MachineCpu()
        sampler = asyncio.create_task(_sample_loop_lag(worker, loop_lag, stop))
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench.drive failed: {err.decode()[-1500:]}")
        drive = msgspec.json.decode(out.strip().splitlines()[-1])
        # drain: until no window arrived for 2 s and the worker consumed what was sent
        # (given up at once if the backlog is more than ~8 s of load, and after 20 s)
        acked = drive["report"]["produce"].get("acked", 0)
        t_drain = time.monotonic()
        last_n, last_t = len(received), time.monotonic()
        while time.monotonic() - t_drain < drain_max_s:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if len(received) != last_n:
                last_n, last_t = len(received), now
                continue
            m = await asyncio.to_thread(worker.metrics) or {}
            backlog = (acked - metric_sum(m, "wattflow_raw_records_total")
                       + metric_sum(m, "wattflow_readings_valid_total")
                       - metric_sum(m, "wattflow_readings_windowed_total"))
            catching_up = 0 < backlog < households * 8
            if now - last_t >= 2.0 and not catching_up:
                break
        drain_end_ms = time.time() * 1000
        cpu, wall = worker.cpu() - cpu0, time.monotonic() - t0
        busy = machine.busy_share()
        samples = worker.metrics() or {}
    finally:
        stop.set()
        if proc is not None and proc.returncode is None:  # never leave the generator running
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if sampler is not None:
            with contextlib.suppress(Exception):
                await sampler
        if collector is not None:
            with contextlib.suppress(Exception):
                await collector
        if worker is not None:
            worker.stop()
        await asyncio.to_thread(iso.teardown)

    produce = drive["report"]["produce"]
    sched = Schedule(drive["start_s"], drive["shift_ms"], households, drive["interval_s"],
                     math.ceil(duration_s / drive["interval_s"]))
    lat: dict[str, list[float]] = {"beyond_end": [], "beyond_close": [], "reading_to_window": []}
    lat["reading_to_emit"] = []
    alert_lat: list[float] = []
    alerts = 0
    for recv_ms, topic, value, kafka_ts in received:
        if topic == alerts_topic:
            alerts += 1
            a = _decode_alert(value)
            if a.status != "resolved":
                alert_lat.append((recv_ms - sched.wall_ms(a.detected_at)) / 1000)
            continue
        w = _decode_window(value)
        if w.size != "1m" or w.readings == 0:
            continue
        one = window_latency(w.household_id, w.end_ms, recv_ms, sched, grace_ms)
        if one is not None:
            for k, v in one.items():
                lat[k].append(v)
            # the worker's producer stamped the window when it sent it
            lat["reading_to_emit"].append(
                one["reading_to_window"] - (recv_ms - kafka_ts) / 1000)
    windowed = metric_sum(samples, "wattflow_readings_windowed_total")
    # the first minute boundary of the run closes at boundary + grace (event time)
    close_ms = sched.wall_ms((drive["start_s"] + LEAD_S) * 1000 + grace_ms)
    result = {
        "load_pct": pct, "households": households,
        "target_rate": households / drive["interval_s"],
        "achieved_rate": produce.get("achieved_rate_msg_s"),
        "loadgen_behind_p99_s": produce.get("behind_schedule_p99_s"),
        "loadgen_stopped_early": produce.get("stopped_early"),
        "windows": len(lat["beyond_close"]),
        "beyond_close_lower_bound_s": None if lat["beyond_close"]
        else round((drain_end_ms - close_ms) / 1000, 3),
        **{k: summarize(v) for k, v in lat.items()},
        "alerts_received": alerts,
        "reading_to_alert": summarize(alert_lat),
        "event_loop_lag_max_s": max(loop_lag) if loop_lag else None,
        "stage_latency_mean_s": _stage_means(samples),
        "worker_cpu_per_wall": round(cpu / wall, 3) if wall else None,
        "machine_cpu_busy": round(busy, 3),
        "backlog_at_end": int(produce.get("acked", 0)
                              - metric_sum(samples, "wattflow_raw_records_total")
                              + metric_sum(samples, "wattflow_readings_valid_total") - windowed),
        "code": code,
        "readings_valid": metric_sum(samples, "wattflow_readings_valid_total"),
        "readings_windowed": windowed,
        "readings_late": metric_sum(samples, "wattflow_readings_late_total"),
        "changelog_per_reading_live": (metric_sum(samples, "wattflow_table_writes_total")
                                       / windowed if windowed else None),
        "shift_ms": drive["shift_ms"],
    }
    log(f"latency {pct}%: {households} households, {len(lat['beyond_close'])} windows, "
        f"beyond close p50 {result['beyond_close']['p50']:.3f} s p99 "
        f"{result['beyond_close']['p99']:.3f} s; worker CPU/wall {result['worker_cpu_per_wall']}")
    return result


def level_note(pct: int, v: dict[str, Any]) -> str:
    """One load level in a sentence (pure)."""
    if not v["windows"]:
        return (f"{pct}%: no 1-minute window arrived within "
                f"{v.get('beyond_close_lower_bound_s') or 0:.1f} s after the close (the worker "
                f"fell behind: {v.get('backlog_at_end', '?')} readings not yet windowed at "
                f"the end, event-loop lag max {v.get('event_loop_lag_max_s') or 0:.2f} s)")
    return (f"{pct}%: beyond close p50/p99 {v['beyond_close']['p50']:.2f}/"
            f"{v['beyond_close']['p99']:.2f} s, reading->window p50/p99 "
            f"{v['reading_to_window']['p50']:.2f}/{v['reading_to_window']['p99']:.2f} s, "
            f"beyond end p99 {v['beyond_end']['p99']:.2f} s")


def run(quick: bool = False, max_rate: float | None = None) -> dict[str, dict[str, Any]]:
    """``max_rate``: readings/s one worker sustains (``pipeline_wall``); measured if None."""
    from app.settings import get_settings

    if max_rate is None:
        from bench import pipeline

        max_rate = pipeline.run(quick, only=set())["pipeline_wall"]["value"]
    grace_ms = int(get_settings().window_grace_s * 1000)
    duration = LEAD_S + grace_ms / 1000 + 3 + (0 if quick else 60)
    base = min(max_rate, QUICK_RATE_CAP) if quick else max_rate
    capped = base < max_rate
    counts = {round(f * 100): max(10, round(f * base)) for f in LEVELS}
    register_population(max(counts.values()), SEED)
    run_id = new_run_id()
    levels = {}
    for pct, households in counts.items():
        log(f"latency {pct}%: {households} households"
            + (f" ({households / max_rate:.0%} of the max rate: --quick cap)" if capped else ""))
        levels[pct] = asyncio.run(_level(run_id, pct, households, duration, grace_ms,
                                         drain_max_s=6.0 if quick else DRAIN_MAX_S))
    mid = levels[50]
    p99 = mid["beyond_close"]["p99"]
    bound = ""
    if not mid["windows"]:  # nothing arrived: the p99 is at least the time waited
        p99 = mid["beyond_close_lower_bound_s"]
        bound = " LOWER BOUND (no window arrived before the bench stopped waiting):"
    note = (f"p99{bound} of (window received - (end + grace {grace_ms // 1000} s)) at 50 % of "
            f"{max_rate:,.0f} readings/s ({mid['households']} households at 1 Hz, "
            f"{mid['windows']} windows); target < {TARGET_S} s. "
            + (f"QUICK CAP: levels are 20/50/80 % of {base:,.0f}/s, i.e. "
               f"{0.2 * base / max_rate:.0%}/{0.5 * base / max_rate:.0%}/"
               f"{0.8 * base / max_rate:.0%} of the max rate (run without --quick for the real "
               f"levels). " if capped else "")
            + "; ".join(level_note(p, v) for p, v in levels.items()))
    out: dict[str, dict[str, Any]] = {
        "latency": {"value": p99, "baseline": TARGET_S, "ratio": p99 / TARGET_S, "unit": "s",
                    "note": note, "bound": "lower" if bound else None,
                    "detail": {"max_rate": max_rate, "level_base_rate": base,
                               "quick_capped": capped, "grace_s": grace_ms / 1000,
                               "duration_s": duration, "levels": levels}},
    }
    alerts = sum(v["alerts_received"] for v in levels.values())
    timed = {p: v["reading_to_alert"] for p, v in levels.items() if v["reading_to_alert"]["n"]}
    if timed:
        ref = timed.get(50) or next(iter(timed.values()))
        out["latency_alert"] = {
            "value": ref["p99"], "baseline": TARGET_S, "ratio": ref["p99"] / TARGET_S,
            "unit": "s",
            "note": "p99 of alert received - wall time of the reading that confirmed it "
                    "(detected_at, event time) at 50 % load, else at the first level that got "
                    "alerts; " + "; ".join(
                        f"{p}%: p50/p99 {v['p50']:.2f}/{v['p99']:.2f} s (n={v['n']})"
                        for p, v in timed.items()),
            "detail": timed}
    else:
        out["latency_alert"] = {
            "value": None, "baseline": TARGET_S, "ratio": None, "unit": "s",
            "status": "not_measured",
            "note": f"reading->alert not measured: {alerts} alerts received (about "
                    f"{ALERTS_PER_LEVEL} injected counter resets per level were expected)"}
    return out


def main() -> None:
    from bench.report import render_table

    rate = None
    if "--max-rate" in sys.argv:
        rate = float(sys.argv[sys.argv.index("--max-rate") + 1])
    print(render_table(run(quick="--quick" in sys.argv, max_rate=rate)))


if __name__ == "__main__":
    main()

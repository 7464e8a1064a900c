"""End-to-end load test: simulated households through a running worker, with latencies and lag.

    python -m simulators.loadtest --households 10000 --rate 1 --duration 60 [--json]
        [--start-worker] [--signal-faults 20] [--fault-kinds spike,counter_reset]
        [--influx-sample 5] [--drain-timeout 60]
        [--seed 0] [--no-register] [--no-align] [--metrics-url URL ...] [--no-progress]

Registers the population in PostgreSQL (:mod:`simulators.register`, same seed as the load),
drives :func:`simulators.loadgen.run` (live line on stderr, with the measured lag and counts
added) and, concurrently, measures:

- **reading -> 1-minute window**: consumes ``meter.windows.1m`` from its end (no consumer
  group). A household's window closes when its event time passes the window end plus the grace
  period (``WATTFLOW_WINDOW_GRACE_S``, 30 s), that is when its reading stamped ``end + grace``
  arrives; that reading is produced at that time, so ``after_close = received - (end + grace)``
  is the pipeline's latency, and ``after_end = received - end`` what a dashboard waits (grace
  included). ``broker_after_close`` uses the window record's Kafka timestamp (when the worker
  produced it) instead of when this process read it.
- **reading -> alert**: consumes ``alerts`` from its end; ``received - detected_at`` (the event
  time of the reading that confirmed the alert; ``offline`` alerts, raised by a timer, are
  counted, not timed). Signal faults (``--signal-faults``, per
  household and day, spikes among them) make alerts happen during a short run; alerts stamped
  outside the run (clock-skew faults) are counted, not timed.
- **reading -> InfluxDB**: polls InfluxDB every second for the newest ``reading`` of a few
  sampled households; each newly visible timestamp gives ``poll answered - ts`` (an upper
  bound with the poll's 1-s granularity).
- **consumer lag**: committed offsets of the workers' consumer groups (the Faust app id, and
  ``<app id>-ingest`` of the ingest stage's own raw-topic consumer) against the end offsets of
  the topics a worker consumes, every second, per topic (a partition never committed owes
  everything since the log's start); and the workers' own gauge
  ``wattflow_consumer_lag_messages`` from their metrics endpoints. Committed lag includes the
  work held until the next checkpoint (``WATTFLOW_CHECKPOINT_INTERVAL_S``) and commit, so a
  worker that keeps up shows a saw-tooth of that much traffic, not zero.

After the load the test waits (at most ``--drain-timeout``) until no partition owes more than
before the load (the first sample is the baseline): ``drain_s`` is how long the workers needed
to catch up. With a run shorter than grace + 60 s
the start is put just before a minute boundary (``--no-align`` to start at once), so that at
least one round of 1-minute windows closes while readings still flow (the windows after the
last boundary close only when event time moves on, i.e. after the run). A worker must be
running (``python -m app.devrun``), or pass ``--start-worker`` (started and stopped here).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.settings import Settings, get_settings
from simulators.loadgen import LoadgenConfig
from simulators.loadgen import run as loadgen_run
from simulators.population import make_population
from simulators.report import Report, percentiles
from simulators.sinks import KafkaSink, Sink

ALERT_FAULTS = ("spike", "counter_reset")
"""Signal faults whose alerts come within seconds (offline takes 15 min, over-consumption a
learned profile). Clock skew is left out: the TIC standard-mode frame writer fails on event
times that go backwards inside a chunk (``simulators.tic_frames.horodates``)."""

CLOCK_ALERTS = frozenset({"offline"})
"""Alert types raised by a timer, not by a reading: counted, not timed."""

MAX_SAMPLES = 1_000_000
"""Latency samples kept per measurement (a 10k-household minute gives ~10k windows)."""


@dataclass
class LoadtestConfig:
    households: int = 10_000
    rate_hz: float = 1.0
    duration_s: float = 60.0
    seed: int = 0
    signal_faults_per_day: float = 20.0
    """Expected signal faults per household and day."""
    signal_fault_kinds: tuple[str, ...] = ALERT_FAULTS
    influx_sample: int = 5
    """Households whose newest reading is polled in InfluxDB."""
    poll_s: float = 1.0
    drain_timeout_s: float = 60.0
    settle_s: float = 2.0
    """Measured a little longer once drained, for the last windows and points."""
    register: bool = True
    align: bool = True
    progress: bool = True
    metrics_urls: tuple[str, ...] = ()
    """Worker /metrics endpoints read for wattflow_consumer_lag_messages; default: the ports
    the local Prometheus scrapes."""


# --- pure helpers (unit-tested) ------------------------------------------------------------------
def aligned_start(earliest_s: int, duration_s: float, grace_s: float,
                  margin_s: float = 5.0) -> int:
    """The first second >= ``earliest_s`` after which a minute boundary ``M`` comes early
    enough that the windows ending at ``M`` close (``M + grace``) ``margin_s`` before the run
    ends. ``earliest_s`` itself when the run is long enough for any start, or too short."""
    budget = int(duration_s - grace_s - margin_s)
    if budget >= 60 or budget < 1:
        return earliest_s
    gap = 60 - earliest_s % 60  # seconds to the next boundary, 1..60
    return earliest_s if gap <= budget else earliest_s + gap - budget


def window_latency(end_ms: int, received_s: float, grace_s: float) -> tuple[float, float]:
    """``(after_close, after_end)`` seconds of a window received at ``received_s``."""
    after_end = received_s - end_ms / 1000
    return after_end - grace_s, after_end


_LAG_LINE = re.compile(r"^wattflow_consumer_lag_messages(?:\{[^}]*\})?\s+(\S+)")


def lag_gauge(metrics_text: str) -> float | None:
    """Sum of ``wattflow_consumer_lag_messages`` over its series; None if there is none."""
    total: float | None = None
    for line in metrics_text.splitlines():
        m = _LAG_LINE.match(line)
        if m:
            total = (total or 0.0) + float(m.group(1))
    return total


def partition_lag(committed: Mapping[TopicPartition, int], begins: Mapping[TopicPartition, int],
                  ends: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Messages the group has not committed, per partition: end offset minus the committed
    offset, or minus the log's first offset where the group never committed (a fresh group
    or a partition it has not acked yet still owes everything)."""
    out: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        done = committed.get(tp, -1)
        if done < 0:
            done = begins.get(tp, end)
        out[tp] = max(0, end - done)
    return out


def by_topic(lags: Mapping[TopicPartition, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for tp, lag in lags.items():
        out[tp.topic] = out.get(tp.topic, 0) + lag
    return out


def caught_up(lags: Mapping[TopicPartition, int], baseline: Mapping[TopicPartition, int]) -> bool:
    """No partition owes more than before the load (partitions of topics the workers never
    commit, e.g. a quiet window size, keep their old lag)."""
    return all(lag <= baseline.get(tp, 0) for tp, lag in lags.items())


def worker_groups(s: Settings) -> list[str]:
    """Consumer groups of a worker: Faust's (the app id) and the ingest stage's own consumer
    (``<app id>-ingest``, raw topics; older workers consumed them in Faust's group)."""
    return [s.app_id, f"{s.app_id}-ingest"]


def source_topics(s: Settings) -> list[str]:
    """Topics the worker consumes (its consumer group's lag is measured on these)."""
    return [s.topic_raw_json, s.topic_raw_tic, s.topic_readings,
            *(s.window_topic(size) for size in ("1m", "15m", "1h", "1d")),
            s.topic_alerts, s.topic_appliance_events, s.topic_appliance_energy]


def sampled_households(households: int, seed: int, k: int) -> list[str]:
    """``k`` household ids spread over the population (the same ones for the same seed)."""
    if households <= 0 or k <= 0:
        return []
    population = make_population(households, seed)
    step = max(1, households // k)
    return [population[i].household_id for i in range(0, households, step)][:k]


def _keep(values: list[float], value: float) -> None:
    if len(values) < MAX_SAMPLES:
        values.append(value)


# --- measurements --------------------------------------------------------------------------------
class _Window(msgspec.Struct):
    end_ms: int
    size: str = ""


class _Alert(msgspec.Struct):
    detected_at: int
    type: str = ""
    status: str = ""


class TopicTail:
    """Reads every partition of a topic from where it ended when :meth:`start` ran (no
    consumer group, nothing committed) and hands each record to ``on_record``."""

    def __init__(self, servers: str, topic: str,
                 on_record: Callable[[ConsumerRecord, float], None]) -> None:
        self.servers = servers
        self.topic = topic
        self.on_record = on_record
        self.records = 0
        self._consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None,
                                          enable_auto_commit=False, fetch_max_wait_ms=100)

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        parts = [p["partition"] for d in described if d.get("error_code") == 0
                 for p in d.get("partitions", [])]
        if not parts:
            raise SystemExit(f"[loadtest] topic {self.topic} does not exist (python -m app.setup)")
        await self._consumer.start()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        for tp, offset in (await self._consumer.end_offsets(tps)).items():
            self._consumer.seek(tp, offset)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    self.records += 1
                    self.on_record(rec, now)

    async def stop(self) -> None:
        await self._consumer.stop()


@dataclass
class WindowLatency:
    grace_s: float
    min_end_ms: int | None = None
    """Windows ending before the run's start are not timed (set once the start is known)."""
    after_close: list[float] = field(default_factory=list)
    after_end: list[float] = field(default_factory=list)
    broker_after_close: list[float] = field(default_factory=list)
    ignored: int = 0
    _decode: Any = field(default_factory=lambda: msgspec.json.Decoder(_Window).decode)

    def on_record(self, rec: ConsumerRecord, received_s: float) -> None:
        w = self._decode(rec.value)
        if w.size not in ("", "1m") or self.min_end_ms is None or w.end_ms <= self.min_end_ms:
            self.ignored += 1
            return
        close, end = window_latency(w.end_ms, received_s, self.grace_s)
        _keep(self.after_close, close)
        _keep(self.after_end, end)
        _keep(self.broker_after_close, window_latency(w.end_ms, rec.timestamp / 1000,
                                                      self.grace_s)[0])

    def section(self) -> dict[str, Any]:
        end = percentiles(self.after_end, "after_end_")
        end.pop("after_end_count")
        broker = percentiles(self.broker_after_close, "broker_after_close_")
        return {**percentiles(self.after_close, "after_close_"), **end,
                **{k: v for k, v in broker.items() if k.endswith(("p50_s", "p99_s", "max_s"))},
                "grace_s": self.grace_s, "ignored": self.ignored}


@dataclass
class AlertLatency:
    min_ms: int | None = None
    latency: list[float] = field(default_factory=list)
    broker_latency: list[float] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)
    untimed: int = 0
    """Alerts raised by the clock (offline), or stamped outside the run (clock-skew faults)."""
    _decode: Any = field(default_factory=lambda: msgspec.json.Decoder(_Alert).decode)

    def on_record(self, rec: ConsumerRecord, received_s: float) -> None:
        a = self._decode(rec.value)
        key = f"{a.type}/{a.status}" if a.status else a.type
        self.by_type[key] = self.by_type.get(key, 0) + 1
        if (a.type in CLOCK_ALERTS or self.min_ms is None
                or not self.min_ms <= a.detected_at <= received_s * 1000 + 5000):
            self.untimed += 1
            return
        _keep(self.latency, received_s - a.detected_at / 1000)
        _keep(self.broker_latency, rec.timestamp / 1000 - a.detected_at / 1000)

    def section(self) -> dict[str, Any]:
        broker = percentiles(self.broker_latency, "broker_")
        return {**percentiles(self.latency),
                "broker_p50_s": broker["broker_p50_s"], "broker_p99_s": broker["broker_p99_s"],
                "untimed": self.untimed, "by_type": dict(sorted(self.by_type.items()))}


class InfluxVisibility:
    """Polls InfluxDB for the newest ``reading`` of a few households (bound parameters)."""

    def __init__(self, settings: Settings, households: list[str], poll_s: float) -> None:
        self.s = settings
        self.households = households
        self.poll_s = poll_s
        self.min_ms: int | None = None
        self.latency: list[float] = []
        self.last: dict[str, int] = {}
        self.polls = 0
        self.errors = 0
        user_pass = f"{settings.influx_user}:{settings.influx_password.get_secret_value()}"
        self._auth = "Basic " + base64.b64encode(user_pass.encode()).decode()

    def _query(self) -> str:
        cond = " OR ".join(f'"household" = $h{i}' for i in range(len(self.households)))
        return (f'SELECT last("power_w") FROM "{self.s.influx_db}"."raw"."reading" '
                f'WHERE ({cond}) AND time >= {self.min_ms}ms GROUP BY "household"')

    async def poll(self, session: aiohttp.ClientSession) -> None:
        params = {f"h{i}": h for i, h in enumerate(self.households)}
        form = {"q": self._query(), "epoch": "ms", "params": orjson.dumps(params).decode()}
        self.polls += 1
        try:
            async with session.post(f"{self.s.influx_http_url}/query", data=form,
                                    headers={"Authorization": self._auth},
                                    timeout=aiohttp.ClientTimeout(total=5)) as resp:
                body = orjson.loads(await resp.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            self.errors += 1
            return
        answered = time.time()
        result = (body.get("results") or [{}])[0]
        if "error" in result or "error" in body:
            self.errors += 1
            return
        for series in result.get("series") or []:
            hid = series.get("tags", {}).get("household")
            ts = int(series["values"][0][0])
            if hid and ts > self.last.get(hid, -1):
                self.last[hid] = ts
                _keep(self.latency, answered - ts / 1000)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.households:
            return
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                t0 = time.monotonic()
                if self.min_ms is not None:
                    await self.poll(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(),
                                           max(0.05, self.poll_s - (time.monotonic() - t0)))

    def section(self) -> dict[str, Any]:
        return {**percentiles(self.latency), "households_sampled": len(self.households),
                "polls": self.polls, "poll_errors": self.errors}


class LagMonitor:
    """Consumer-group lag per topic (committed vs end offsets of the worker's source topics)
    and the workers' own gauge; the first sample is the baseline the drain is judged by."""

    def __init__(self, settings: Settings, metrics_urls: Iterable[str], poll_s: float) -> None:
        self.s = settings
        self.groups = worker_groups(settings)
        self.metrics_urls = list(metrics_urls)
        self.poll_s = poll_s
        self.tps: list[TopicPartition] = []
        self.baseline: dict[TopicPartition, int] | None = None
        self.lags: dict[TopicPartition, int] = {}
        self.latest: dict[str, int] = {}
        self.max_by_topic: dict[str, int] = {}
        self.max_total = 0
        self.samples = 0
        self.errors = 0
        self.gauge: float | None = None
        self.gauge_max: float | None = None
        self.sampled_at = float("-inf")
        self.caught_up_since: float | None = None
        """Monotonic time of the first sample of the current run of samples at (or below) the
        baseline lag."""
        self._admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_servers)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_servers,
                                          group_id=None, enable_auto_commit=False)

    @property
    def total(self) -> int:
        return sum(self.latest.values())

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()
        described = await self._admin.describe_topics(source_topics(self.s))
        self.tps = sorted((TopicPartition(d["topic"], p["partition"]) for d in described
                           if d.get("error_code") == 0 for p in d.get("partitions", [])),
                          key=lambda tp: (tp.topic, tp.partition))

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def sample(self, session: aiohttp.ClientSession | None = None) -> None:
        try:
            committed: dict[TopicPartition, int] = {}
            for group in self.groups:  # the most advanced commit of the worker's groups
                offsets = await asyncio.wait_for(
                    self._admin.list_consumer_group_offsets(group), timeout=5)
                for tp, om in offsets.items():
                    committed[tp] = max(committed.get(tp, -1), om.offset)
            ends = await asyncio.wait_for(self._consumer.end_offsets(self.tps), timeout=5)
            missing = [tp for tp in self.tps if committed.get(tp, -1) < 0]
            begins = await asyncio.wait_for(self._consumer.beginning_offsets(missing),
                                            timeout=5) if missing else {}
        except Exception as exc:  # noqa: BLE001 - broker busy, group rebalancing: next second
            self.errors += 1
            if self.errors <= 3:
                print(f"[loadtest] lag sample failed: {exc!r}", file=sys.stderr)
            return
        self.samples += 1
        self.lags = partition_lag(committed, begins, ends)
        if self.baseline is None:
            self.baseline = dict(self.lags)
        self.latest = by_topic(self.lags)
        for topic, lag in self.latest.items():
            self.max_by_topic[topic] = max(self.max_by_topic.get(topic, 0), lag)
        self.max_total = max(self.max_total, self.total)
        self.sampled_at = time.monotonic()
        if not caught_up(self.lags, self.baseline):
            self.caught_up_since = None
        elif self.caught_up_since is None:
            self.caught_up_since = self.sampled_at
        if session is not None:
            await self._sample_gauge(session)

    async def _sample_gauge(self, session: aiohttp.ClientSession) -> None:
        total: float | None = None
        for url in self.metrics_urls:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status != 200:
                        continue
                    value = lag_gauge(await resp.text())
            except (aiohttp.ClientError, TimeoutError):
                continue
            if value is not None:
                total = (total or 0.0) + value
        self.gauge = total
        if total is not None:
            self.gauge_max = max(self.gauge_max or 0.0, total)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                t0 = time.monotonic()
                await self.sample(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(),
                                           max(0.05, self.poll_s - (time.monotonic() - t0)))

    def section(self) -> dict[str, Any]:
        return {"groups": ", ".join(self.groups),
                "baseline_total": sum((self.baseline or {}).values()),
                "max_total": self.max_total, "final_total": self.total,
                "max_by_topic": dict(sorted(self.max_by_topic.items())),
                "final_by_topic": dict(sorted(self.latest.items())),
                "worker_gauge_max": self.gauge_max, "worker_gauge_final": self.gauge,
                "samples": self.samples, "sample_errors": self.errors}


# --- the run -------------------------------------------------------------------------------------
def default_metrics_urls(s: Settings) -> tuple[str, ...]:
    ports = [p.strip() for p in s.metrics_ports_scraped.split(",") if p.strip()]
    return tuple(f"http://{s.host}:{p}/metrics" for p in ports)


async def run(cfg: LoadtestConfig, settings: Settings | None = None, *,
              sink: Sink | None = None, stop: asyncio.Event | None = None) -> Report:
    """Register, load, measure, drain; returns the load generator's report with the
    ``loadtest``, ``latency_*`` and ``consumer_lag`` sections added."""
    s = settings or get_settings()
    registered = 0
    if cfg.register:
        from simulators.register import register

        registered = await register(cfg.households, cfg.seed)
    grace_s = s.window_grace_s
    windows = WindowLatency(grace_s)
    alerts = AlertLatency()
    influx = InfluxVisibility(s, sampled_households(cfg.households, cfg.seed,
                                                    cfg.influx_sample), cfg.poll_s)
    lag = LagMonitor(s, cfg.metrics_urls or default_metrics_urls(s), cfg.poll_s)
    tails = [TopicTail(s.kafka_servers, s.window_topic("1m"), windows.on_record),
             TopicTail(s.kafka_servers, s.topic_alerts, alerts.on_record)]
    started: dict[str, int] = {}

    def start_at(earliest_s: int) -> int:
        start_s = aligned_start(earliest_s, cfg.duration_s, grace_s) if cfg.align else earliest_s
        started.update(earliest=earliest_s, start=start_s)
        windows.min_end_ms = alerts.min_ms = influx.min_ms = start_s * 1000
        return start_s

    lg = LoadgenConfig(households=cfg.households, rate_hz=cfg.rate_hz,
                       duration_s=cfg.duration_s, seed=cfg.seed,
                       signal_faults_per_day=cfg.signal_faults_per_day,
                       signal_fault_kinds=cfg.signal_fault_kinds, progress=cfg.progress,
                       topic_json=s.topic_raw_json, topic_tic=s.topic_raw_tic, start_at=start_at)
    sink = sink or KafkaSink(s.kafka_servers)

    def live() -> dict[str, str]:
        return {"lag": f"{lag.total:,}", "win1m": f"{len(windows.after_close):,}",
                "alerts": f"{len(alerts.latency):,}"}

    halt = asyncio.Event()
    await lag.start()
    await lag.sample()  # the baseline, before any reading is produced
    for t in tails:
        await t.start()
    tasks = [asyncio.create_task(t.run(halt)) for t in tails]
    tasks += [asyncio.create_task(influx.run(halt)), asyncio.create_task(lag.run(halt))]
    drain_s: float | None = None
    try:
        report = await loadgen_run(lg, sink, progress_hooks=[live], stop=stop)
        t_end = time.monotonic()
        deadline = t_end + cfg.drain_timeout_s
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            await asyncio.sleep(0.25)
            if lag.caught_up_since is not None and lag.sampled_at > t_end:
                drain_s = max(0.0, lag.caught_up_since - t_end)
                break
        await asyncio.sleep(cfg.settle_s)
    finally:
        halt.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for t in tails:
            await t.stop()
        await lag.stop()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    report.title = "wattflow load test"
    report.add("loadtest", {
        "app_id": s.app_id, "registered_meters": registered,
        "start_ts_ms": started.get("start", 0) * 1000,
        "aligned_wait_s": started.get("start", 0) - started.get("earliest", 0),
        "drained": drain_s is not None,
        "drain_s": round(drain_s, 2) if drain_s is not None else None,
        "drain_timeout_s": cfg.drain_timeout_s,
    })
    report.add("latency_window_1m", windows.section())
    report.add("latency_alert", alerts.section())
    report.add("latency_influx", influx.section())
    report.add("consumer_lag", lag.section())
    return report


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulators.loadtest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = LoadtestConfig()
    ap.add_argument("--households", type=int, default=d.households)
    ap.add_argument("--rate", type=float, default=d.rate_hz,
                    help="readings per second per household, <= 1 (default 1)")
    ap.add_argument("--duration", type=float, default=d.duration_s, help="seconds (default 60)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--signal-faults", type=float, default=d.signal_faults_per_day,
                    metavar="PER_DAY", help="signal faults per household and day (default 20)")
    ap.add_argument("--fault-kinds", default=",".join(d.signal_fault_kinds),
                    help="comma-separated signal fault kinds (default spike,counter_reset)")
    ap.add_argument("--influx-sample", type=int, default=d.influx_sample,
                    help="households polled in InfluxDB (default 5)")
    ap.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s,
                    help="longest wait for the lag to drain after the load (default 60 s)")
    ap.add_argument("--no-register", action="store_true", help="meters already registered")
    ap.add_argument("--no-align", action="store_true", help="start without waiting for a "
                    "minute boundary to come early in the run")
    ap.add_argument("--metrics-url", action="append", default=[],
                    help="worker /metrics endpoint (repeatable; default the scraped ports)")
    ap.add_argument("--start-worker", action="store_true",
                    help="start the default worker (app.devrun) and stop it afterwards")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def config_from_args(args: argparse.Namespace) -> LoadtestConfig:
    return LoadtestConfig(
        households=args.households, rate_hz=args.rate, duration_s=args.duration,
        seed=args.seed, signal_faults_per_day=args.signal_faults,
        signal_fault_kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        influx_sample=args.influx_sample, drain_timeout_s=args.drain_timeout,
        register=not args.no_register, align=not args.no_align,
        progress=not args.no_progress, metrics_urls=tuple(args.metrics_url))


async def _main(cfg: LoadtestConfig) -> Report:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(cfg, stop=stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    from app import devrun

    ours = args.start_worker and devrun.worker_pid() is None
    if args.start_worker:
        devrun.start_worker()
    try:
        report = asyncio.run(_main(cfg))
    finally:
        if ours:
            devrun.stop_worker()
    if args.json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        sys.stdout.write(report.to_table() + "\n")
    return 1 if report.sections["produce"]["produce_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load generator: N simulated households publishing raw readings at a paced rate.

    python -m simulators.loadgen --households 10000 --rate 1 --duration 60

Household ``h`` of ``N`` sends its reading of period ``k`` at ``start + (k + h/N) / rate``:
readings are spread evenly inside each period instead of arriving as one burst per second.
A loop on the monotonic clock sends every message that is due (a schedule, so a late tick
catches up instead of drifting), through :class:`simulators.sinks.KafkaSink` (aiokafka
``send`` with linger batching, acks counted by callback, flush at the end), keyed by meter id.
JSON meters go to ``settings.topic_raw_json``, Linky TIC meters to ``settings.topic_raw_tic``.

Readings are rendered per household in chunks (60 s by default, staggered across households so
rendering is spread over time) and serialised in bulk (:mod:`simulators.payloads`).
The run is bounded by ``--duration`` and ``--max-messages``; a live line on stderr shows rate,
produced, errors, in-flight and how far behind schedule the generator is; the final
:class:`simulators.report.Report` is printed as a table (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from app.settings import get_settings
from simulators.faults import SIGNAL_FAULTS, Fault, plan_faults
from simulators.household import HouseholdSimulator
from simulators.payloads import MessageFaults, chunk_payloads
from simulators.population import HouseholdSpec, make_population
from simulators.report import Report
from simulators.sinks import FileSink, KafkaSink, NullSink, Sink, compressions


@dataclass
class LoadgenConfig:
    households: int = 1000
    rate_hz: float = 1.0
    """Readings per second per household (at most 1: the simulator samples at 1 Hz)."""
    duration_s: float = 60.0
    max_messages: int | None = None
    seed: int = 0
    chunk_s: int = 60
    inject_faults: bool = False
    """Malformed payloads and duplicates at ``fault_rate``."""
    fault_rate: float = 0.001
    signal_faults_per_day: float = 0.0
    """Expected signal faults (offline, frozen, spike...) per household and day."""
    signal_fault_kinds: tuple[str, ...] = SIGNAL_FAULTS
    """Kinds the signal faults are drawn from."""
    truth_path: Path | None = None
    progress: bool = True
    tick_s: float = 0.01
    start_s: int | None = None
    """Epoch second of the first period; default: the next whole second."""
    start_at: Callable[[int], int] | None = None
    """Without ``start_s``: maps the earliest possible start second (after the warm-up) to the
    one used, e.g. to put a minute boundary early in the run (``simulators.loadtest``)."""
    topic_json: str = "meter.raw.json"
    topic_tic: str = "meter.raw.tic"

    @property
    def interval_s(self) -> int:
        if not 0 < self.rate_hz <= 1:
            raise ValueError("rate must be in (0, 1] readings/s per household")
        return max(1, round(1 / self.rate_hz))

    @property
    def periods(self) -> int:
        return max(1, math.ceil(self.duration_s / self.interval_s))

    @property
    def target_messages(self) -> int:
        total = self.households * self.periods
        return min(total, self.max_messages) if self.max_messages is not None else total


class HouseholdStream:
    """One household's payloads, rendered a chunk ahead of the schedule."""

    __slots__ = ("buffer", "chunk_periods", "first_periods", "interval", "key", "next_period",
                 "phase_ms", "sim", "spec", "start_s", "topic", "truth")

    def __init__(self, spec: HouseholdSpec, index: int, cfg: LoadgenConfig, start_s: int,
                 faults: list[Fault], collect_events: bool) -> None:
        self.spec = spec
        self.interval = cfg.interval_s
        self.chunk_periods = max(1, cfg.chunk_s // self.interval)
        self.first_periods = 1 + index % self.chunk_periods  # stagger chunk boundaries
        self.phase_ms = int(index * self.interval * 1000 / cfg.households)
        self.start_s = start_s
        self.sim = HouseholdSimulator(spec, faults, collect_events=collect_events)
        self.topic = cfg.topic_json if spec.tic_mode is None else cfg.topic_tic
        self.key = spec.meter_id.encode()
        self.next_period = 0
        self.buffer: dict[int, list[tuple[int, bytes]]] = {}
        self.truth: list[dict[str, Any]] = []

    def payloads(self, period: int) -> list[tuple[int, bytes]]:
        """``(ts_ms, payload)`` of period ``period`` (empty when the node is offline)."""
        while period >= self.next_period:
            self._render()
        return self.buffer.pop(period, [])

    def prime(self) -> None:
        """Render the first chunk now (before the clock starts)."""
        if self.next_period == 0:
            self._render()

    def _render(self) -> None:
        m = self.first_periods if self.next_period == 0 else self.chunk_periods
        t0 = self.start_s + self.next_period * self.interval
        chunk = self.sim.render(t0, m * self.interval)
        idx = np.arange(0, m * self.interval, self.interval)
        for i, ts, payload in chunk_payloads(chunk, idx, self.phase_ms):
            self.buffer.setdefault(self.next_period + i // self.interval, []).append((ts, payload))
        if chunk.events:
            self.truth.extend(chunk.events)
        self.next_period += m


@dataclass
class _Stats:
    behind: list[float] = field(default_factory=list)
    messages: int = 0
    duplicates: int = 0


ProgressHook = Callable[[], Mapping[str, Any]]


def _wall_s() -> float:
    return time.time()


async def run(cfg: LoadgenConfig, sink: Sink, *,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
              wall: Callable[[], float] = _wall_s,
              progress_hooks: list[ProgressHook] | None = None,
              stop: asyncio.Event | None = None,
              progress_stream: IO[str] | None = None) -> Report:
    """Generate, pace and send; returns the report. ``clock``/``sleep``/``wall`` are injectable."""
    out = progress_stream if progress_stream is not None else sys.stderr
    interval = cfg.interval_s
    n = cfg.households
    t_warm = clock()
    cpu0 = time.process_time()
    population = make_population(n, cfg.seed)
    if cfg.start_s is not None:
        start_s = cfg.start_s
    else:  # start once every household's first chunk is rendered: time a sample of them
        probe = population[: min(n, 50)]
        t_probe = clock()
        for i, spec in enumerate(probe):
            HouseholdStream(spec, i, cfg, math.ceil(wall()), [], False).prime()
        per_household = (clock() - t_probe) / max(len(probe), 1)
        start_s = math.ceil(wall() + 1.0 + 1.3 * per_household * n)
        if cfg.start_at is not None:
            start_s = max(start_s, cfg.start_at(start_s))
    collect = cfg.truth_path is not None
    fault_rng = np.random.default_rng([cfg.seed, 0xFA])
    signal_faults: list[Fault] = []
    streams: list[HouseholdStream] = []
    for i, spec in enumerate(population):
        faults = (plan_faults(spec, start_s, start_s + cfg.periods * interval, fault_rng,
                              cfg.signal_faults_per_day, cfg.signal_fault_kinds)
                  if cfg.signal_faults_per_day > 0 else [])
        signal_faults += faults
        streams.append(HouseholdStream(spec, i, cfg, start_s, faults, collect))
    for st in streams:  # render the first chunks before the clock starts
        st.prime()
    msg_faults = MessageFaults(cfg.fault_rate, cfg.seed, keep_truth=collect) \
        if cfg.inject_faults else None
    warmup = clock() - t_warm

    total = cfg.target_messages
    mono0 = clock() + max(0.0, start_s - wall())
    stats = _Stats()
    m = 0
    last_progress = clock()
    last_m = 0
    t_end_hard = cfg.duration_s + max(5.0, 0.25 * cfg.duration_s)
    stopped_early = False
    await sink.start()
    try:
        while m < total:
            if stop is not None and stop.is_set():
                stopped_early = True
                break
            now = clock() - mono0
            if now > t_end_hard:
                stopped_early = True
                break
            due = min(total, int(now * n / interval) + 1) if now >= 0 else 0
            if due <= m:
                await sleep(min(cfg.tick_s, max(0.0, m * interval / n - now)))
            else:
                stats.behind.append(max(0.0, now - m * interval / n))
                for j in range(m, due):
                    k, h = divmod(j, n)
                    st = streams[h]
                    for ts, payload in st.payloads(k):
                        if msg_faults is None:
                            await sink.send(st.topic, st.key, payload)
                        else:
                            for p in msg_faults.apply(st.spec, ts, payload):
                                await sink.send(st.topic, st.key, p)
                    if j & 511 == 511:
                        await sleep(0)
                m = due
                stats.messages = m
            t = clock()
            if cfg.progress and t - last_progress >= 1.0:
                _progress(out, now, m, (m - last_m) / (t - last_progress), n / interval, sink,
                          stats, progress_hooks)
                last_progress, last_m = t, m
        elapsed = clock() - mono0
        t_flush = clock()
        await sink.flush()
        flush_s = clock() - t_flush
    finally:
        await sink.stop()
    if cfg.progress:
        out.write("\n")
        out.flush()
    cpu = time.process_time() - cpu0

    truth_counts: dict[str, int] = {}
    for f in signal_faults:
        if f.start_ms < (start_s + elapsed) * 1000:
            truth_counts[f.kind] = truth_counts.get(f.kind, 0) + 1
    if cfg.truth_path is not None:
        _write_truth(cfg.truth_path, streams, signal_faults, msg_faults)

    behind = np.array(stats.behind or [0.0])
    n_json = sum(1 for s in population if s.tic_mode is None)
    report = Report("wattflow load generator")
    report.add("config", {
        "households": n, "json_meters": n_json,
        "tic_historique": sum(1 for s in population if s.tic_mode == "historique"),
        "tic_standard": sum(1 for s in population if s.tic_mode == "standard"),
        "rate_hz_per_household": 1 / interval, "target_rate_msg_s": n / interval,
        "duration_s": cfg.duration_s, "target_messages": total, "seed": cfg.seed,
        "start_ts_ms": start_s * 1000, "sink": type(sink).__name__,
        "topics": f"{cfg.topic_json}, {cfg.topic_tic}",
    })
    sent_rate = sink.sent / elapsed if elapsed > 0 else 0.0
    report.add("produce", {
        "readings_scheduled_sent": m, "messages_sent": sink.sent, "acked": sink.acked,
        "produce_errors": sink.errors, "error_kinds": dict(sink.error_kinds),
        "bytes": sink.bytes, "elapsed_s": round(elapsed, 3), "flush_s": round(flush_s, 3),
        "achieved_rate_msg_s": round(sent_rate, 1),
        "rate_vs_target": round(m / elapsed / (n / interval), 4) if elapsed > 0 else 0.0,
        "behind_schedule_p50_s": round(float(np.percentile(behind, 50)), 4),
        "behind_schedule_p99_s": round(float(np.percentile(behind, 99)), 4),
        "behind_schedule_max_s": round(float(behind.max()), 4),
        "warmup_s": round(warmup, 3), "cpu_s": round(cpu, 3),
        "cpu_per_wall": round(cpu / (elapsed + warmup + flush_s), 3)
        if elapsed + warmup + flush_s > 0 else 0.0,
        "stopped_early": stopped_early,
    })
    if msg_faults is not None or signal_faults:
        faults_section: dict[str, Any] = {}
        if msg_faults is not None:
            faults_section["fault_rate"] = cfg.fault_rate
            faults_section["malformed"] = msg_faults.counts.get("malformed", 0)
            faults_section["duplicates"] = msg_faults.counts.get("duplicate", 0)
            faults_section["malformed_by_variant"] = {
                k.split(".", 1)[1]: v for k, v in sorted(msg_faults.counts.items())
                if k.startswith("malformed.")}
        if signal_faults:
            faults_section["signal_faults"] = truth_counts
        if cfg.truth_path is not None:
            faults_section["truth_file"] = str(cfg.truth_path)
        report.add("faults", faults_section)
    return report


def _progress(out: IO[str], now: float, m: int, rate: float, target: float, sink: Sink,
              stats: _Stats, hooks: list[ProgressHook] | None) -> None:
    behind = stats.behind[-1] if stats.behind else 0.0
    extra = ""
    for hook in hooks or ():
        extra += "".join(f"  {k} {v}" for k, v in hook().items())
    line = (f"[{now:7.1f}s] produced {sink.sent:>10,}  rate {rate:>9,.0f}/s "
            f"(target {target:,.0f}/s)  errors {sink.errors:,}  in-flight {sink.in_flight:,}  "
            f"behind {behind:.2f}s{extra}")
    if out.isatty():
        out.write("\r" + line + "\x1b[K")
    else:
        out.write(line + "\n")
    out.flush()


def _write_truth(path: Path, streams: list[HouseholdStream], faults: list[Fault],
                 msg_faults: MessageFaults | None) -> None:
    with path.open("wb") as fh:
        for st in streams:
            for ev in st.truth:
                if ev.get("kind") == "appliance":
                    fh.write(orjson.dumps(ev) + b"\n")
        for f in faults:
            fh.write(orjson.dumps(f.truth()) + b"\n")
        if msg_faults is not None:
            for rec in msg_faults.truth:
                fh.write(orjson.dumps(rec) + b"\n")


def make_sink(kind: str, *, out: Path | None = None, compression: str = "none",
              linger_ms: int = 20, batch_size: int = 262_144, acks: str = "1") -> Sink:
    if kind == "null":
        return NullSink()
    if kind == "file":
        if out is None:
            raise ValueError("--sink file needs --out")
        return FileSink(out)
    settings = get_settings()
    return KafkaSink(settings.kafka_servers, linger_ms=linger_ms, max_batch_size=batch_size,
                     compression=compression, acks="all" if acks == "all" else int(acks))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulators.loadgen", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1.0,
                    help="readings per second per household, <= 1 (default 1)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument("--max-messages", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=60, help="seconds rendered per household at once")
    ap.add_argument("--inject-faults", action="store_true",
                    help="send malformed payloads and duplicates at --fault-rate")
    ap.add_argument("--fault-rate", type=float, default=0.001)
    ap.add_argument("--signal-faults", type=float, default=0.0, metavar="PER_DAY",
                    help="expected signal faults per household and day (offline, spike...)")
    ap.add_argument("--truth", type=Path, default=None, help="write ground truth JSONL here")
    ap.add_argument("--sink", choices=("kafka", "null", "file"), default="kafka")
    ap.add_argument("--out", type=Path, default=None, help="JSONL file for --sink file")
    ap.add_argument("--compression", choices=compressions(), default="none")
    ap.add_argument("--linger-ms", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=262_144)
    ap.add_argument("--acks", choices=("0", "1", "all"), default="1")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def config_from_args(args: argparse.Namespace) -> LoadgenConfig:
    settings = get_settings()
    return LoadgenConfig(
        households=args.households, rate_hz=args.rate, duration_s=args.duration,
        max_messages=args.max_messages, seed=args.seed, chunk_s=args.chunk,
        inject_faults=args.inject_faults, fault_rate=args.fault_rate,
        signal_faults_per_day=args.signal_faults, truth_path=args.truth,
        progress=not args.no_progress, topic_json=settings.topic_raw_json,
        topic_tic=settings.topic_raw_tic,
    )


async def _main(args: argparse.Namespace) -> Report:
    cfg = config_from_args(args)
    sink = make_sink(args.sink, out=args.out, compression=args.compression,
                     linger_ms=args.linger_ms, batch_size=args.batch_size, acks=args.acks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(cfg, sink, stop=stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = asyncio.run(_main(args))
    if args.json:
        sys.stdout.write(report.to_json().decode() + "\n")
    else:
        sys.stdout.write(report.to_table() + "\n")
    return 1 if report.sections["produce"]["produce_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

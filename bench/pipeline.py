"""The whole pipeline in real worker subprocesses against the consume ceiling, side by side.

One pre-filled raw JSON topic (simulated households, 1 Hz, JSON meters only, keyed by meter
id) is read by: the bare consumer of :mod:`bench.consume` (the ceiling), then by isolated
pipelines (own app id, consumer group, intermediate topics, changelogs, InfluxDB database):
one ``-L uvloop`` worker, one ``-L aio`` worker, two ``-L uvloop`` workers. Each pipeline is
measured from the worker's first consumed record until every reading was applied to windows
and written to InfluxDB (counters of the workers' /metrics, polled every 0.1 s); CPU is
utime + stime of the worker processes (/proc/<pid>/stat) over the same interval.

Figures (docs/bench.md):

``consume_ceiling``      see :mod:`bench.consume`.
``pipeline_vs_consume``  pipeline readings per worker CPU-second / ceiling readings per
                         CPU-second (target >= 0.15); wall-clock rates in ``detail``.
``pipeline_wall``        the same per wall-second (what one worker sustains on this machine).
``changelog_per_reading``  table assignments (= changelog messages, ``wattflow_table_writes_
                         total``) per reading; baseline 1.0 = one per reading (state written
                         per reading); the changelog topics' end offsets are in ``detail``.
``uvloop_vs_asyncio``    pipeline readings per CPU-second with ``-L uvloop`` / with ``-L aio``.
``scaling``              readings per wall-second of two workers / of one worker (4 partitions,
                         2 cores shared with everything else).

    python -m bench.pipeline [--quick]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import consume
from bench.harness import (
    Isolation,
    MachineCpu,
    Prefill,
    Progress,
    Worker,
    bootstrap,
    code_fingerprint,
    end_offsets,
    list_topics,
    log,
    metric_sum,
    new_run_id,
    prefill,
    register_population,
    wait_checkpoint,
    wait_processed,
)

SEED = 1
CHANGELOG_NAIVE = 1.0


def sizes(quick: bool) -> tuple[int, int]:
    """(households, seconds) of the prefill: 360 k readings quick, 960 k full (a worker
    handles ~40 k readings/s: the run must last long enough to dwarf start-up effects)."""
    return (4000, 90) if quick else (8000, 120)


@dataclass
class PipelineRun:
    stage: str
    loop: str
    workers: int
    readings: int
    """Distinct readings of the input (records replayed after a rebalance not counted)."""
    valid: float
    dead: float
    progress: Progress
    startup_s: float
    table_writes: float
    changelog_messages: int
    influx_paused_s: float
    windows_emitted: float
    stage_used: str = "influx"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_s(self) -> float:
        return self.progress.wall_s(self.stage_used) or float("nan")

    @property
    def cpu_s(self) -> float:
        return self.progress.cpu_s(self.stage_used) or float("nan")

    @property
    def per_cpu_s(self) -> float:
        return self.readings / self.cpu_s

    @property
    def per_wall_s(self) -> float:
        return self.readings / self.wall_s

    def summary(self) -> dict[str, Any]:
        p = self.progress
        return {
            "loop": self.loop, "workers": self.workers, "readings": self.readings,
            "valid": self.valid, "dead_lettered": self.dead,
            "measured_until": self.stage_used,
            "wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
            "per_cpu_s": round(self.per_cpu_s, 1), "per_wall_s": round(self.per_wall_s, 1),
            "cpu_per_wall": round(self.cpu_s / self.wall_s, 3),
            "windows_stage_wall_s": _r(p.wall_s("windows")),
            "windows_stage_cpu_s": _r(p.cpu_s("windows")),
            "influx_stage_wall_s": _r(p.wall_s("influx")),
            "influx_stage_cpu_s": _r(p.cpu_s("influx")),
            "startup_s": round(self.startup_s, 2),
            "table_writes": self.table_writes, "changelog_messages": self.changelog_messages,
            "influx_paused_s": round(self.influx_paused_s, 2),
            "windows_emitted": self.windows_emitted, "timed_out": p.timed_out, **self.extra,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run_pipeline(run_id: str, stage: str, pf: Prefill, *, loop: str = "uvloop",
                 workers: int = 1, timeout: float = 240.0,
                 await_checkpoint: bool = False) -> PipelineRun:
    """One isolated pipeline over the pre-filled raw topic; topics and database removed after.
    ``await_checkpoint``: after the readings are processed, also wait for the next periodic
    checkpoint (``checkpoint_interval_s``), so table writes cover every processed reading."""
    import asyncio

    iso = Isolation.for_run(run_id, stage)
    ws: list[Worker] = []
    try:
        iso.setup()
        code = code_fingerprint()
        t0 = time.monotonic()
        ws = [Worker(iso, loop=loop, name=f"w{i}") for i in range(workers)]
        for w in ws:
            w.start()
        for w in ws:
            w.wait_ready()
        startup = time.monotonic() - t0
        log(f"{stage}: {workers} worker(s) -L {loop} up in {startup:.1f} s; "
            f"{pf.readings:,} readings to go")
        machine = MachineCpu()
        progress = wait_processed(ws, pf.readings, influx=True, timeout=timeout, stall_s=20)
        busy = machine.busy_share()
        s = progress.samples
        if await_checkpoint:
            interval = iso.settings().checkpoint_interval_s
            s = wait_checkpoint(ws, metric_sum(s, "wattflow_table_writes_total"),
                                timeout=interval + 8)
        dead = metric_sum(s, "wattflow_readings_invalid_total")
        changelogs = asyncio.run(list_topics(bootstrap(), f"{iso.prefix}-"))
        changelogs = [t for t in changelogs if t.endswith("-changelog")]
        ends = asyncio.run(end_offsets(bootstrap(), changelogs)) if changelogs else {}
        used = "influx" if progress.t_influx is not None else "windows"
        run = PipelineRun(
            stage, loop, workers, pf.readings, progress.valid, dead, progress, startup,
            metric_sum(s, "wattflow_table_writes_total"), sum(ends.values()),
            metric_sum(s, "wattflow_influx_paused_seconds_total"),
            metric_sum(s, "wattflow_windows_emitted_total"), used,
            {"changelog_topics": ends, "machine_cpu_busy": round(busy, 3),
             "raw_records_consumed": progress.readings, "code": code,
             "ingest_batches": metric_sum(s, "wattflow_ingest_batch_records_count")})
        if progress.t_windows is None:
            raise RuntimeError(f"{stage}: pipeline did not finish: {run.summary()}")
        log(f"{stage}: {run.per_cpu_s:,.0f} readings/CPU-s, {run.per_wall_s:,.0f} readings/wall-s"
            f" ({run.readings:,} in {run.wall_s:.1f} s, until {used}; dead {dead:.0f}; "
            f"{progress.readings:,} raw records consumed)")
        return run
    finally:
        for w in ws:
            rc = w.stop()
            if rc not in (0, None, -15):
                log(f"{stage}: worker {w.name} exit code {rc}; log tail: {w.tail(800)}")
        iso.teardown()


def _fig(value: float, baseline: float, unit: str, note: str, **detail: Any) -> dict[str, Any]:
    return {"value": value, "baseline": baseline,
            "ratio": value / baseline if baseline else float("nan"), "unit": unit,
            "note": note, "detail": detail}


def figures(ceiling: dict[str, Any], uv: PipelineRun, aio: PipelineRun | None,
            two: PipelineRun | None, pf: Prefill) -> dict[str, dict[str, Any]]:
    """The figures of this module from measured runs (pure: unit tested)."""
    out: dict[str, dict[str, Any]] = {"consume_ceiling": ceiling}

    def same_code(*runs: PipelineRun | None) -> str:
        codes = {r.extra.get("code") for r in runs if r is not None}
        return "" if len(codes) <= 1 else (
            " WARNING: the code under agents/ or app/ changed between these runs "
            f"({', '.join(sorted(str(c) for c in codes))}): not comparable")
    base_cpu = ceiling["value"]
    base_wall = ceiling.get("detail", {}).get("per_wall_s", float("nan"))
    input_note = (f"{pf.readings:,} readings of {pf.households:,} JSON households x "
                  f"{pf.seconds} s (1 Hz) pre-filled")
    out["pipeline_vs_consume"] = _fig(
        uv.per_cpu_s, base_cpu, "readings/CPU-s",
        f"one -L uvloop worker, ingest+windows+InfluxDB until every reading was stored "
        f"({uv.stage_used}); {uv.per_wall_s:,.0f} readings/wall-s at "
        f"{uv.cpu_s / uv.wall_s:.2f} CPU/wall; target ratio >= 0.15; {input_note}",
        run=uv.summary(), per_wall_s=uv.per_wall_s)
    out["pipeline_wall"] = _fig(
        uv.per_wall_s, base_wall, "readings/wall-s",
        "as pipeline_vs_consume, per wall-second (the maximum rate the latency figure uses)")
    n = max(uv.readings, 1)
    out["changelog_per_reading"] = _fig(
        uv.table_writes / n, CHANGELOG_NAIVE, "changelog msgs/reading",
        f"wattflow_table_writes_total / readings of the pipeline run, counted after the next "
        f"periodic checkpoint (catch-up: many readings per household per checkpoint); "
        f"changelog topics' end offsets: "
        f"{uv.changelog_messages / n:.3f}/reading; baseline 1 = one state write per reading",
        table_writes=uv.table_writes, changelog_messages=uv.changelog_messages,
        changelog_topics=uv.extra.get("changelog_topics"))
    if aio is not None:
        out["uvloop_vs_asyncio"] = _fig(
            uv.per_cpu_s, aio.per_cpu_s, "readings/CPU-s",
            f"same pipeline run with -L uvloop vs -L aio; per wall-s {uv.per_wall_s:,.0f} vs "
            f"{aio.per_wall_s:,.0f}{same_code(uv, aio)}",
            uvloop=uv.summary(), aio=aio.summary())
    if two is not None:
        out["scaling"] = _fig(
            two.per_wall_s, uv.per_wall_s, "readings/wall-s",
            f"2 workers vs 1 (-L uvloop, 4 partitions, same topic, 2 cores shared with the "
            f"broker, InfluxDB and other users); per CPU-s {two.per_cpu_s:,.0f} vs "
            f"{uv.per_cpu_s:,.0f}; two.cpu/wall {two.cpu_s / two.wall_s:.2f}{same_code(uv, two)}",
            two=two.summary(), one=uv.summary())
    return out


def prepare(quick: bool, run_id: str) -> tuple[Isolation, Prefill]:
    households, seconds = sizes(quick)
    register_population(households, SEED)
    raw = Isolation.for_run(run_id, "raw")
    raw.setup()  # creates the shared raw topics (and an unused database, dropped below)
    pf = prefill(raw.raw_json, households, seconds, SEED, raw.partitions)
    log(f"prefilled {pf.readings:,} readings ({pf.bytes / 1e6:.1f} MB) in {pf.produce_s:.1f} s "
        f"(render {pf.render_s:.1f} s)")
    return raw, pf


def run(quick: bool = False, *, only: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """consume_ceiling, pipeline_vs_consume, pipeline_wall, changelog_per_reading,
    uvloop_vs_asyncio, scaling (``only`` skips the aio / two-worker runs when not wanted)."""
    want = only or {"uvloop_vs_asyncio", "scaling"}
    reps = 1 if quick else 3
    run_id = new_run_id()
    raw, pf = prepare(quick, run_id)
    try:
        ceiling = consume.measure(pf.topic, pf.readings, pf.payloads, reps=3 if quick else 5)
        log(f"consume ceiling: {ceiling['value']:,.0f} readings/CPU-s")
        runs: dict[str, list[PipelineRun]] = {"uvloop": [], "aio": [], "two": []}
        for i in range(reps):  # interleaved, so drift of a shared machine hits every config
            runs["uvloop"].append(run_pipeline(run_id, f"uvloop{i}", pf, loop="uvloop",
                                               await_checkpoint=True))
            if "uvloop_vs_asyncio" in want:
                runs["aio"].append(run_pipeline(run_id, f"aio{i}", pf, loop="aio"))
            if "scaling" in want:
                runs["two"].append(run_pipeline(run_id, f"two{i}", pf, loop="uvloop",
                                                workers=2))
        uv = median_run(runs["uvloop"])
        aio = median_run(runs["aio"]) if runs["aio"] else None
        two = median_run(runs["two"]) if runs["two"] else None
        out = figures(ceiling, uv, aio, two, pf)
        if reps > 1:
            for name, fig in out.items():
                if name == "consume_ceiling":
                    continue
                fig.setdefault("detail", {})["repetitions"] = {
                    k: [r.summary() for r in v] for k, v in runs.items() if v}
                fig["note"] += f" (median run of {reps}, interleaved)"
        return out
    finally:
        raw.teardown(raw_too=True)


def median_run(runs: list[PipelineRun]) -> PipelineRun:
    """The run with the median readings per CPU-second (the lower middle one for an even
    count)."""
    ordered = sorted(runs, key=lambda r: r.per_cpu_s)
    return ordered[(len(ordered) - 1) // 2]


def main() -> None:
    from bench.report import render_table

    print(render_table(run(quick="--quick" in sys.argv)))


if __name__ == "__main__":
    main()

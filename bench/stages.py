"""Each stage alone through a real worker, against a bare consumer of the same topic.

    python -m bench.stages [--quick]

1. A raw JSON topic is pre-filled (simulated households, 1 Hz). A worker that runs only the
   ingest stage (``WATTFLOW_AGENTS=ingest``) turns it into ``ReadingBatch`` messages on a
   readings topic: ``ingest_stage_vs_consume`` is its readings per CPU-second against the bare
   aiokafka consume + ``orjson.loads`` rate of the same raw topic (issue 3).
2. That readings topic is then consumed, in turn, by workers that run only the windows stage,
   only the NILM stage and only the anomaly stage (each its own app and consumer group):
   ``windows_vs_consume`` (issue 4, target >= 0.20), ``nilm_stage_vs_consume`` and
   ``anomaly_stage_vs_consume`` are their readings per CPU-second against a bare aiokafka
   consumer that reads the same readings topic and decodes every ``ReadingBatch`` (msgspec).

Rates are per CPU-second of the measured process (``/proc/<pid>/stat`` for workers,
``time.process_time`` in-process for the bare consumer), and per wall-second in the notes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import (
    Isolation,
    Worker,
    assign_from_start,
    log,
    metric_sum,
    new_run_id,
    prefill,
    register_population,
)

SEED = 1


def sizes(quick: bool) -> tuple[int, int]:
    return (4000, 120) if quick else (8000, 180)


async def _consume_batches(topic: str, expected_readings: int, timeout_s: float = 120.0
                           ) -> tuple[int, float, float]:
    """Read the readings topic from the start, decoding each ReadingBatch, until
    ``expected_readings`` readings were seen: (readings, cpu_s, wall_s)."""
    from aiokafka import AIOKafkaConsumer

    from app.domain.reading import decode_batch
    from bench.harness import bootstrap

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap(), group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 * 1_048_576)
    await c.start()
    try:
        await assign_from_start(c, topic)
        n = 0
        t_end = time.monotonic() + timeout_s
        cpu0, t0 = time.process_time(), time.perf_counter()
        while n < expected_readings and time.monotonic() < t_end:
            batches = await c.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for m in records:
                    n += len(decode_batch(m.value))
        return n, time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        await c.stop()


async def _copy_topic(src: str, dst: str, expected_messages: int) -> int:
    """Copy every message of ``src`` to the same partition of ``dst`` (keys, values and
    timestamps kept), so a worker that is already up sees the whole load arrive."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from bench.harness import bootstrap

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap(), group_id=None,
                         enable_auto_commit=False, max_partition_fetch_bytes=8 * 1_048_576)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap(), max_batch_size=1_000_000,
                         linger_ms=5)
    await c.start()
    await p.start()
    try:
        await assign_from_start(c, src)
        n = 0
        futures = []
        t_end = time.monotonic() + 120
        while n < expected_messages and time.monotonic() < t_end:
            batches = await c.getmany(timeout_ms=500, max_records=500)
            for tp, records in batches.items():
                for m in records:
                    futures.append(await p.send(dst, m.value, key=m.key, partition=tp.partition,
                                                timestamp_ms=m.timestamp))
                    n += 1
        await asyncio.gather(*futures)
        return n
    finally:
        await p.stop()
        await c.stop()


async def _count_messages(topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    from bench.harness import bootstrap

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap(), group_id=None)
    await c.start()
    try:
        tps = await assign_from_start(c, topic, seek=False)
        ends = await c.end_offsets(tps)
        begins = await c.beginning_offsets(tps)
        return sum(ends[tp] - begins[tp] for tp in tps)
    finally:
        await c.stop()


def _wait_counter(w: Worker, name: str, expected: float, timeout: float = 240.0,
                  quiet_s: float = 1.0, **labels: str) -> tuple[float, float, float]:
    """Poll until the counter reaches ``expected`` and stops moving: (value, cpu_s, wall_s)
    between the first movement and the last."""
    t_end = time.monotonic() + timeout
    first: tuple[float, float] | None = None
    last_at = (time.monotonic(), w.cpu())
    value = -1.0
    while time.monotonic() < t_end:
        m = w.metrics()
        v = metric_sum(m, name, **labels) if m else 0.0
        now, cpu = time.monotonic(), w.cpu()
        if v > 0 and first is None:
            first = (now, cpu)
        if v != value:
            value, last_at = v, (now, cpu)
        if v >= expected and now - last_at[0] >= quiet_s and first is not None:
            return v, last_at[1] - first[1], last_at[0] - first[0]
        if not w.alive():
            raise RuntimeError(f"worker exited: {w.tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{name} reached {value} of {expected} in {timeout} s: {w.tail()}")


def _figure(value: float, baseline: float, note: str) -> dict[str, Any]:
    return {"value": round(value, 1), "baseline": round(baseline, 1),
            "ratio": round(value / baseline, 3) if baseline else None,
            "unit": "readings/CPU-s", "note": note}


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    from bench import consume

    run_id = new_run_id()
    households, seconds = sizes(quick)
    ing = Isolation.for_run(run_id, "ingest")
    isolations = [ing]
    workers: list[Worker] = []
    out: dict[str, dict[str, Any]] = {}
    try:
        ing.setup()
        register_population(households, SEED)
        pf = prefill(ing.raw_json, households, seconds, SEED, ing.partitions)
        log(f"stages: prefilled {pf.readings:,} readings")
        raw_ceiling = consume.measure(ing.raw_json, pf.readings, pf.payloads, reps=1)

        w = Worker(ing, name="ingest", extra_env={"WATTFLOW_AGENTS": "ingest"})
        workers.append(w)
        w.start()
        w.wait_ready()
        _, cpu, wall = _wait_counter(w, "wattflow_raw_records_total", pf.readings)
        valid = metric_sum(w.metrics() or {}, "wattflow_readings_valid_total")
        w.stop()
        out["ingest_stage_vs_consume"] = _figure(
            pf.readings / cpu, raw_ceiling["value"],
            f"worker running only the ingest stage: {pf.readings:,} raw JSON records "
            f"({households:,} households x {seconds} s) in {cpu:.2f} CPU-s / {wall:.2f} s; "
            f"baseline: bare aiokafka consume + orjson.loads of the same topic")

        readings_topic = ing.settings().topic_readings
        messages = asyncio.run(_count_messages(readings_topic))
        n, bcpu, bwall = asyncio.run(_consume_batches(readings_topic, int(valid)))
        if n < valid:
            raise RuntimeError(f"bare consumer read {n} of {valid:.0f} readings")
        bare = n / bcpu
        log(f"stages: bare readings consume {bare:,.0f} readings/CPU-s")
        for stage, key in (("windows", "windows_vs_consume"), ("nilm", "nilm_stage_vs_consume"),
                           ("anomaly", "anomaly_stage_vs_consume")):
            iso = Isolation.for_run(run_id, stage)
            isolations.append(iso)
            iso.setup()  # its own (empty) readings topic: the load arrives once it is up
            ws = Worker(iso, name=stage, extra_env={"WATTFLOW_AGENTS": stage})
            workers.append(ws)
            ws.start()
            ws.wait_ready()
            time.sleep(1.0)  # partitions assigned
            copied = asyncio.run(_copy_topic(readings_topic, iso.settings().topic_readings,
                                             messages))
            if copied < messages:
                raise RuntimeError(f"copied {copied} of {messages} readings messages")
            _, cpu, wall = _wait_counter(ws, "wattflow_stage_readings_total", valid,
                                         stage=stage)
            ws.stop()
            out[key] = _figure(
                valid / cpu, bare,
                f"worker running only the {stage} stage over {valid:,.0f} readings in "
                f"ReadingBatch messages: {cpu:.2f} CPU-s / {wall:.2f} s; baseline: bare "
                f"aiokafka consume + msgspec decode of the same topic ({bwall:.2f} s)"
                + ("; target ratio >= 0.20" if stage == "windows" else ""))
            log(f"stages: {stage} {valid / cpu:,.0f} readings/CPU-s")
    finally:
        for worker in workers:
            if worker.alive():
                worker.stop()
        for iso in reversed(isolations):
            iso.teardown(raw_too=iso is ing)
    return out


def main() -> None:
    import sys

    from bench.report import render_table

    print(render_table(run(quick="--quick" in sys.argv)))


if __name__ == "__main__":
    main()

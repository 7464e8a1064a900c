"""The consume ceiling: how fast can one Python process read the raw topic at all?

Figure (docs/CONTRACTS.md "Bench modules", docs/bench.md):

``consume_ceiling``
    A bare aiokafka consumer (no group, every partition assigned, from the beginning, default
    fetch sizes, ``getmany``) that ``orjson.loads`` each value of a pre-filled raw JSON topic.
    ``value`` = readings per CPU-second of this process (``time.process_time``, every thread)
    from the first fetch to the last record; ``baseline`` = readings per CPU-second of
    ``orjson.loads`` over the same payloads already in memory (no Kafka); ``ratio`` =
    value / baseline, the share of bare parsing speed left once the Kafka client is in the
    loop. Wall-clock rates are in ``detail``. Median of the repetitions.

This is the denominator of ``pipeline_vs_consume`` (:mod:`bench.pipeline`).

    python -m bench.consume [--quick]     # prefills its own isolated topic, then deletes it
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from bench.harness import Isolation, assign_from_start, bootstrap, log, new_run_id, prefill


@dataclass
class ConsumeRun:
    readings: int
    bytes: int
    wall_s: float
    cpu_s: float

    @property
    def per_cpu_s(self) -> float:
        return self.readings / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def per_wall_s(self) -> float:
        return self.readings / self.wall_s if self.wall_s > 0 else float("nan")


async def consume_all(servers: str, topic: str, expected: int, timeout_s: float = 120.0
                      ) -> ConsumeRun:
    """Read ``expected`` records of ``topic`` from the beginning, ``orjson.loads`` each."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest")
    await c.start()
    try:
        await assign_from_start(c, topic)
        loads = orjson.loads
        n = nbytes = 0
        t_end = time.monotonic() + timeout_s
        cpu0, t0 = time.process_time(), time.perf_counter()
        while n < expected and time.monotonic() < t_end:
            batches = await c.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for m in records:
                    loads(m.value)
                    nbytes += len(m.value)
                n += len(records)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        return ConsumeRun(n, nbytes, wall, cpu)
    finally:
        await c.stop()


def loads_only(payloads: list[bytes]) -> tuple[float, float]:
    """(readings per CPU-second, per wall-second) of ``orjson.loads`` over the payloads."""
    loads = orjson.loads
    cpu0, t0 = time.process_time(), time.perf_counter()
    for p in payloads:
        loads(p)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return len(payloads) / max(cpu, 1e-9), len(payloads) / max(wall, 1e-9)


def measure(topic: str, expected: int, payloads: list[bytes], reps: int = 3
            ) -> dict[str, Any]:
    """The ``consume_ceiling`` figure over an already filled topic."""
    servers = bootstrap()
    runs: list[ConsumeRun] = []
    bases: list[tuple[float, float]] = []
    for _ in range(reps):
        r = asyncio.run(consume_all(servers, topic, expected))
        if r.readings < expected:
            raise RuntimeError(f"consume ceiling: read {r.readings} of {expected} records")
        runs.append(r)
        bases.append(loads_only(payloads))
    value = statistics.median(r.per_cpu_s for r in runs)
    baseline = statistics.median(b[0] for b in bases)
    wall = statistics.median(r.per_wall_s for r in runs)
    return {
        "value": value, "baseline": baseline, "ratio": value / baseline,
        "unit": "readings/CPU-s",
        "note": (f"bare aiokafka getmany + orjson.loads of {expected:,} raw JSON records "
                 f"(~{runs[0].bytes // max(runs[0].readings, 1)} B) from a pre-filled topic, "
                 f"median of {reps}; {wall:,.0f} readings/wall-s; baseline = orjson.loads of "
                 f"the same bytes in memory"),
        "detail": {"per_wall_s": wall,
                   "runs": [{"readings": r.readings, "wall_s": round(r.wall_s, 4),
                             "cpu_s": round(r.cpu_s, 4)} for r in runs],
                   "loads_only_per_wall_s": statistics.median(b[1] for b in bases)},
    }


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    households, seconds = (2000, 45) if quick else (4000, 90)
    iso = Isolation.for_run(new_run_id(), "consume")
    try:
        iso.setup()
        pf = prefill(iso.raw_json, households, seconds, seed=1, partitions=iso.partitions)
        log(f"prefilled {pf.readings:,} readings in {pf.produce_s:.1f} s")
        return {"consume_ceiling": measure(pf.topic, pf.readings, pf.payloads)}
    finally:
        iso.teardown(raw_too=True)


def main() -> None:
    from bench.report import render_table

    print(render_table(run(quick="--quick" in sys.argv)))


if __name__ == "__main__":
    main()

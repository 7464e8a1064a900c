"""Drive a worker with the load generator, its event time aligned on a minute boundary.

    python -m bench.drive --households 4000 --duration 36 [--lead-s 3] [--seed 1]

Runs :func:`simulators.loadgen.run` (Kafka sink, topics from the ``WATTFLOW_*`` environment)
at 1 reading/s per household and prints one JSON line: the loadgen report plus the schedule
the latency figure needs to know when each reading was sent.

Why the alignment: a 1-minute window closes only when its household's first reading at or
after ``end + grace`` (30 s) arrives, so a run must span a minute boundary plus the grace.
Instead of waiting up to a minute for the wall clock, the generator's event time is the wall
clock shifted into the recent past (``shift_ms`` < 0; like meters whose clocks lag a little,
which the pipeline tolerates: it runs on event time) so that the first reading is ``lead_s``
seconds before a minute boundary. The generator sends the reading stamped ``ts`` at wall
time ``ts - shift_ms``; :mod:`bench.latency` converts back with the printed ``shift_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

import orjson

from app.settings import get_settings
from simulators.loadgen import LoadgenConfig, make_sink, run


class ShiftedWall:
    """A wall clock anchored at its first call: it then reads ``anchor_s`` and runs at the
    speed of ``time.time`` (``shift_s`` = anchor - real time at that call)."""

    def __init__(self, anchor_s: float, real: Callable[[], float] = time.time) -> None:
        self.anchor_s = anchor_s
        self.real = real
        self.shift_s: float | None = None

    def __call__(self) -> float:
        now = self.real()
        if self.shift_s is None:
            self.shift_s = self.anchor_s - now
        return now + self.shift_s


def aligned_past_start(now_s: float, lead_s: int, min_past_s: float = 2.0) -> int:
    """The latest epoch second at least ``min_past_s`` in the past that is ``lead_s`` seconds
    before a minute boundary."""
    latest = int(now_s - min_past_s)
    return (latest + lead_s) // 60 * 60 - lead_s


async def drive(households: int, duration_s: float, seed: int, lead_s: int,
                resets_per_day: float = 0.0) -> dict[str, object]:
    """``resets_per_day``: energy-counter resets injected per household and day (each opens a
    ``counter_backwards`` alert at once: what the reading -> alert latency is measured on)."""
    s = get_settings()
    start_s = aligned_past_start(time.time(), lead_s)
    cfg = LoadgenConfig(households=households, rate_hz=1.0, duration_s=duration_s, seed=seed,
                        progress=False, start_s=start_s, topic_json=s.topic_raw_json,
                        topic_tic=s.topic_raw_tic, signal_faults_per_day=resets_per_day,
                        signal_fault_kinds=("counter_reset",))
    wall = ShiftedWall(start_s - 0.2)  # first call is just before sending starts
    report = await run(cfg, make_sink("kafka"), wall=wall)
    t_end = time.time()
    return {"start_s": start_s, "shift_ms": round((wall.shift_s or 0.0) * 1000, 3),
            "households": households, "interval_s": cfg.interval_s, "seed": seed,
            "duration_s": duration_s, "end_wall_s": t_end,
            "report": orjson.loads(report.to_json())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.drive", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lead-s", type=int, default=3)
    ap.add_argument("--resets-per-day", type=float, default=0.0,
                    help="counter resets injected per household and day (alerts)")
    a = ap.parse_args(argv)
    out = asyncio.run(drive(a.households, a.duration, a.seed, a.lead_s, a.resets_per_day))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

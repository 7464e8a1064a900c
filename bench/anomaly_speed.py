"""Cost of the anomaly detector in the agent's regime: many households, small calls.

In production the agent calls ``step`` once per household per batch. At 1 reading/s per
household and a batch every 0.5-1 s, a call carries 1 to 5 readings, so the cost per *call*
matters as much as the cost per reading. This bench replays 1000 households x 10 minutes of
1 Hz readings (with energy counter, voltage where the simulated meter has it, and Kafka
receive times) through ``step`` in calls of 1, 5 and 60 readings per household, interleaved
across households as the agent does, and times ``tick`` per household.

Every household starts from a warm state (8 days of 1-minute history: learned profile, event
rates, base load), so the cost includes what a long-running household carries. The three
batchings must give identical alerts and final states.

``python -m bench.anomaly_speed [--quick]``; ``run(quick)`` returns ``anomaly_step_rate``
(readings/s per core of ``step`` in calls of 5 readings).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from app.domain.anomaly import AlertRecord, AnomalyParams, step, tick
from app.domain.anomaly.state import DetectorState
from app.domain.reading import Reading
from app.domain.registry import MeterInfo
from simulators.anomalies import DAY_MS, HOUR_MS, T0_MS, clean_population

CALL_SIZES = (1, 5, 60)
HEADLINE = 5
BASELINE_RATE = 58_000.0
"""readings/s per core of ``step`` in calls of 5 before the small-call work (commit 266bdb8,
this bench, 2 shared cores); the ratio is the speed-up against it."""
WARM_DAYS = 8
N_TEMPLATES = 8


@dataclass
class Household:
    info: MeterInfo
    state: DetectorState
    readings: list[Reading]
    received: list[int]


def _warm_states(params: AnomalyParams) -> list[tuple[MeterInfo, DetectorState, float]]:
    """A few households fed 8 days of 1-minute history in 1-hour batches."""
    out = []
    for hh in clean_population(seed=3, n=N_TEMPLATES, days=WARM_DAYS, step_s=60):
        state: DetectorState | None = None
        order = np.argsort(hh.ts_ms, kind="stable")
        ts, p = hh.ts_ms[order].tolist(), hh.power_w[order].tolist()
        e, v = hh.energy_wh[order].tolist(), hh.voltage_v[order].tolist()
        rec = hh.received_ms[order].tolist()
        i = 0
        while i < len(ts):
            j = i
            while j < len(ts) and ts[j] // HOUR_MS == ts[i] // HOUR_MS:
                j += 1
            batch = [
                Reading(hh.household_id, hh.meter_id, ts[k], p[k], e[k], "",
                        None if v[k] != v[k] else v[k])
                for k in range(i, j)
            ]  # fmt: skip
            state, _ = step(state, batch, params, hh.info, rec[i:j])
            i = j
        assert state is not None
        out.append((hh.info, state, float(e[-1])))
    return out


def households(n: int, seconds: int, params: AnomalyParams) -> list[Household]:
    """``n`` households (warm states cloned under new ids) with ``seconds`` of 1 Hz readings
    starting right after the warm-up."""
    warm = _warm_states(params)
    src = clean_population(seed=5, n=N_TEMPLATES, days=1, step_s=1)
    start = T0_MS + WARM_DAYS * DAY_MS
    out = []
    for h in range(n):
        info0, st0, e0 = warm[h % N_TEMPLATES]
        sim = src[h % N_TEMPLATES]
        hid, mid = f"hh-{h:06d}", f"m-{h:06d}"
        info = info0._replace(household_id=hid)
        state = msgspec.structs.replace(st0, household_id=hid, meter_id=mid)
        off = (h // N_TEMPLATES * 997) % (sim.power_w.size - seconds)
        p = sim.power_w[off : off + seconds]
        v = sim.voltage_v[off : off + seconds]
        lat = np.clip(sim.received_ms[off : off + seconds] - sim.ts_ms[off : off + seconds],
                      150, 3000)  # fmt: skip
        ts = start + np.arange(seconds, dtype=np.int64) * 1000
        e = np.round(e0 + np.cumsum(p) / 3600.0, 1)
        rs = [
            Reading(hid, mid, t, pw, en, "", None if vv != vv else vv)
            for t, pw, en, vv in zip(ts.tolist(), p.tolist(), e.tolist(), v.tolist(), strict=True)
        ]
        out.append(Household(info, state, rs, (ts + lat).tolist()))
    return out


def replay(
    hhs: list[Household], size: int, params: AnomalyParams
) -> tuple[float, int, int, list[DetectorState], list[list[AlertRecord]]]:
    """Feed every household in calls of ``size`` readings, round-robin across households.
    Returns (CPU s of the step calls, readings, calls, final states, alerts per household)."""
    states = [h.state for h in hhs]
    alerts: list[list[AlertRecord]] = [[] for _ in hhs]
    n = len(hhs[0].readings)
    cpu = 0.0
    calls = 0
    for i in range(0, n, size):
        batches = [(h.readings[i : i + size], h.received[i : i + size]) for h in hhs]
        t0 = time.process_time()
        for k, h in enumerate(hhs):
            rs, rec = batches[k]
            states[k], out = step(states[k], rs, params, h.info, rec)
            if out:
                alerts[k] += out
        cpu += time.process_time() - t0
        calls += len(hhs)
    return cpu, n * len(hhs), calls, states, alerts


def tick_cost(states: list[DetectorState], params: AnomalyParams, rounds: int = 20) -> float:
    """CPU µs of one ``tick`` per household (the timer's ordinary case: nothing to open)."""
    now = max(s.last_seen for s in states) + 1000
    t0 = time.process_time()
    for r in range(rounds):
        for s in states:
            tick(s, now + r * 1000, params)
    return (time.process_time() - t0) / (rounds * len(states)) * 1e6


def measure(quick: bool = False, check: bool = True) -> dict[str, Any]:
    params = AnomalyParams()
    n, seconds = (200, 300) if quick else (1000, 600)
    hhs = households(n, seconds, params)
    rows: dict[int, dict[str, float]] = {}
    ref: tuple[list[bytes], list[list[AlertRecord]]] | None = None
    for size in CALL_SIZES:
        cpu, readings, calls, states, alerts = replay(hhs, size, params)
        blobs = [msgspec.msgpack.encode(s) for s in states]
        if ref is None:
            ref = (blobs, alerts)
        elif check and (blobs, alerts) != ref:
            raise AssertionError(f"calls of {size} give other alerts or states than calls of 1")
        rows[size] = {
            "rate": readings / cpu,
            "us_per_reading": cpu / readings * 1e6,
            "us_per_call": cpu / calls * 1e6,
            "alerts": float(sum(len(a) for a in alerts)),
        }
    assert ref is not None
    final = [msgspec.msgpack.decode(b, type=DetectorState) for b in ref[0]]
    return {
        "households": n,
        "seconds": seconds,
        "rows": rows,
        "tick_us": tick_cost(final, params),
        "state_bytes": sum(len(b) for b in ref[0]) / len(ref[0]),
    }


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    m = measure(quick)
    rows = m["rows"]
    rate = rows[HEADLINE]["rate"]
    others = "; ".join(
        f"calls of {k}: {r['rate']:,.0f}/s ({r['us_per_call']:.1f} µs/call)"
        for k, r in rows.items()
    )
    return {
        "anomaly_step_rate": {
            "value": round(rate),
            "baseline": BASELINE_RATE,
            "ratio": round(rate / BASELINE_RATE, 2),
            "unit": "readings/s per core",
            "note": (
                f"step() of {m['households']} warm households x {m['seconds']} s of 1 Hz "
                f"readings in calls of {HEADLINE}; {others}; tick {m['tick_us']:.2f} µs per "
                f"household; identical alerts and states for every call size; baseline = the "
                f"same bench before the small-call work"
            ),
        }
    }


def format_report(m: dict[str, Any]) -> str:
    lines = [
        f"{m['households']} households x {m['seconds']} s of 1 Hz readings "
        f"(warm states, {m['state_bytes']:.0f} B msgpack each)",
        "",
        "| readings per call | readings/s per core | µs per reading | µs per call | alerts |",
        "|---|---|---|---|---|",
    ]
    for size, r in m["rows"].items():
        lines.append(
            f"| {size} | {r['rate']:,.0f} | {r['us_per_reading']:.2f} | {r['us_per_call']:.1f} "
            f"| {r['alerts']:.0f} |"
        )
    lines.append("")
    lines.append(f"tick: {m['tick_us']:.2f} µs per household")
    return "\n".join(lines)


def main() -> int:
    print(format_report(measure(quick="--quick" in sys.argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

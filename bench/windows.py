"""Window engine speed: :func:`app.domain.windows.apply` on 1 Hz meters.

Figure (see docs/CONTRACTS.md, "Bench modules"):

``windows_apply``
    1000 households x 1 h of 1 Hz readings (4 in 5 with an energy counter, 1 in 5 power
    only), fed as an agent would: for each chunk of ``BATCH_S`` seconds, one ``apply`` call per
    household with its readings of that chunk, the state carried from call to call (as a table
    value). ``value`` = readings/s through ``apply`` (window closing and ``ClosedWindow``
    creation included; reading generation excluded), ``baseline`` = the 100 000 readings/s
    target, ``ratio`` = value / baseline (higher is better). The note gives the mean
    msgpack-encoded state size per household and the figure for other batch sizes.

Run: ``.venv/bin/python -m bench.windows [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import time

import msgspec

from app.domain.reading import Reading
from app.domain.windows import HouseholdWindows, WindowParams, apply

T0_MS = 1_795_647_600_000  # 2026-11-26T00:00:00+01:00 (Europe/Paris midnight)
TARGET = 100_000.0
PARAMS = WindowParams()
TZ = "Europe/Paris"


def _chunk(households: int, t_from: int, t_to: int) -> list[list[Reading]]:
    """Readings of seconds [t_from, t_to) of each household (1 Hz, 300 ms phase per house)."""
    out = []
    for h in range(households):
        hid = f"hh-{h:06d}"
        mid = f"m-{h:06d}"
        counter = h % 5 != 0
        rows = []
        for s in range(t_from, t_to):
            p = 300.0 + (h * 7 + s) % 900
            rows.append(
                Reading(
                    hid,
                    mid,
                    T0_MS + s * 1000 + (h % 10) * 100,
                    p,
                    1_000_000.0 + h + s * 0.25 if counter else None,
                )
            )
        out.append(rows)
    return out


def measure(households: int, seconds: int, batch_s: int) -> tuple[float, float, int]:
    """(readings/s, mean state bytes, closed windows) for one configuration."""
    states: list[HouseholdWindows | None] = [None] * households
    elapsed = 0.0
    n = 0
    closed = 0
    for t in range(0, seconds, batch_s):
        chunk = _chunk(households, t, min(t + batch_s, seconds))
        t0 = time.perf_counter()
        for h, rows in enumerate(chunk):
            res = apply(states[h], rows, PARAMS, TZ)
            states[h] = res.state
            closed += len(res.closed)
        elapsed += time.perf_counter() - t0
        n += sum(len(r) for r in chunk)
    enc = msgspec.msgpack.Encoder()
    size = statistics.fmean(len(enc.encode(s)) for s in states)
    return n / elapsed, size, closed


def run(quick: bool = False) -> dict[str, dict[str, object]]:
    households = 200 if quick else 1000
    seconds = 900 if quick else 3600
    rates = {}
    size = 0.0
    for batch_s in (1, 10, 60):
        rate, sz, _ = measure(households, seconds, batch_s)
        rates[batch_s] = rate
        if batch_s == 10:
            size = sz
    value = rates[10]
    note = (
        f"{households} households x {seconds} s at 1 Hz, batches of 10 readings per household "
        f"per call; batch 1: {rates[1]:,.0f}/s, batch 60: {rates[60]:,.0f}/s; "
        f"state {size:,.0f} B/household (msgpack, grace {PARAMS.grace_ms} ms)"
    )
    return {
        "windows_apply": {
            "value": value,
            "baseline": TARGET,
            "ratio": value / TARGET,
            "unit": "readings/s",
            "note": note,
        }
    }


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    print(f"{'figure':<16}{'value':>14}{'baseline':>14}{'ratio':>8}  unit / note")
    for name, f in figures.items():
        print(
            f"{name:<16}{f['value']:>14,.0f}{f['baseline']:>14,.0f}{f['ratio']:>8.2f}  "
            f"{f['unit']}: {f['note']}"
        )


if __name__ == "__main__":
    main()

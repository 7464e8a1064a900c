"""Window engine speed: :func:`app.domain.windows.apply` on 1 Hz meters.

Figures (see docs/CONTRACTS.md, "Bench modules"):

``windows_apply`` (headline), ``windows_apply_5``, ``windows_apply_60``
    N households x T s of 1 Hz readings (4 in 5 with an energy counter, 1 in 5 power only),
    fed as the agent feeds them: for each chunk of ``k`` seconds (k = 1, 5, 60), one ``apply``
    call per household with its readings of that chunk and ``now_ms`` = the chunk's end (the
    record time), the state carried from call to call (as a table value). ``windows_apply``
    is k = 1: live operation at 1 reading/s per household and a batch every ~0.5 s gives one
    reading per call. ``value`` = readings per CPU-second through ``apply`` (window closing and
    ``ClosedWindow`` creation included; reading generation excluded; CPU time of the bench
    process, so that other load on the shared cores does not count), ``baseline`` = 333 333
    readings/s (the 3 µs per reading budget of the windows stage), ``ratio`` = value /
    baseline (higher is better). The note gives µs per reading, the closed windows and the
    mean msgpack-encoded state size per household.

Run: ``.venv/bin/python -m bench.windows [--quick]`` (prints one row per batch size).
"""

from __future__ import annotations

import statistics
import sys
import time

import msgspec

from app.domain.reading import Reading
from app.domain.windows import HouseholdWindows, WindowParams, apply

T0_MS = 1_795_647_600_000  # 2026-11-26T00:00:00+01:00 (Europe/Paris midnight)
BUDGET_US = 3.0
TARGET = 1e6 / BUDGET_US
PARAMS = WindowParams()
TZ = "Europe/Paris"
PER_CALL = (1, 5, 60)
"""Readings per household per ``apply`` call; the first one is the headline."""


def _chunk(ids: list[tuple[str, str]], t_from: int, t_to: int) -> list[list[Reading]]:
    """Readings of seconds [t_from, t_to) of each household (1 Hz, 300 ms phase per house)."""
    out = []
    for h, (hid, mid) in enumerate(ids):
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


def measure(households: int, seconds: int, per_call: int) -> tuple[float, float, int]:
    """(readings per CPU-s, mean state bytes, closed windows) for one configuration."""
    ids = [(f"hh-{h:06d}", f"m-{h:06d}") for h in range(households)]
    states: list[HouseholdWindows | None] = [None] * households
    elapsed = 0.0
    n = 0
    closed = 0
    for t in range(0, seconds, per_call):
        t_to = min(t + per_call, seconds)
        chunk = _chunk(ids, t, t_to)
        now_ms = T0_MS + t_to * 1000
        t0 = time.process_time()
        for h, rows in enumerate(chunk):
            res = apply(states[h], rows, PARAMS, TZ, now_ms=now_ms)
            states[h] = res.state
            closed += len(res.closed)
        elapsed += time.process_time() - t0
        n += sum(len(r) for r in chunk)
    enc = msgspec.msgpack.Encoder()
    size = statistics.fmean(len(enc.encode(s)) for s in states)
    return n / elapsed, size, closed


def run(quick: bool = False) -> dict[str, dict[str, object]]:
    households = 200 if quick else 1000
    seconds = 900 if quick else 3600
    figures: dict[str, dict[str, object]] = {}
    for k in PER_CALL:
        rate, size, closed = measure(households, seconds, k)
        name = "windows_apply" if k == PER_CALL[0] else f"windows_apply_{k}"
        note = (
            f"{k} reading(s) per call: {1e6 / rate:.2f} µs/reading; {households} households x "
            f"{seconds} s at 1 Hz, {closed:,} windows closed; state {size:,.0f} B/household "
            f"(msgpack, grace {PARAMS.grace_ms} ms)"
        )
        figures[name] = {
            "value": rate,
            "baseline": TARGET,
            "ratio": rate / TARGET,
            "unit": "readings/CPU-s",
            "note": note,
        }
    return figures


def main() -> None:
    figures = run(quick="--quick" in sys.argv)
    print(
        f"{'figure':<18}{'per call':>9}{'readings/CPU-s':>16}{'µs/reading':>12}{'ratio':>7}  note"
    )
    for k, (name, f) in zip(PER_CALL, figures.items(), strict=True):
        rate = float(f["value"])  # type: ignore[arg-type]
        print(
            f"{name:<18}{k:>9}{rate:>16,.0f}{1e6 / rate:>12.2f}{float(f['ratio']):>7.2f}  "  # type: ignore[arg-type]
            f"{f['note']}"
        )


if __name__ == "__main__":
    main()

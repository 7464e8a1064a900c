"""Which stored resolution (retention policy + measurement) a time-range query reads.

Pure: the caller passes ``now_ms`` and the retention durations (from settings). The rule:

1. A resolution is *usable* for a range when its retention still holds the range's start
   (``start_ms >= now_ms - retention_ms``; an infinite retention always does).
2. Among usable resolutions, take the finest one that returns at most ``max_points`` points
   for the range (``(end - start) / step``).
3. If none is that coarse, take the coarsest usable one; if none is usable (the range starts
   before every retention), take the one with the longest retention.

So a year of power is read from the daily series (365 points), a day from the 1-minute series
(1 440), an hour from the raw 1-second readings (3 600) - never a year from the raw series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import msgspec

__all__ = [
    "DEFAULT_MAX_POINTS",
    "RESOLUTION_NAMES",
    "Resolution",
    "choose",
    "parse_duration_ms",
    "resolutions",
]

DEFAULT_MAX_POINTS = 5000

RESOLUTION_NAMES: tuple[str, ...] = ("raw", "1m", "15m", "1h", "1d")
"""Finest first. Each name is also the retention policy name."""

_STEP_MS: dict[str, int] = {
    "raw": 1_000,
    "1m": 60_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "1d": 86_400_000,
}

_UNIT_MS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


class Resolution(msgspec.Struct, frozen=True):
    """One stored resolution."""

    name: str
    """``raw``, ``1m``, ``15m``, ``1h`` or ``1d``."""
    rp: str
    """Retention policy holding it."""
    measurement: str
    step_ms: int
    """Nominal spacing of its points (1 s for raw readings)."""
    retention_ms: int
    """0 means infinite."""

    def holds(self, t_ms: int, now_ms: int) -> bool:
        """Whether data at ``t_ms`` is still retained at ``now_ms``."""
        return self.retention_ms == 0 or t_ms >= now_ms - self.retention_ms


def parse_duration_ms(text: str) -> int:
    """An InfluxQL duration (``7d``, ``52w``, ``1h30m``, ``INF``) in ms; ``INF``/``0s`` -> 0."""
    s = text.strip()
    if s.upper() == "INF":
        return 0
    pos = 0
    total = 0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not an InfluxQL duration: {text!r}")
    return total


def measurement_for(name: str) -> str:
    """Measurement holding a resolution: ``reading`` for raw, ``power_<size>`` for windows."""
    return "reading" if name == "raw" else f"power_{name}"


def resolutions(retention: Mapping[str, str | int]) -> tuple[Resolution, ...]:
    """The stored resolutions, finest first, from retention per name (duration text or ms).

    Names missing from ``retention`` are not stored and are left out.
    """
    out: list[Resolution] = []
    for name in RESOLUTION_NAMES:
        if name not in retention:
            continue
        value = retention[name]
        ms = parse_duration_ms(value) if isinstance(value, str) else int(value)
        out.append(Resolution(name, name, measurement_for(name), _STEP_MS[name], ms))
    return tuple(out)


def choose(
    start_ms: int,
    end_ms: int,
    now_ms: int,
    available: Sequence[Resolution],
    max_points: int = DEFAULT_MAX_POINTS,
) -> Resolution:
    """The resolution a query over ``[start_ms, end_ms)`` reads (rule in the module doc)."""
    if not available:
        raise ValueError("no resolution available")
    if end_ms < start_ms:
        raise ValueError(f"empty range: end {end_ms} < start {start_ms}")
    span = max(end_ms - start_ms, 1)
    ordered = sorted(available, key=lambda r: r.step_ms)
    usable = [r for r in ordered if r.holds(start_ms, now_ms)]
    if not usable:
        return max(ordered, key=lambda r: (r.retention_ms == 0, r.retention_ms, r.step_ms))
    for r in usable:
        if -(-span // r.step_ms) <= max_points:
            return r
    return usable[-1]

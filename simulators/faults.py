"""Injected faults: what can go wrong with a meter or its node, and the ground truth of it.

Signal faults change what a household simulator reports (:func:`apply` is called by
:class:`simulators.household.HouseholdSimulator`). Message faults (``malformed``,
``duplicate``) happen when payloads are put on the wire (:mod:`simulators.payloads`).

Every fault is recorded as a ground-truth line (``kind: "fault"``, see ``docs/simulators.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.population import HouseholdSpec

SIGNAL_FAULTS = (
    "offline",  # node sends nothing; the meter keeps counting
    "frozen",  # every value stuck at the last good reading
    "spike",  # one reading with an absurd power (the counter is not affected)
    "over_consumption",  # a real extra load (stuck heater) for hours: counted energy
    "clock_skew",  # node clock off by `skew_s` seconds
    "counter_reset",  # energy counter (and TIC indexes) restart from 0
)
MESSAGE_FAULTS = ("malformed", "duplicate")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    household_id: str
    meter_id: str
    start_ms: int
    end_ms: int
    """Exclusive end; ``start_ms + 1000`` for one-reading faults."""
    params: dict[str, Any] = field(default_factory=dict)

    def truth(self) -> dict[str, Any]:
        """The ground-truth record of this fault (one JSONL line)."""
        return {
            "kind": "fault",
            "fault": self.kind,
            "household_id": self.household_id,
            "meter_id": self.meter_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            **({"params": self.params} if self.params else {}),
        }


def plan_faults(
    spec: HouseholdSpec,
    start_s: int,
    end_s: int,
    rng: np.random.Generator,
    per_day: float = 1.0,
    kinds: Sequence[str] = SIGNAL_FAULTS,
) -> list[Fault]:
    """Random signal faults for one household over ``[start_s, end_s)``.

    ``per_day`` is the expected number of faults per household and day (Poisson). Faults of a
    household never overlap, so each is scored against a clean neighbourhood.
    """
    span = max(end_s - start_s, 1)
    n = int(rng.poisson(per_day * span / 86_400))
    out: list[Fault] = []
    busy_until = start_s
    for t in sorted(int(x) for x in rng.uniform(start_s, end_s, size=n)):
        if t < busy_until:
            continue
        kind = str(rng.choice(list(kinds)))
        dur, params = _shape(kind, spec, rng)
        dur = min(dur, end_s - t)
        if dur <= 0:
            continue
        out.append(Fault(kind, spec.household_id, spec.meter_id, t * 1000, (t + dur) * 1000,
                         params))
        busy_until = t + dur + 60
    return out


def _shape(kind: str, spec: HouseholdSpec, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    if kind == "offline":
        return int(rng.uniform(60, 1800)), {}
    if kind == "frozen":
        return int(rng.uniform(120, 3600)), {}
    if kind == "spike":
        return 1, {"power_w": float(np.round(spec.max_power_w * rng.uniform(3, 20), 1))}
    if kind == "over_consumption":
        return int(rng.uniform(3600, 4 * 3600)), {
            "extra_w": float(np.round(min(0.6 * spec.max_power_w, rng.uniform(1500, 3500)), 1))
        }
    if kind == "clock_skew":
        return int(rng.uniform(600, 3 * 3600)), {
            "skew_s": int(rng.choice([-3600, -120, 45, 300, 3600]))
        }
    if kind == "counter_reset":
        return 1, {}
    raise ValueError(f"unknown fault kind {kind!r}")


@dataclass(slots=True)
class FaultState:
    """What a simulator remembers about faults across chunks."""

    counter_offset_wh: float = 0.0
    index_offset_wh: dict[str, float] = field(default_factory=dict)
    export_offset_wh: float = 0.0
    last: dict[str, Any] | None = None
    """The last reported values, for ``frozen``."""
    applied_resets: set[int] = field(default_factory=set)


def active(faults: Sequence[Fault], kind: str, t_ms: np.ndarray) -> np.ndarray:
    """Mask of the samples at ``t_ms`` inside a fault of ``kind``."""
    mask = np.zeros(t_ms.shape, dtype=bool)
    for f in faults:
        if f.kind == kind and f.start_ms <= t_ms[-1] and f.end_ms > t_ms[0]:
            mask |= (t_ms >= f.start_ms) & (t_ms < f.end_ms)
    return mask

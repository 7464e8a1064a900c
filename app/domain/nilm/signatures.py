"""Appliance signature library: typical step power and on-duration of household loads.

Ranges are wide, physical priors (UK/EU appliance ratings), used when a household has taught
nothing better (see :mod:`app.domain.nilm.pairing` for the per-household clusters).
"""

from __future__ import annotations

import math

import msgspec


class Signature(msgspec.Struct, frozen=True):
    appliance: str
    p_min_w: float
    p_max_w: float
    on_min_s: float
    on_max_s: float
    cyclic: bool = False
    """Repeats on its own (thermostat): compressors, heaters."""


LIBRARY: tuple[Signature, ...] = (
    Signature("kettle", 1800, 3300, 15, 420),
    Signature("toaster", 600, 1600, 30, 480),
    Signature("microwave", 500, 1800, 10, 1800),
    Signature("oven_hob", 1000, 4000, 60, 14_400, cyclic=True),
    Signature("washing_machine", 150, 2600, 600, 10_800),
    Signature("dishwasher", 1500, 2600, 600, 12_000),
    Signature("tumble_dryer", 1500, 3000, 900, 10_800),
    Signature("fridge_freezer", 40, 300, 120, 5_400, cyclic=True),
    Signature("electric_heater", 400, 3000, 300, 43_200, cyclic=True),
    Signature("water_heater", 2500, 3600, 600, 14_400),
    Signature("ev_charger", 3000, 11_000, 1_800, 43_200),
    Signature("heat_pump", 500, 3500, 600, 43_200, cyclic=True),
    Signature("lighting", 5, 150, 60, 43_200),
)

APPLIANCES: tuple[str, ...] = tuple(s.appliance for s in LIBRARY)

_ALIASES: dict[str, str] = {
    "fridge": "fridge_freezer", "freezer": "fridge_freezer", "fridge_freezer": "fridge_freezer",
    "washer_dryer": "washing_machine", "washing_machine": "washing_machine",
    "dryer": "tumble_dryer", "tumble_dryer": "tumble_dryer", "heater": "electric_heater",
    "immersion": "water_heater", "boiler": "water_heater", "ev": "ev_charger", "oven": "oven_hob",
    "hob": "oven_hob", "cooker": "oven_hob",
}


def normalize_name(channel: str) -> str:
    """Map a sub-meter channel name (``washing_machine_2_watts``) to a library appliance."""
    name = channel.lower().removesuffix("_watts").removesuffix("_w").strip("_ ")
    base = name.rstrip("0123456789_")
    if base in APPLIANCES:
        return base
    if base in _ALIASES:
        return _ALIASES[base]
    for key, val in _ALIASES.items():
        if key in base:
            return val
    return base or name


def _range_score(v: float, lo: float, hi: float) -> float:
    """1 inside [lo, hi], decaying with the log-distance outside (one decade -> ~0)."""
    if lo <= v <= hi:
        return 1.0
    d = math.log10(lo / v) if v < lo else math.log10(v / hi)
    return math.exp(-((d / 0.15) ** 2))


def classify(power_w: float, on_s: float | None = None, cyclic: bool = False
             ) -> tuple[str, float]:
    """Best library label for a load of ``power_w`` (and on-duration, when known).

    Returns ``(appliance, confidence)``; confidence is the winner's share of the total score,
    so it is low when several signatures fit equally well.
    """
    p = abs(power_w)
    scores: list[float] = []
    for s in LIBRARY:
        sc = _range_score(p, s.p_min_w, s.p_max_w)
        if on_s is not None and on_s > 0:
            sc *= _range_score(on_s, s.on_min_s, s.on_max_s)
        if cyclic and s.cyclic:
            sc *= 2.0
        scores.append(sc)
    total = sum(scores)
    if total <= 1e-9:
        return "unknown", 0.0
    best = max(range(len(scores)), key=scores.__getitem__)
    return LIBRARY[best].appliance, scores[best] / total

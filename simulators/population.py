"""Synthetic household populations: who lives where, on which meter, with which appliances.

``make_population(n, seed)`` is deterministic: the same ``(n, seed)`` always gives the same
households, and the first ``k`` households of a population of ``n`` are those of a population
of ``k`` (each household draws from its own seeded generator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from app.domain.registry import MeterInfo

_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class Archetype:
    """A kind of household: size, heating, and which big appliances it owns."""

    name: str
    occupants: int
    heating: str
    """``electric`` (convectors), ``heat_pump`` (reversible air-to-water) or ``gas``."""
    water_heater: bool
    """Electric storage water heater (French ``chauffe-eau``), switched on at off-peak start."""
    ev: bool
    dishwasher: bool
    dryer: bool
    freezer: bool
    home_daytime: bool
    """Somebody is home on weekdays (retired, remote worker): daytime loads and heating."""
    kva_choices: tuple[int, ...]
    weight: float


ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        Archetype("single_flat", 1, "electric", True, False, False, False, False, False,
                  (3, 6), 0.18),
        Archetype("couple_gas", 2, "gas", False, False, True, False, False, False, (6, 9), 0.17),
        Archetype("family_electric", 4, "electric", True, False, True, True, True, False,
                  (9, 12), 0.20),
        Archetype("family_heat_pump", 4, "heat_pump", True, False, True, True, True, False,
                  (9, 12), 0.12),
        Archetype("ev_commuters", 2, "heat_pump", True, True, True, False, False, False,
                  (9, 12), 0.08),
        Archetype("retired_couple", 2, "electric", True, False, True, False, True, True,
                  (6, 9), 0.15),
        Archetype("student_room", 1, "electric", False, False, False, False, False, True,
                  (3,), 0.05),
        Archetype("large_family_ev", 5, "electric", True, True, True, True, True, False,
                  (12,), 0.05),
    )
}

TIMEZONES: dict[str, float] = {
    "Europe/Paris": 0.90,
    "Europe/Brussels": 0.03,
    "Europe/London": 0.03,
    "Indian/Reunion": 0.02,
    "America/Martinique": 0.02,
}

TIC_MODES: dict[str | None, float] = {None: 0.8, "historique": 0.1, "standard": 0.1}

SUBMETERABLE = ("fridge", "washing_machine", "dishwasher", "kettle", "tumble_dryer", "ev",
                "water_heater", "tv")


@dataclass(frozen=True, slots=True)
class HouseholdSpec:
    """Everything that is fixed about one simulated household and its meter."""

    household_id: str
    meter_id: str
    """``m-000001`` for JSON meters; the 12-digit ADCO/ADSC for Linky TIC meters."""
    device_id: str
    archetype: str
    max_power_w: float
    """Subscribed power: 3/6/9/12 kVA connections (VA taken as W)."""
    exports: bool
    """Has solar panels: net active power may be negative."""
    timezone: str
    tic_mode: str | None
    """``None`` (JSON meter), ``historique`` or ``standard`` (Linky TIC)."""
    seed: int
    tariff: str = "BASE"
    """``BASE`` (one index) or ``HC`` (off-peak 22:00-06:00 local and peak indexes)."""
    voltage: bool = True
    """Whether the JSON payloads carry voltage, current and apparent power."""
    channels: tuple[str, ...] = ()
    """Appliances metered by smart plugs, sent as ``channels`` in the JSON payloads."""
    solar_kwp: float = 0.0

    @property
    def kind(self) -> Archetype:
        return ARCHETYPES[self.archetype]

    @property
    def offpeak_start_h(self) -> float:
        """Local hour the 8-hour off-peak (``HC``) period starts; it varies between meters."""
        return (21.5, 22.0, 22.5, 23.0)[self.seed % 4]

    def is_offpeak(self, local_hour: float) -> bool:
        return (local_hour - self.offpeak_start_h) % 24.0 < 8.0

    @property
    def kva(self) -> int:
        return round(self.max_power_w / 1000)


def _pick(rng: np.random.Generator, table: dict[_K, float]) -> _K:
    keys = list(table)
    p = np.array(list(table.values()), dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def make_household(index: int, seed: int) -> HouseholdSpec:
    """Household number ``index`` (1-based) of the population drawn with ``seed``."""
    rng = np.random.default_rng([seed, index, 0x57A7])
    arch = ARCHETYPES[_pick(rng, {a.name: a.weight for a in ARCHETYPES.values()})]
    kva = int(rng.choice(arch.kva_choices))
    tic_mode = _pick(rng, TIC_MODES)
    # Linky ADCO/ADSC: 12 digits, here "0215" + a serial so ids never collide.
    meter_id = f"m-{index:06d}" if tic_mode is None else f"0215{index:08d}"
    exports = bool(rng.random() < 0.12)
    tariff = "HC" if (arch.water_heater and rng.random() < 0.7) else "BASE"
    owned = [a for a in SUBMETERABLE if _owns(arch, a)]
    n_channels = int(rng.choice([0, 0, 1, 2, 3])) if tic_mode is None else 0
    channels = tuple(sorted(rng.choice(owned, size=min(n_channels, len(owned)), replace=False)))
    return HouseholdSpec(
        household_id=f"hh-{index:06d}",
        meter_id=meter_id,
        device_id=f"node-{index:06d}",
        archetype=arch.name,
        max_power_w=float(kva * 1000),
        exports=exports,
        timezone=str(_pick(rng, TIMEZONES)),
        tic_mode=tic_mode,
        seed=int(rng.integers(0, 2**62)),
        tariff=tariff,
        voltage=bool(rng.random() < 0.8),
        channels=tuple(str(c) for c in channels),
        solar_kwp=float(np.round(rng.uniform(2.5, 6.0), 1)) if exports else 0.0,
    )


def _owns(arch: Archetype, appliance: str) -> bool:
    return {
        "dishwasher": arch.dishwasher,
        "tumble_dryer": arch.dryer,
        "ev": arch.ev,
        "water_heater": arch.water_heater,
    }.get(appliance, True)


def make_population(n: int, seed: int = 0) -> list[HouseholdSpec]:
    """``n`` households ``hh-000001`` … deterministic from ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    return [make_household(i, seed) for i in range(1, n + 1)]


def registry(population: Iterable[HouseholdSpec]) -> dict[str, MeterInfo]:
    """The meter registry the pipeline needs for these households, keyed by meter id."""
    return {
        h.meter_id: MeterInfo(
            household_id=h.household_id,
            max_power_w=h.max_power_w,
            exports=h.exports,
            timezone=h.timezone,
        )
        for h in population
    }

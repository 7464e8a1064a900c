"""Appliance programmes and the daily behaviour planner of a household.

A *programme* is a sequence of :class:`Phase` (a washing machine: fill, heat, wash, rinse,
spin). A phase has a power level, an optional on/off cycle inside it (drum agitation, oven or
hob thermostat) and an optional linear ramp (EV charge taper). An :class:`Activation` is a
programme started at an absolute second; :func:`plan_day` draws the activations of one local
day from the household's archetype, the weekday, daylight and the season.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TypeVar

import numpy as np

from simulators.population import Archetype, HouseholdSpec

_T = TypeVar("_T")

_PF = {
    "kettle": 1.0, "toaster": 1.0, "hob": 1.0, "oven": 1.0, "water_heater": 1.0,
    "microwave": 0.95, "washing_machine": 0.9, "dishwasher": 0.95, "tumble_dryer": 0.97,
    "ev": 0.99, "tv": 0.9, "computer": 0.95, "lighting": 0.85, "vacuum": 0.95, "iron": 1.0,
}


@dataclass(frozen=True, slots=True)
class Phase:
    duration_s: int
    power_w: float
    cycle_s: int = 0
    """When > 0, the phase alternates ``power_w`` for ``duty*cycle_s`` s and ``low_w``."""
    duty: float = 1.0
    low_w: float = 0.0
    end_w: float | None = None
    """When set, power ramps linearly from ``power_w`` to ``end_w`` over the phase."""

    def render(self, rel: np.ndarray) -> np.ndarray:
        """Power at seconds ``rel`` (0-based inside the phase)."""
        if self.end_w is not None:
            frac = rel / max(self.duration_s - 1, 1)
            return self.power_w + (self.end_w - self.power_w) * frac
        if self.cycle_s > 0:
            on = np.mod(rel, self.cycle_s) < self.duty * self.cycle_s
            return np.where(on, self.power_w, self.low_w)
        return np.full(rel.shape, self.power_w)

    @property
    def mean_w(self) -> float:
        if self.end_w is not None:
            return (self.power_w + self.end_w) / 2
        if self.cycle_s > 0:
            return self.duty * self.power_w + (1 - self.duty) * self.low_w
        return self.power_w


@dataclass(slots=True)
class Activation:
    """One run of one appliance programme, in absolute epoch seconds."""

    appliance: str
    start_s: int
    phases: tuple[Phase, ...]
    programme: str = ""
    act_id: str = ""
    pf: float = 1.0
    bounds: list[int] = field(init=False, repr=False)
    end_s: int = field(init=False)

    def __post_init__(self) -> None:
        self.bounds = [0, *accumulate(p.duration_s for p in self.phases)]
        self.end_s = self.start_s + self.bounds[-1]
        if not self.pf:
            self.pf = _PF.get(self.appliance, 1.0)

    @property
    def mean_w(self) -> float:
        total = float(self.bounds[-1])
        return sum(p.mean_w * p.duration_s for p in self.phases) / total if total else 0.0

    @property
    def peak_w(self) -> float:
        return max(max(p.power_w, p.low_w, p.end_w or 0.0) for p in self.phases)

    def render_into(self, out: np.ndarray, t0: int) -> bool:
        """Add this activation's power over seconds ``t0 .. t0+len(out)-1``; False if none."""
        lo = max(self.start_s, t0)
        hi = min(self.end_s, t0 + len(out))
        if lo >= hi:
            return False
        for k, ph in enumerate(self.phases):
            a = max(lo, self.start_s + self.bounds[k])
            b = min(hi, self.start_s + self.bounds[k + 1])
            if a < b:
                origin = self.start_s + self.bounds[k]
                rel = np.arange(a - origin, b - origin)
                out[a - t0 : b - t0] += ph.render(rel)
        return True

    def power_at(self, t_s: int) -> float:
        buf = np.zeros(1)
        self.render_into(buf, t_s)
        return float(buf[0])


class Draws:
    """Scalar random draws from one pre-drawn block (numpy's per-call overhead dominates
    otherwise). The same ``Generator`` gives the same sequence of draws."""

    __slots__ = ("_pos", "_rng", "_u")

    def __init__(self, rng: np.random.Generator, block: int = 256) -> None:
        self._rng = rng
        self._u: list[float] = rng.random(block).tolist()
        self._pos = 0

    def random(self) -> float:
        if self._pos >= len(self._u):
            self._u = self._rng.random(len(self._u)).tolist()
            self._pos = 0
        self._pos += 1
        return self._u[self._pos - 1]

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def normal(self, mu: float, sigma: float) -> float:
        # Irwin-Hall approximation: plenty for behaviour times
        return mu + sigma * (sum(self.random() for _ in range(12)) - 6.0)

    def choice(self, options: Sequence[_T]) -> _T:
        return options[int(self.random() * len(options))]

    def integers(self, lo: int, hi: int) -> int:
        return lo + int(self.random() * (hi - lo))


# --- programmes ---------------------------------------------------------------------------------


def _s(x: float) -> int:
    return max(1, round(x))


def kettle(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    return "boil", (Phase(_s(rng.uniform(90, 240)), rng.uniform(1850, 3000)),)


def toaster(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    return "toast", (Phase(_s(rng.uniform(100, 200)), rng.uniform(800, 1100)),)


def microwave(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    p, d = rng.uniform(900, 1300), _s(rng.uniform(60, 360))
    if rng.random() < 0.3:  # defrost / medium power: magnetron cycles, fan and lamp stay on
        return "defrost", (Phase(d, p, cycle_s=20, duty=0.5, low_w=110.0),)
    return "full", (Phase(d, p),)


def hob(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    return "simmer", (
        Phase(_s(rng.uniform(240, 480)), rng.uniform(1400, 2200)),
        Phase(_s(rng.uniform(600, 1800)), rng.uniform(1200, 2000), cycle_s=40,
              duty=rng.uniform(0.35, 0.7)),
    )


def oven(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    p = rng.uniform(2000, 2600)
    return "bake", (
        Phase(_s(rng.uniform(480, 720)), p),
        Phase(_s(rng.uniform(1200, 3000)), p, cycle_s=_s(rng.uniform(60, 90)),
              duty=rng.uniform(0.3, 0.5), low_w=40.0),
    )


def washing_machine(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    temp = rng.choice((30, 40, 40, 60))
    motor = rng.uniform(150, 250)
    return f"wash_{temp}", (
        Phase(120, 15.0),  # fill
        Phase(_s((temp - 15) * 25), rng.uniform(1800, 2200)),  # heat
        Phase(_s(rng.uniform(1800, 3000)), motor, cycle_s=30, duty=0.5, low_w=15.0),  # wash
        Phase(900, 120.0, cycle_s=30, duty=0.5, low_w=15.0),  # rinse
        Phase(_s(rng.uniform(480, 720)), rng.uniform(300, 500)),  # spin
        Phase(60, 10.0),
    )


def dishwasher(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    heat = rng.uniform(1800, 2100)
    return "eco", (
        Phase(300, 80.0),  # prewash pump
        Phase(_s(rng.uniform(900, 1200)), heat),
        Phase(1200, 80.0),  # wash
        Phase(60, 40.0),  # drain
        Phase(600, heat),  # hot rinse
        Phase(1800, 8.0),  # dry
    )


def tumble_dryer(rng: Draws) -> tuple[str, tuple[Phase, ...]]:
    return "cotton_dry", (
        Phase(_s(rng.uniform(3600, 5400)), rng.uniform(2000, 2500), cycle_s=120,
              duty=0.85, low_w=250.0),
        Phase(600, 250.0),  # cool-down: drum only
    )


def constant(power_w: float, duration_s: float) -> tuple[Phase, ...]:
    return (Phase(_s(duration_s), power_w),)


def ev_charge(power_w: float, energy_wh: float) -> tuple[Phase, ...]:
    taper_s = 1200
    taper_wh = (power_w + 0.3 * power_w) / 2 * taper_s / 3600
    main_s = max(60.0, (energy_wh - taper_wh) / power_w * 3600)
    return (Phase(_s(main_s), power_w), Phase(taper_s, power_w, end_w=0.3 * power_w))


# --- daily planner -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayContext:
    midnight_s: int
    """Epoch second of local midnight."""
    day: int
    """Local day number (days since 1970-01-01, local)."""
    weekday: int
    """0 = Monday."""
    sunrise_h: float
    sunset_h: float
    mean_temp_c: float


def plan_day(spec: HouseholdSpec, arch: Archetype, ctx: DayContext) -> list[Activation]:
    """The discrete appliance activations of one local day (deterministic per household/day)."""
    rng = Draws(np.random.default_rng([spec.seed, ctx.day, 0xDA7]))
    acts: list[Activation] = []
    weekend = ctx.weekday >= 5
    home = weekend or arch.home_daytime
    occ = arch.occupants
    winter = float(np.clip((15.0 - ctx.mean_temp_c) / 15.0, 0.0, 1.0))

    def at(h: float) -> int:
        return ctx.midnight_s + int(h * 3600)

    def add(appliance: str, start_h: float | int, prog: tuple[str, tuple[Phase, ...]]) -> None:
        start = at(start_h) if isinstance(start_h, float) else int(start_h)
        acts.append(Activation(appliance, start, prog[1], programme=prog[0],
                               act_id=f"{spec.household_id}:{ctx.day}:{len(acts)}"))

    wake = float(rng.normal(8.5, 0.6) if weekend else rng.normal(7.4 if home else 6.8, 0.35))
    leave = None if home else wake + float(rng.uniform(0.8, 1.4))
    back = wake + 2.0 if home else float(rng.uniform(17.3, 19.0))
    bed = float(min(rng.normal(23.0, 0.5), 24.4))

    # breakfast
    add("kettle", wake + rng.uniform(0.05, 0.3), kettle(rng))
    if occ > 2 and rng.random() < 0.5:
        add("kettle", wake + rng.uniform(0.4, 0.8), kettle(rng))
    if rng.random() < 0.35:
        add("toaster", wake + rng.uniform(0.1, 0.4), toaster(rng))
    # daytime at home
    if home:
        if rng.random() < 0.5:
            add("kettle", float(rng.uniform(14.5, 16.5)), kettle(rng))
        if rng.random() < 0.6:
            add("microwave", float(rng.uniform(12.0, 13.0)), microwave(rng))
        if rng.random() < 0.5:
            add("hob", float(rng.uniform(11.5, 12.3)), hob(rng))
        if arch.home_daytime and rng.random() < 0.4:
            add("tv", float(rng.uniform(13.5, 15.0)), ("", constant(rng.uniform(70, 160),
                                                                   rng.uniform(3600, 7200))))
        if rng.random() < (0.3 if weekend else 0.15):
            add("vacuum", float(rng.uniform(10, 17)),
                ("", constant(rng.uniform(1200, 1800), rng.uniform(600, 1500))))
    if arch.home_daytime and rng.random() < 0.5:
        add("computer", float(rng.uniform(9.5, 11)),
            ("", constant(rng.uniform(60, 120), rng.uniform(2, 5) * 3600)))
    # dinner
    dinner = back + float(rng.uniform(0.3, 1.2))
    if rng.random() < 0.75:
        add("hob", dinner, hob(rng))
    if rng.random() < (0.4 if weekend else 0.25):
        add("oven", dinner - 0.3, oven(rng))
    if rng.random() < 0.5:
        add("microwave", dinner + rng.uniform(0.0, 0.5), microwave(rng))
    if rng.random() < 0.5:
        add("kettle", dinner + rng.uniform(0.8, 1.5), kettle(rng))
    if rng.random() < 0.85 and bed - dinner > 1.2:
        tv_start = dinner + float(rng.uniform(0.7, 1.2))
        add("tv", tv_start, ("", constant(rng.uniform(70, 160), (bed - tv_start) * 3600)))
    if not arch.home_daytime and rng.random() < 0.3:
        add("computer", dinner + rng.uniform(0.5, 1.0),
            ("", constant(rng.uniform(60, 120), rng.uniform(1, 2.5) * 3600)))
    if rng.random() < 0.08 * occ:
        add("iron", float(rng.uniform(10, 20)) if home else dinner + 1.5,
            ("", (Phase(_s(rng.uniform(900, 1800)), 1800.0, cycle_s=40, duty=0.5),)))
    # laundry and dishes
    if rng.random() < min(0.9, 0.12 + 0.13 * occ + (0.15 if weekend else 0.0)):
        wm_start = float(rng.uniform(9, 17)) if home else (
            leave if leave is not None and rng.random() < 0.4 else back + rng.uniform(0.3, 2.0)
        )
        add("washing_machine", wm_start, washing_machine(rng))
        if arch.dryer and rng.random() < 0.3 + 0.4 * winter:
            add("tumble_dryer", acts[-1].end_s + int(rng.uniform(60, 1800)), tumble_dryer(rng))
    hc_start = spec.offpeak_start_h
    if arch.dishwasher and rng.random() < min(0.9, 0.2 * occ + 0.1):
        if spec.tariff == "HC" and rng.random() < 0.5:
            add("dishwasher", at(hc_start) + int(rng.uniform(0, 120)), dishwasher(rng))
        else:
            add("dishwasher", dinner + rng.uniform(1.0, 2.0), dishwasher(rng))
    # electric water heater: the off-peak relay starts it; otherwise its thermostat after draws
    if arch.water_heater:
        # a heater the contract carries beside the base load (a 3 kVA contract with a 3 kW
        # heater would trip the breaker; its readings would be dead-lettered as out of range)
        p_wh = rng.choice([p for p in (1200.0, 2000.0, 2400.0, 3000.0)
                           if p <= 0.8 * spec.max_power_w] or [1200.0])
        need_wh = occ * rng.uniform(1300, 2200) * (1 + 0.25 * winter)
        if spec.tariff == "HC":
            add("water_heater", at(hc_start) + int(rng.uniform(0, 60)),
                ("offpeak", constant(p_wh, min(8 * 3600, need_wh / p_wh * 3600))))
        else:
            add("water_heater", wake + 0.5, ("", constant(p_wh, 0.4 * need_wh / p_wh * 3600)))
            add("water_heater", 21.0 + rng.uniform(0, 1),
                ("", constant(p_wh, 0.6 * need_wh / p_wh * 3600)))
    # electric vehicle
    if arch.ev and rng.random() < (0.3 if weekend else 0.55):
        p_ev = 7400.0 if spec.max_power_w >= 12000 else 3700.0
        energy = float(rng.uniform(5000, 22000))
        start = (at(hc_start) + int(rng.uniform(0, 300)) if spec.tariff == "HC"
                 else at(back + float(rng.uniform(0.1, 1.5))))
        add("ev", start, ("charge", ev_charge(p_ev, energy)))
    # lighting: lamps while somebody is awake and it is dark
    if wake < ctx.sunrise_h:
        end = min(leave if leave is not None else wake + 1.5, ctx.sunrise_h + 0.3)
        if end > wake:
            add("lighting", wake, ("", constant(rng.uniform(40, 150), (end - wake) * 3600)))
    dusk = max(ctx.sunset_h - 0.4, back)
    if bed > dusk:
        span = bed - dusk
        for _ in range(rng.integers(2, 5)):
            a = dusk + span * float(rng.uniform(0, 0.35))
            b = bed - span * float(rng.uniform(0, 0.35))
            if b > a:
                add("lighting", a, ("", constant(rng.uniform(15, 90), (b - a) * 3600)))
    for a in acts:
        a.pf = _PF.get(a.appliance, 1.0)
    acts.sort(key=lambda a: a.start_s)
    return acts

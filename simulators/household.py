"""1 Hz household simulator: appliance loads, thermostats, solar, meter noise and counters.

:class:`HouseholdSimulator` renders consecutive chunks (:meth:`HouseholdSimulator.render`) with
numpy. What is simulated:

- standby and ventilation (constant), fridge and freezer compressors (duty cycle with start
  surge, longer runs when it is warm), thermostat-cycled convectors or a modulating heat pump
  (heating when cold, cooling in the tropics) driven by outdoor temperature and an occupancy
  setpoint schedule, a gas boiler's circulation pump;
- discrete activations planned per local day (:mod:`simulators.appliances`): kettle, toaster,
  microwave, hob, oven, washing machine / dishwasher / tumble dryer programmes, TV, computer,
  lighting when dark, vacuum, iron, electric water heater on the off-peak relay, EV charging;
- solar production for exporting households (net power may be negative);
- meter measurement noise, voltage (~230 V with a daily swing and a line drop), current and
  apparent power from the per-appliance power factors, and the counters: cumulative import
  energy (Wh, the integral of the reported import power), export energy and tariff indexes.

Everything random is keyed by absolute time and the household seed, so the same seconds come
out the same whatever the chunk sizes (counters start at the first rendered second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators import faults as fl
from simulators.appliances import Activation, DayContext, plan_day
from simulators.climate import (
    DAY_S,
    climate_for,
    daylight,
    hash_normal,
    hash_uniform,
    local_offsets,
    outdoor_temp_c,
    sun_times_h,
    utc_offset_s,
)
from simulators.population import HouseholdSpec

_SHEDDABLE = frozenset({"water_heater", "ev"})
_TAN = {pf: float(np.tan(np.arccos(pf))) for pf in (0.6, 0.75, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)}


def _tan(pf: float) -> float:
    t = _TAN.get(pf)
    return t if t is not None else float(np.tan(np.arccos(pf)))


@dataclass(slots=True)
class Chunk:
    """Consecutive 1 Hz readings of one household, as its meter would report them."""

    spec: HouseholdSpec
    t0_s: int
    ts_ms: np.ndarray
    """Event time of each reading (int64 ms), including clock-skew faults."""
    power_w: np.ndarray
    energy_wh: np.ndarray
    """Cumulative import counter (Wh) as reported (after counter resets)."""
    export_wh: np.ndarray
    index_wh: dict[str, np.ndarray]
    """Tariff indexes (``BASE`` or ``HCHC``/``HCHP``), summing to the import counter."""
    offpeak: np.ndarray
    voltage_v: np.ndarray
    current_a: np.ndarray
    apparent_va: np.ndarray
    channels: dict[str, np.ndarray]
    present: np.ndarray
    """False where the node is offline: no reading is sent."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """Ground truth: appliance on/off edges in this chunk (and faults starting in it)."""

    def __len__(self) -> int:
        return len(self.power_w)


@dataclass(frozen=True, slots=True)
class _Cyclic:
    """A thermostat load: one on-run per cycle of ``period_s``, duty set at cycle start."""

    appliance: str
    period_s: int
    phase_s: int
    power_w: float
    pf: float
    kind: str
    """``fridge`` (duty from temperature), ``heat`` (convector), ``hp`` (heat pump), ``pump``."""
    duty: float = 0.4
    stream: int = 0


_COUNTER_EPOCH_S = 1_704_067_200  # 2024-01-01T00:00:00Z


class HouseholdSimulator:
    """Renders one household's readings chunk after chunk (see module docstring)."""

    def __init__(self, spec: HouseholdSpec, faults: Sequence[fl.Fault] = (),
                 *, collect_events: bool = True) -> None:
        self.spec = spec
        self.arch = spec.kind
        self.climate = climate_for(spec.timezone)
        self.faults = sorted(faults, key=lambda f: f.start_ms)
        self.collect_events = collect_events
        rng = np.random.default_rng([spec.seed, 0xC0FFEE])
        self._standby_w = float(rng.uniform(25, 110))
        self._standby_pf = 0.6
        self._noise_sigma = float(rng.uniform(1.0, 2.5))
        self._v_offset = float(rng.uniform(-4, 4))
        self._v_phase = float(rng.uniform(0, 1))
        self._line_ohm = float(rng.uniform(0.15, 0.5))
        self._comfort_c = float(rng.uniform(19.0, 21.0) + (1.0 if self.arch.home_daytime else 0))
        self._gain = float(rng.uniform(0.55, 1.0))
        """Heat loss of the dwelling: 1 means the heating runs flat out at -10 °C."""
        self._cyclic = self._make_cyclic(rng)
        self._plans: dict[int, list[Activation]] = {}
        self._counter_wh = float(np.round(rng.uniform(1e6, 4e7), 0))
        self._export_wh = 0.0
        labels = ("HCHC", "HCHP") if spec.tariff == "HC" else ("BASE",)
        share = float(rng.uniform(0.3, 0.5))
        self._index_wh = (
            {"HCHC": self._counter_wh * share, "HCHP": self._counter_wh * (1 - share)}
            if len(labels) == 2 else {"BASE": self._counter_wh}
        )
        self._next_t: int | None = None
        self._fs = fl.FaultState()

    # --- set-up -----------------------------------------------------------------------------

    def _make_cyclic(self, rng: np.random.Generator) -> list[_Cyclic]:
        out = [_Cyclic("fridge", int(rng.uniform(2400, 3600)), int(rng.integers(0, 3600)),
                       float(rng.uniform(70, 130)), 0.75, "fridge",
                       duty=float(rng.uniform(0.3, 0.42)), stream=21)]
        if self.arch.freezer:
            out.append(_Cyclic("freezer", int(rng.uniform(3000, 4500)),
                               int(rng.integers(0, 4500)), float(rng.uniform(90, 160)), 0.75,
                               "fridge", duty=float(rng.uniform(0.35, 0.5)), stream=22))
        if self.arch.heating == "electric":
            total = min(0.7 * self.spec.max_power_w,
                        rng.uniform(0.8, 1.2) * (2000 + 1300 * self.arch.occupants))
            n = max(2, min(5, int(total // 1500) + 1))
            for j in range(n):
                out.append(_Cyclic("electric_heater", int(rng.uniform(600, 1200)),
                                   int(rng.integers(0, 1200)), float(total / n), 1.0, "heat",
                                   stream=30 + j))
        elif self.arch.heating == "heat_pump":
            out.append(_Cyclic("heat_pump", int(rng.uniform(1800, 3600)),
                               int(rng.integers(0, 3600)), float(rng.uniform(1500, 2800)), 0.9,
                               "hp", stream=40))
        else:
            out.append(_Cyclic("boiler_pump", 1200, int(rng.integers(0, 1200)), 60.0, 0.85,
                               "pump", stream=41))
        return out

    # --- behaviour --------------------------------------------------------------------------

    def _day_context(self, day: int) -> DayContext:
        off = utc_offset_s(self.spec.timezone, day * DAY_S + 43_200)
        midnight = day * DAY_S - off
        sunrise, sunset = sun_times_h(self.climate, midnight + 43_200, off)
        hours = np.arange(midnight, midnight + DAY_S, 3600, dtype=np.float64)
        return DayContext(midnight, day, (day + 3) % 7, sunrise, sunset,
                          float(outdoor_temp_c(self.climate, hours).mean()))

    def activations(self, day: int) -> list[Activation]:
        """The planned discrete activations of local day ``day`` (cached)."""
        plan = self._plans.get(day)
        if plan is None:
            plan = plan_day(self.spec, self.arch, self._day_context(day))
            self._plans[day] = plan
        return plan

    def _setpoint(self, local_s: np.ndarray) -> np.ndarray:
        h = np.mod(local_s, DAY_S) / 3600.0
        weekday = np.mod(local_s // DAY_S + 3, 7)
        home = (weekday >= 5) | self.arch.home_daytime
        comfort = np.where(home, (h >= 7.5) & (h < 23.0),
                           ((h >= 6.3) & (h < 8.5)) | ((h >= 17.5) & (h < 23.0)))
        out: np.ndarray = np.where(comfort, self._comfort_c, self._comfort_c - 3.0)
        return out

    def _demand(self, t: np.ndarray, off: int, cooling: bool) -> np.ndarray:
        temp = outdoor_temp_c(self.climate, t.astype(np.float64))
        setp = self._setpoint(t + off)
        heat = np.clip((setp - 3.0 - temp) / (setp + 10.0) * self._gain, 0.0, 1.0)
        if cooling:
            heat = np.maximum(heat, np.clip((temp - 25.0) / 10.0, 0.0, 1.0))
        out: np.ndarray = heat
        return out

    def _render_cyclic(self, c: _Cyclic, t: np.ndarray, off: int) -> tuple[np.ndarray, np.ndarray]:
        """Power and on-mask of a thermostat load over ``t`` (t[0] is the previous second)."""
        x = t + c.phase_s
        cyc = x // c.period_s
        pos = x - cyc * c.period_s
        ucyc = np.arange(cyc[0], cyc[-1] + 1)  # t is increasing, so cycles are contiguous
        inv = cyc - cyc[0]
        starts = ucyc * c.period_s - c.phase_s
        if c.kind == "fridge":
            temp = outdoor_temp_c(self.climate, starts.astype(np.float64))
            duty = c.duty + 0.006 * (temp - 12.0) + 0.08 * (hash_uniform(
                self.spec.seed, c.stream, ucyc) - 0.5)
            on = pos < (duty[inv] * c.period_s)
            power = np.where(on, c.power_w * (1.0 + 0.25 * np.exp(-pos / 120.0)), 0.0)
            return power, on
        demand = self._demand(starts, off, cooling=(c.kind == "hp"))
        if c.kind == "heat":
            on = pos < (demand[inv] * c.period_s)
            return np.where(on, c.power_w, 0.0), on
        if c.kind == "hp":
            d = demand[inv]
            on = pos < np.minimum(1.0, 1.3 * d) * c.period_s
            return np.where(on, c.power_w * (0.35 + 0.65 * d), 0.0), on
        on = demand[inv] > 0.0
        return np.where(on, c.power_w, 0.0), on

    # --- rendering --------------------------------------------------------------------------

    def _start_counters(self, t0_s: int) -> None:
        """Counters at the first rendered second grow with the start time (half the
        connection's power since 2024-01-01), so a later run of the same household never
        starts below where an earlier run ended: a real meter's counter only moves forward."""
        grow = max(0.0, (t0_s - _COUNTER_EPOCH_S) / 3600.0) * 0.5 * self.spec.max_power_w
        grow = float(np.round(grow, 0))
        if not grow:
            return
        total = sum(self._index_wh.values()) or 1.0
        self._index_wh = {k: v + grow * v / total for k, v in self._index_wh.items()}
        self._counter_wh += grow

    def render(self, t0_s: int, n: int) -> Chunk:
        """Readings for epoch seconds ``t0_s .. t0_s+n-1``; chunks must follow each other."""
        if self._next_t is not None and t0_s != self._next_t:
            raise ValueError(f"chunks must be consecutive: expected t0={self._next_t}")
        if n <= 0:
            raise ValueError("n must be > 0")
        spec = self.spec
        if self._next_t is None:
            self._start_counters(t0_s)
        self._next_t = t0_s + n
        t = np.arange(t0_s, t0_s + n, dtype=np.int64)
        offs = local_offsets(spec.timezone, t0_s, n)
        off = int(offs[0])
        events: list[dict[str, Any]] = []
        p = np.full(n, self._standby_w)
        q = np.full(n, self._standby_w * _tan(self._standby_pf))
        channels = {name: np.zeros(n) for name in spec.channels}

        shed = np.zeros(n)  # loads the meter's load-shedding relay can cut (délestage)
        t_ext = np.arange(t0_s - 1, t0_s + n, dtype=np.int64)
        for k, c in enumerate(self._cyclic):
            power, on = self._render_cyclic(c, t_ext, off)
            p += power[1:]
            if c.kind in ("heat", "hp"):
                shed += power[1:]
            if c.pf < 1.0:
                q += power[1:] * _tan(c.pf)
            if c.appliance in channels:
                channels[c.appliance] += power[1:]
            if self.collect_events:
                for i in np.flatnonzero(on[1:] != on[:-1]):
                    state = bool(on[i + 1])
                    events.append(self._edge(c.appliance, int(t_ext[i + 1]), state,
                                             float(power[i + 1] if state else power[i]), unit=k))

        local = t + offs
        d0, d1 = int(local[0] // DAY_S), int(local[-1] // DAY_S)
        for day in [d for d in self._plans if d < d0 - 1]:
            del self._plans[day]
        buf = np.empty(n)
        # activations spill at most ~9 h past midnight: the day before matters in the morning
        first_day = d0 - 1 if int(local[0]) % DAY_S < 12 * 3600 else d0
        for day in range(first_day, d1 + 1):
            for act in self.activations(day):
                if act.start_s >= t0_s + n or act.end_s <= t0_s:
                    continue
                buf.fill(0.0)
                act.render_into(buf, t0_s)
                p += buf
                if act.appliance in _SHEDDABLE:
                    shed += buf
                if act.pf < 1.0:
                    q += buf * _tan(act.pf)
                if act.appliance in channels:
                    channels[act.appliance] += buf
                if self.collect_events:
                    if t0_s <= act.start_s < t0_s + n:
                        events.append(self._activation_edge(act, True))
                    if t0_s <= act.end_s - 1 < t0_s + n:
                        events.append(self._activation_edge(act, False))

        # Keep under the subscribed power: shed heating, water heater and EV, then cap (the
        # breaker would trip; real homes avoid that with a load-shedding relay).
        limit = 0.95 * spec.max_power_w
        over = p - limit
        if (over > 0).any():
            cut = np.clip(over, 0.0, shed)
            p -= cut
            scale = np.minimum(1.0, limit / p)
            p *= scale
            q *= scale

        t_ms = t * 1000
        for f in self.faults:
            if f.kind == "over_consumption" and f.start_ms <= t_ms[-1] and f.end_ms > t_ms[0]:
                p += np.where((t_ms >= f.start_ms) & (t_ms < f.end_ms), f.params["extra_w"], 0.0)

        if spec.exports and spec.solar_kwp > 0:
            day_idx = t // DAY_S
            cloud = 0.25 + 0.75 * hash_uniform(self.climate.region_seed, 31, day_idx) ** 0.7
            flicker = 0.85 + 0.15 * np.sin(2 * np.pi * (t / 1300.0 + hash_uniform(
                self.climate.region_seed, 32, day_idx)))
            p -= spec.solar_kwp * 800.0 * daylight(self.climate, t.astype(np.float64)) * (
                cloud * flicker)

        sigma = self._noise_sigma + 0.004 * np.abs(p)
        p = np.round(p + sigma * hash_normal(spec.seed, 1, t), 1)
        if not spec.exports:
            np.maximum(p, 0.0, out=p)

        apparent = np.round(np.sqrt(p * p + q * q), 1)
        v = (230.0 + self._v_offset
             + 2.0 * np.sin(2 * np.pi * (t / DAY_S + self._v_phase))
             + 1.0 * np.sin(2 * np.pi * t / 1733.0 + 6.0 * self._v_phase)
             + 0.3 * hash_normal(spec.seed, 2, t))
        v = np.round(v - self._line_ohm * apparent / 230.0, 1)
        current = np.round(apparent / v, 2)
        for name, arr in channels.items():
            noisy = arr + 0.5 * hash_normal(spec.seed, 100 + len(name), t) * (arr > 0)
            channels[name] = np.round(np.maximum(noisy, 0.0), 1)

        imp = np.maximum(p, 0.0) / 3600.0
        energy = self._counter_wh + np.cumsum(imp)
        export = self._export_wh + np.cumsum(np.maximum(-p, 0.0) / 3600.0)
        local_h = np.mod(local, DAY_S) / 3600.0
        offpeak = np.mod(local_h - spec.offpeak_start_h, 24.0) < 8.0
        if spec.tariff == "HC":
            index = {"HCHC": self._index_wh["HCHC"] + np.cumsum(np.where(offpeak, imp, 0.0)),
                     "HCHP": self._index_wh["HCHP"] + np.cumsum(np.where(offpeak, 0.0, imp))}
        else:
            index = {"BASE": self._index_wh["BASE"] + np.cumsum(imp)}
        prev = (self._counter_wh, self._export_wh, self._index_wh)
        self._counter_wh = float(energy[-1])
        self._export_wh = float(export[-1])
        self._index_wh = {k: float(a[-1]) for k, a in index.items()}

        chunk = Chunk(spec, t0_s, t_ms.copy(), p, energy, export, index, offpeak, v, current,
                      apparent, channels, np.ones(n, dtype=bool), events)
        if self.faults:
            self._apply_faults(chunk, prev)
        if self.collect_events:
            events.sort(key=lambda e: e.get("ts_ms", e.get("start_ms", 0)))
        return chunk

    def _edge(self, appliance: str, ts_s: int, state: bool, power_w: float,
              **extra: Any) -> dict[str, Any]:
        return {"kind": "appliance", "household_id": self.spec.household_id,
                "meter_id": self.spec.meter_id, "appliance": appliance,
                "state": "on" if state else "off", "ts_ms": ts_s * 1000,
                "power_w": round(power_w, 1), **extra}

    def _activation_edge(self, act: Activation, on: bool) -> dict[str, Any]:
        ts = act.start_s if on else act.end_s
        power = act.power_at(act.start_s if on else act.end_s - 1)
        return self._edge(act.appliance, ts, on, power, programme=act.programme,
                          activation_id=act.act_id, mean_w=round(act.mean_w, 1),
                          peak_w=round(act.peak_w, 1))

    def _apply_faults(
        self, c: Chunk, prev: tuple[float, float, dict[str, float]]
    ) -> None:
        """Signal faults on a rendered chunk (over-consumption was added before the counters)."""
        t_ms = c.ts_ms.copy()
        t_first, t_last = int(t_ms[0]), int(t_ms[-1])
        fs = self._fs
        hits = [f for f in self.faults if f.start_ms <= t_last and f.end_ms > t_first]
        # counter resets: reported = true counter - offset, the offset changing at each reset
        off_e = np.full(len(c), fs.counter_offset_wh)
        off_x = np.full(len(c), fs.export_offset_wh)
        off_i = {k: np.full(len(c), fs.index_offset_wh.get(k, 0.0)) for k in c.index_wh}
        for f in hits:
            if f.kind == "counter_reset" and f.start_ms >= t_first:
                i = int(np.searchsorted(t_ms, f.start_ms))
                fs.counter_offset_wh = float(c.energy_wh[i - 1]) if i else prev[0]
                fs.export_offset_wh = float(c.export_wh[i - 1]) if i else prev[1]
                fs.index_offset_wh = {k: float(a[i - 1]) if i else prev[2][k]
                                      for k, a in c.index_wh.items()}
                off_e[i:] = fs.counter_offset_wh
                off_x[i:] = fs.export_offset_wh
                for k in off_i:
                    off_i[k][i:] = fs.index_offset_wh[k]
        c.energy_wh -= off_e
        c.export_wh -= off_x
        for k, a in c.index_wh.items():
            a -= off_i[k]
        for f in hits:
            m = (t_ms >= f.start_ms) & (t_ms < f.end_ms)
            if f.kind == "spike":
                c.power_w[m] = f.params["power_w"]
            elif f.kind == "frozen":
                idx = np.flatnonzero(m)
                self._freeze(c, int(idx[0]), int(idx[-1]) + 1)
            elif f.kind == "offline":
                c.present[m] = False
            elif f.kind == "clock_skew":
                c.ts_ms[m] += int(f.params["skew_s"]) * 1000
            if self.collect_events and f.start_ms >= t_first:
                c.events.append(f.truth())
        fs.last = self._values_at(c, len(c) - 1)

    @staticmethod
    def _values_at(c: Chunk, i: int) -> dict[str, Any]:
        return {
            "power_w": float(c.power_w[i]), "energy_wh": float(c.energy_wh[i]),
            "export_wh": float(c.export_wh[i]), "voltage_v": float(c.voltage_v[i]),
            "current_a": float(c.current_a[i]), "apparent_va": float(c.apparent_va[i]),
            "index_wh": {k: float(a[i]) for k, a in c.index_wh.items()},
            "channels": {k: float(a[i]) for k, a in c.channels.items()},
        }

    def _freeze(self, c: Chunk, a: int, b: int) -> None:
        """Every value of samples ``a .. b-1`` stuck at the reading before ``a``."""
        src = self._values_at(c, a - 1) if a > 0 else self._fs.last
        if src is None:  # nothing reported yet: freeze at the first sample
            src = self._values_at(c, a)
        for name in ("power_w", "energy_wh", "export_wh", "voltage_v", "current_a",
                     "apparent_va"):
            getattr(c, name)[a:b] = src[name]
        for k, arr in c.index_wh.items():
            arr[a:b] = src["index_wh"][k]
        for k, arr in c.channels.items():
            arr[a:b] = src["channels"].get(k, 0.0)

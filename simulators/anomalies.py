"""Labelled household population for evaluating the anomaly detectors.

Compact and fast on purpose (numpy, default 1-minute resolution): each household gets a base
load with a cycling fridge, appliance events drawn around an archetype daily shape, optional
electric heating that cycles on a thermostat, day-to-day variation, supply voltage, a cumulative
energy counter, Kafka receive times with network latency, short dropouts and store-and-forward
bursts. Anomaly households then get injected anomalies of one type, with ground-truth labels
``(type, start_ms, end_ms)``. Everything is deterministic from the seed.

Not the realistic appliance-level simulator (that is ``simulators/household.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.domain.anomaly.alerts import ALERT_TYPES
from app.domain.registry import MeterInfo

T0_MS = 1_767_571_200_000  # 2026-01-05 00:00 UTC, a Monday
MIN_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# activity shape by local hour (relative), per archetype; heating handled separately
_SHAPES = {
    "small_flat": (0.15, 0.1, 0.05, 0.05, 0.05, 0.1, 0.6, 1.2, 1.0, 0.4, 0.3, 0.4,
                   0.7, 0.6, 0.4, 0.4, 0.5, 1.0, 1.6, 1.8, 1.6, 1.2, 0.8, 0.4),
    "family_house": (0.15, 0.1, 0.05, 0.05, 0.05, 0.15, 0.8, 1.5, 1.2, 0.6, 0.6, 0.7,
                     1.1, 0.9, 0.7, 0.7, 0.9, 1.4, 2.0, 2.1, 1.8, 1.4, 0.9, 0.5),
}  # fmt: skip
_SHAPES["electric_heating"] = _SHAPES["family_house"]
_ARCH_KVA = {"small_flat": 6000.0, "family_house": 9000.0, "electric_heating": 12000.0}
_ACTIVITY_W = {"small_flat": 220.0, "family_house": 420.0, "electric_heating": 420.0}
# appliance mixture: (power W, duration min, relative frequency)
_APPLIANCES = ((2200.0, 3, 0.30), (1500.0, 30, 0.12), (150.0, 90, 0.30), (600.0, 15, 0.20),
               (2000.0, 25, 0.05), (1000.0, 60, 0.03))  # fmt: skip


@dataclass(frozen=True)
class Label:
    type: str
    start_ms: int
    end_ms: int


@dataclass
class SimHousehold:
    household_id: str
    meter_id: str
    info: MeterInfo
    archetype: str
    ts_ms: I64
    power_w: F64
    energy_wh: F64
    voltage_v: F64
    """NaN where the meter does not report voltage."""
    received_ms: I64
    labels: list[Label] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def chunks(self, chunk_ms: int) -> Iterator[tuple[int, int, int]]:
        """(start index, end index, chunk end time) of consecutive arrival-time chunks."""
        key = self.received_ms // chunk_ms
        brk = np.flatnonzero(key[1:] != key[:-1]) + 1
        starts = [0, *brk.tolist()]
        ends = [*brk.tolist(), len(self)]
        for s, e in zip(starts, ends, strict=True):
            yield s, e, int((key[s] + 1) * chunk_ms)


def _household(
    rng: np.random.Generator, hid: int, days: int, step_s: int, clean_noise: bool
) -> tuple[SimHousehold, F64, F64, F64]:
    arch = str(rng.choice(["small_flat", "family_house", "electric_heating"], p=[0.35, 0.45, 0.2]))
    n = days * 86_400 // step_s
    spm = 60 // step_s if step_s < 60 else 1  # samples per minute
    minutes = np.arange(n) * step_s / 60.0
    hod = ((minutes // 60) % 24).astype(np.int64)
    day = (minutes // 1440).astype(np.int64)
    # base: standby + cycling fridge
    standby = rng.uniform(40.0, 180.0)
    fridge_w = rng.uniform(60.0, 120.0)
    period = rng.uniform(35.0, 60.0)
    duty = rng.uniform(0.3, 0.45)
    phase = rng.uniform(0.0, period)
    base = standby + fridge_w * (((minutes + phase) % period) < duty * period)
    # activity events around the archetype shape, scaled per household and per day
    scale = rng.lognormal(0.0, 0.3)
    daily = rng.lognormal(0.0, 0.2, size=days)
    shape = np.asarray(_SHAPES[arch])
    mean_energy = sum(pw * d * f for pw, d, f in _APPLIANCES) / sum(f for *_, f in _APPLIANCES)
    rate_per_min = _ACTIVITY_W[arch] * scale * shape[hod] * daily[day] / mean_energy
    n_min = days * 1440
    starts = np.flatnonzero(rng.random(n_min) < rate_per_min[:: max(spm, 1)][:n_min] if spm > 1
                            else rng.random(n_min) < _per_minute(rate_per_min, step_s))  # fmt: skip
    activity = np.zeros(n)
    probs = np.asarray([f for *_, f in _APPLIANCES])
    kinds = rng.choice(len(_APPLIANCES), size=starts.size, p=probs / probs.sum())
    for m, k in zip(starts.tolist(), kinds.tolist(), strict=True):
        pw, dur, _ = _APPLIANCES[k]
        i = m * 60 // step_s
        activity[i : i + max(1, dur * 60 // step_s)] += pw * rng.uniform(0.8, 1.2)
    heating = np.zeros(n)
    if arch == "electric_heating":
        kw = rng.uniform(2500.0, 5000.0)
        cold = np.clip(rng.normal(0.45, 0.1, size=days), 0.15, 0.8)
        setback = np.where((hod >= 23) | (hod < 6), 0.6, 1.0)
        d = cold[day] * setback
        cyc = 20.0
        heating = kw * ((((minutes + rng.uniform(0, cyc)) % cyc) / cyc) < d)
    noise = rng.normal(0.0, 4.0, size=n)
    kva = _ARCH_KVA[arch]
    power = np.clip(base + activity + heating + noise, 0.0, 0.95 * kva)  # the breaker
    v_off = rng.normal(0.0, 2.5)
    voltage = (230.0 + v_off + 2.0 * np.sin(2 * np.pi * (minutes / 1440.0 - 0.3))
               - 0.0008 * power + rng.normal(0.0, 0.6, size=n))  # fmt: skip
    if rng.random() < 0.3:
        voltage[:] = np.nan
    ts = T0_MS + np.arange(n, dtype=np.int64) * step_s * 1000
    received = ts + rng.integers(150, 3000, size=n)
    keep = np.ones(n, dtype=bool)
    if clean_noise:  # short dropouts and store-and-forward bursts, all below offline_after
        for _ in range(days * 3):
            i = int(rng.integers(0, n))
            keep[i : i + int(rng.integers(1, 6)) * 60 // step_s] = False
        for _ in range(days):
            i = int(rng.integers(0, n - 1))
            j = min(n - 1, i + int(rng.integers(2, 7)) * 60 // step_s)
            received[i:j] = received[j]
    info = MeterInfo(f"hh-{hid:06d}", kva, False, "UTC")
    hh = SimHousehold(
        household_id=info.household_id,
        meter_id=f"m-{hid:06d}",
        info=info,
        archetype=arch,
        ts_ms=ts,
        power_w=power,
        energy_wh=np.empty(0),
        voltage_v=voltage,
        received_ms=received,
    )
    return hh, keep.astype(np.float64), base, activity + heating


def _per_minute(rate: F64, step_s: int) -> F64:
    """Rate per minute sampled once per minute from a grid coarser than a minute."""
    per = max(1, step_s // 60)
    return np.repeat(rate, per)[: rate.size * per] / per


def _inject(
    rng: np.random.Generator, hh: SimHousehold, kind: str, days: int, warmup_days: int,
    step_s: int, keep: F64, base: F64, active: F64,
) -> list[Label]:  # fmt: skip
    n = len(hh)
    step_ms = step_s * 1000
    lo = warmup_days * DAY_MS // step_ms
    hi = n - DAY_MS // (2 * step_ms)
    p, t0 = hh.power_w, T0_MS

    def at(i: int) -> int:
        return t0 + i * step_ms

    def span(min_h: float, max_h: float) -> tuple[int, int]:
        d = int(rng.uniform(min_h, max_h) * HOUR_MS / step_ms)
        i = int(rng.integers(lo, max(lo + 1, hi - d)))
        return i, min(n, i + d)

    labels: list[Label] = []
    if kind == "spike":
        for _ in range(2):
            i, j = span(0.0, 0.0)
            j = i + max(1, int(rng.integers(1, 4)) * MIN_MS // step_ms)
            p[i:j] = hh.info.max_power_w * rng.uniform(1.1, 1.6)
            labels.append(Label(kind, at(i), at(j)))
    elif kind == "over_consumption":
        i, j = span(6.0, 30.0)
        p[i:j] = np.minimum(p[i:j] + rng.uniform(2000.0, 3500.0), 0.95 * hh.info.max_power_w)
        labels.append(Label(kind, at(i), at(j)))
    elif kind == "low_consumption":
        i, j = span(36.0, 96.0)
        p[i:j] = np.maximum(p[i:j] - active[i:j], 0.0)
        labels.append(Label(kind, at(i), at(j)))
    elif kind == "base_load_rise":
        i = int(rng.integers(lo - 2 * DAY_MS // step_ms, lo + DAY_MS // step_ms))
        ramp = int(rng.uniform(2.0, 4.0) * DAY_MS / step_ms)
        rise = rng.uniform(80.0, 200.0)
        p[i:] = np.minimum(
            p[i:] + rise * np.minimum(np.arange(n - i) / ramp, 1.0), 0.95 * hh.info.max_power_w
        )
        labels.append(Label(kind, at(i), at(n)))
    elif kind == "offline":
        for _ in range(2):
            i, j = span(0.7, 18.0)
            keep[i:j] = 0.0
            labels.append(Label(kind, at(i - 1), at(j)))
    elif kind == "frozen_value":
        i, j = span(3.0, 12.0)
        p[i:j] = p[i]
        hh.voltage_v[i:j] = hh.voltage_v[i]
        labels.append(Label(kind, at(i), at(j)))
        keep[i:j] = np.maximum(keep[i:j], 1.0)
        keep[i:j] += 1.0  # marker: energy frozen too (applied when building the counter)
    elif kind == "counter_backwards":
        i, _ = span(0.0, 0.0)
        keep[i] = -1.0  # marker consumed by the counter builder
        labels.append(Label(kind, at(i), at(i + 1)))
    elif kind == "clock_skew":
        i, j = span(2.0, 12.0)
        skew = int(rng.choice([-1, 1]) * rng.uniform(10.0, 180.0) * MIN_MS)
        hh.ts_ms[i:j] += skew
        labels.append(Label(kind, at(i), at(j)))
    elif kind == "voltage":
        i, j = span(2.0, 8.0)
        if np.isnan(hh.voltage_v[0]):
            hh.voltage_v[:] = 230.0 + rng.normal(0.0, 0.6, size=n)
        target = rng.uniform(255.0, 262.0) if rng.random() < 0.5 else rng.uniform(193.0, 204.0)
        hh.voltage_v[i:j] += target - float(np.nanmean(hh.voltage_v[i:j]))
        labels.append(Label(kind, at(i), at(j)))
    return labels


def _finish(rng: np.random.Generator, hh: SimHousehold, keep: F64, step_s: int) -> None:
    # energy counter from the (possibly injected) power; frozen stretches freeze it too
    inc = hh.power_w * step_s / 3600.0
    inc[keep >= 2.0] = 0.0
    energy = rng.uniform(1e6, 5e7) + np.cumsum(inc)
    for i in np.flatnonzero(keep < 0).tolist():
        drop = energy[i] if rng.random() < 0.5 else rng.uniform(1000.0, 50_000.0)
        energy[i:] -= drop
    hh.energy_wh = np.round(energy, 1)
    hh.power_w = np.round(hh.power_w, 1)
    hh.voltage_v = np.round(hh.voltage_v, 1)
    sel = keep != 0.0
    hh.ts_ms, hh.received_ms = hh.ts_ms[sel], hh.received_ms[sel]
    hh.power_w, hh.energy_wh, hh.voltage_v = hh.power_w[sel], hh.energy_wh[sel], hh.voltage_v[sel]
    order = np.argsort(hh.received_ms, kind="stable")
    hh.ts_ms, hh.received_ms = hh.ts_ms[order], hh.received_ms[order]
    hh.power_w, hh.energy_wh, hh.voltage_v = (
        hh.power_w[order], hh.energy_wh[order], hh.voltage_v[order]
    )  # fmt: skip


def population(
    seed: int = 7,
    n_per_type: int = 12,
    n_clean: int = 20,
    days: int = 21,
    warmup_days: int = 14,
    step_s: int = 60,
) -> list[SimHousehold]:
    """Anomaly households (``n_per_type`` per alert type, anomalies after ``warmup_days``)
    followed by ``n_clean`` clean ones, ordered as generated (type by type)."""
    rng = np.random.default_rng(seed)
    out: list[SimHousehold] = []
    kinds = [k for k in ALERT_TYPES for _ in range(n_per_type)] + [""] * n_clean
    for hid, kind in enumerate(kinds):
        hh, keep, base, active = _household(rng, hid, days, step_s, clean_noise=True)
        if kind:
            hh.labels = _inject(rng, hh, kind, days, warmup_days, step_s, keep, base, active)
        _finish(rng, hh, keep, step_s)
        out.append(hh)
    return out


def clean_population(
    seed: int = 11, n: int = 100, days: int = 30, step_s: int = 60
) -> list[SimHousehold]:
    """Households without any anomaly (for the false-alert rate)."""
    rng = np.random.default_rng(seed)
    out = []
    for hid in range(n):
        hh, keep, _, _ = _household(rng, 100_000 + hid, days, step_s, clean_noise=True)
        _finish(rng, hh, keep, step_s)
        out.append(hh)
    return out

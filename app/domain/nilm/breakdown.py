"""Energy of one chunk: sub-metered + NILM-estimated appliances + unidentified residual.

The parts always add up to the household total of the chunk:
``total = sum(measured) + sum(estimated) + residual``. NILM estimates are scaled down when they
would exceed what the mains meter leaves after the sub-meters.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from app.domain.nilm.model import EnergyBreakdown

MS_PER_H = 3_600_000.0


def interval_ms(t: npt.NDArray[np.int64], last_ts: int, max_gap_ms: int) -> npt.NDArray[np.int64]:
    """Time each sample's power is held for: since the previous sample, gaps capped."""
    prev = np.empty_like(t)
    prev[1:] = t[:-1]
    prev[0] = last_ts if last_ts >= 0 else t[0]
    out: npt.NDArray[np.int64] = np.clip(t - prev, 0, max_gap_ms)
    return out


def energy_wh(power_w: npt.NDArray[np.float64], dt_ms: npt.NDArray[np.int64]) -> float:
    return float(np.dot(power_w, dt_ms.astype(np.float64)) / MS_PER_H)


def build(start_ms: int, end_ms: int, total_wh: float, measured_wh: Mapping[str, float],
          loads: list[tuple[str, float, int, int]]) -> EnergyBreakdown:
    """``loads``: (appliance, power_w, on_ms, off_ms) intervals, clipped to the chunk here.

    Loads labelled like a sub-metered appliance are left to the sub-meter (no double count).
    """
    est: dict[str, float] = {}
    for name, pw, on, off in loads:
        if name in measured_wh:
            continue
        ov = min(off, end_ms) - max(on, start_ms)
        if ov > 0:
            est[name] = est.get(name, 0.0) + pw * ov / MS_PER_H
    meas = dict(measured_wh)
    room = max(total_wh - sum(meas.values()), 0.0)
    s = sum(est.values())
    if s > room and s > 0:
        est = {k: v * room / s for k, v in est.items()}
    residual = total_wh - sum(meas.values()) - sum(est.values())
    return EnergyBreakdown(start_ms=start_ms, end_ms=end_ms, total_wh=total_wh,
                           measured_wh=meas, estimated_wh=est, residual_wh=residual)

"""The household's learned load profile: EWMA mean and variance of hourly mean power.

Two tables are learned side by side: 168 hour-of-week slots (one update per week, used once a
slot has ``week_min_count`` weeks) and 24 hour-of-day slots (one update per day, the fallback
while the week table is young). Before either is ready the archetype is the baseline.

The tables live in the detector state as one compact ``bytes`` blob (float32), so a household's
state stays small (2.3 kB) when it is written whole to a changelog table.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from app.domain.anomaly.archetypes import ARCHETYPES
from app.domain.anomaly.params import AnomalyParams

WEEK_SLOTS: Final = 168
DAY_SLOTS: Final = 24
_W_MEAN, _W_VAR, _W_N = 0, WEEK_SLOTS, 2 * WEEK_SLOTS
_D0 = 3 * WEEK_SLOTS
_D_MEAN, _D_VAR, _D_N = _D0, _D0 + DAY_SLOTS, _D0 + 2 * DAY_SLOTS
_SIZE: Final = 3 * WEEK_SLOTS + 3 * DAY_SLOTS

SOURCE_ARCHETYPE: Final = 0
SOURCE_DAY: Final = 1
SOURCE_WEEK: Final = 2

Profile = npt.NDArray[np.float32]


def empty_profile() -> bytes:
    return np.zeros(_SIZE, dtype=np.float32).tobytes()


def decode(blob: bytes) -> Profile:
    """A writable float32 copy of the profile tables."""
    return np.frombuffer(blob, dtype=np.float32).copy()


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65_536)
def _slots_of_quarter(quarter: int, tz: str) -> tuple[int, int]:
    dt = datetime.fromtimestamp(quarter * 900.0, tz=_zone(tz))
    return dt.weekday() * 24 + dt.hour, dt.hour


def local_slots(ts_ms: int, tz: str) -> tuple[int, int]:
    """(hour of week 0..167 with Monday 00h = 0, hour of day) in the household's local time."""
    return _slots_of_quarter(ts_ms // 900_000, tz)


def baseline(
    prof: Profile | None, how: int, hod: int, archetype: str, params: AnomalyParams
) -> tuple[float, float, int]:
    """(expected mean W, spread W, source) for one local hour."""
    if prof is not None:
        if prof[_W_N + how] >= params.week_min_count:
            mu, var, src = float(prof[_W_MEAN + how]), float(prof[_W_VAR + how]), SOURCE_WEEK
        elif prof[_D_N + hod] >= params.day_min_count:
            mu, var, src = float(prof[_D_MEAN + hod]), float(prof[_D_VAR + hod]), SOURCE_DAY
        else:
            src = SOURCE_ARCHETYPE
        if src != SOURCE_ARCHETYPE:
            sd = max(var**0.5, params.sd_floor_frac * mu, params.sd_floor_w)
            return mu, sd, src
    arch = ARCHETYPES[archetype]
    return arch.mean_w[hod], arch.sd_w[hod], SOURCE_ARCHETYPE


def _ewma(prof: Profile, i_mean: int, i_var: int, i_n: int, x: float, alpha_min: float) -> None:
    n = float(prof[i_n])
    alpha = max(1.0 / (n + 1.0), alpha_min)
    mu = float(prof[i_mean])
    d = x - mu
    prof[i_mean] = mu + alpha * d
    prof[i_var] = (1.0 - alpha) * (float(prof[i_var]) + alpha * d * d)
    prof[i_n] = min(n + 1.0, 10_000.0)


def update(prof: Profile, how: int, hod: int, x: float, params: AnomalyParams) -> None:
    """Learn one hourly mean ``x`` (W). Clipped at mean + clip_sd * sd once a slot has history."""
    for i_mean, i_var, i_n, alpha in (
        (_W_MEAN + how, _W_VAR + how, _W_N + how, params.week_alpha),
        (_D_MEAN + hod, _D_VAR + hod, _D_N + hod, params.day_alpha),
    ):
        xi = x
        if prof[i_n] >= 2:
            mu = float(prof[i_mean])
            sd = max(float(prof[i_var]) ** 0.5, params.sd_floor_frac * mu, params.sd_floor_w)
            xi = min(x, mu + params.clip_sd * sd)
        _ewma(prof, i_mean, i_var, i_n, xi, alpha)


def quiet_level(prof: Profile | None, params: AnomalyParams) -> float | None:
    """Lowest learned hour-of-day mean (the household's quiet hours, fridge and standby
    included), or None until every hour of the day has ``day_min_count`` days."""
    if prof is None:
        return None
    counts = prof[_D_N : _D_N + DAY_SLOTS]
    if float(counts.min()) < params.day_min_count:
        return None
    return float(prof[_D_MEAN : _D_MEAN + DAY_SLOTS].min())


# --- switching-event rates (the activity profile of low-consumption detection) -----------
# 24 hour-of-day slots of the EWMA mean number of switching events per hour. They are learned
# at the same moments as the hour-of-day level slots, so those slots' counts serve for both.


def empty_rates() -> bytes:
    return np.zeros(DAY_SLOTS, dtype=np.float32).tobytes()


def decode_rates(blob: bytes) -> Profile:
    """A writable float32 copy of the hour-of-day event rates (zeros for an old, empty blob)."""
    if not blob:
        return np.zeros(DAY_SLOTS, dtype=np.float32)
    return np.frombuffer(blob, dtype=np.float32).copy()


def expected_rate(
    prof: Profile | None, rates: Profile | None, hod: int, params: AnomalyParams
) -> float:
    """Learned switching events per hour for one local hour of day; -1 while not learned."""
    if prof is None or rates is None or prof[_D_N + hod] < params.day_min_count:
        return -1.0
    return float(rates[hod])


def update_rate(prof: Profile, rates: Profile, hod: int, x: float, params: AnomalyParams) -> None:
    """Learn one hour's event count ``x`` (per hour). Call before :func:`update`, whose
    hour-of-day count is the weight. Clipped at mean + 4 Poisson sd once the slot has history."""
    n = float(prof[_D_N + hod])
    mu = float(rates[hod])
    if n >= 2:
        x = min(x, mu + 4.0 * (mu + 1.0) ** 0.5)
    alpha = max(1.0 / (n + 1.0), params.day_alpha)
    rates[hod] = mu + alpha * (x - mu)

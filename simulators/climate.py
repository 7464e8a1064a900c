"""Weather, daylight, local time and counter-based noise for the household simulator.

Everything here is a pure function of absolute time (epoch seconds) and a seed, so a household
rendered in chunks of 1 s, 60 s or a whole day gives the same values ("chunk invariance").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

DAY_S = 86_400
YEAR_DAYS = 365.2425

_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_MASK64 = (1 << 64) - 1


def hash_uniform(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) numbers, one per element of the integer array ``t`` (splitmix64)."""
    key = np.uint64(((seed * 0x2545F4914F6CDD1D) ^ (stream * 0x632BE59BD9B4E019)) & _MASK64)
    x = np.asarray(t, dtype=np.int64).astype(np.uint64) * _G
    x += key
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return (x >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def hash_normal(seed: int, stream: int, t: np.ndarray) -> np.ndarray:
    """Standard normal numbers keyed by ``t`` (Box-Muller on two hashed streams)."""
    u1 = hash_uniform(seed, stream, t)
    u2 = hash_uniform(seed, stream + 7919, t)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


@dataclass(frozen=True, slots=True)
class Climate:
    mean_c: float
    """Annual mean outdoor temperature (°C)."""
    season_amp_c: float
    """Half the winter-summer swing; negative in the southern hemisphere."""
    daily_amp_c: float
    daylength_amp_h: float
    """Half the difference between the longest and the shortest day (hours)."""
    solar_noon_utc_h: float
    region_seed: int
    """Households in one region share the weather."""


CLIMATES: dict[str, Climate] = {
    "Europe/Paris": Climate(12.5, 8.0, 4.0, 4.0, 11.85, 1),
    "Europe/Brussels": Climate(10.5, 7.5, 3.5, 4.3, 11.70, 2),
    "Europe/London": Climate(11.0, 6.5, 3.5, 4.4, 12.00, 3),
    "Indian/Reunion": Climate(24.0, -2.5, 3.0, 1.0, 8.30, 4),
    "America/Martinique": Climate(27.0, 1.0, 3.0, 0.8, 16.07, 5),
}


def climate_for(timezone: str) -> Climate:
    return CLIMATES.get(timezone, CLIMATES["Europe/Paris"])


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def utc_offset_s(timezone: str, t_s: int) -> int:
    """Offset of local time from UTC at epoch second ``t_s``."""
    off = datetime.fromtimestamp(t_s, tz=UTC).astimezone(_zone(timezone)).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def local_offsets(timezone: str, t0: int, n: int) -> np.ndarray:
    """UTC offset (s) of each second ``t0 .. t0+n-1``; handles one DST change in the span."""
    a = utc_offset_s(timezone, t0)
    b = utc_offset_s(timezone, t0 + n - 1)
    out = np.full(n, a, dtype=np.int64)
    if a != b:
        lo, hi = 0, n - 1  # offset(lo) == a, offset(hi) == b
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if utc_offset_s(timezone, t0 + mid) == a:
                lo = mid
            else:
                hi = mid
        out[hi:] = b
    return out


def day_of_year(t: np.ndarray) -> np.ndarray:
    """Fractional day of the year (0 = 1 January), good to a day over decades."""
    days = t / DAY_S
    return np.mod(days, YEAR_DAYS)


@lru_cache(maxsize=4096)
def _weather(region_seed: int, day: int) -> float:
    """Weather offset (°C) of one region on one day."""
    return 3.0 * float(hash_normal(region_seed, 11, np.array([day]))[0])


def outdoor_temp_c(climate: Climate, t: np.ndarray) -> np.ndarray:
    """Outdoor temperature: seasons, day/night, and a shared weather offset per day."""
    doy = day_of_year(t)
    season = climate.mean_c - climate.season_amp_c * np.cos(2 * np.pi * (doy - 15) / YEAR_DAYS)
    solar_h = np.mod(t / 3600.0 - climate.solar_noon_utc_h + 12.0, 24.0)
    daily = -climate.daily_amp_c * np.cos(2 * np.pi * (solar_h - 3.0) / 24.0)
    # Weather: a value per day drawn per region, linearly interpolated (smooth over midnight).
    day = np.floor(t / DAY_S).astype(np.int64)
    frac = t / DAY_S - day
    d0 = int(day.min())
    table = np.array([_weather(climate.region_seed, d) for d in range(d0, int(day.max()) + 2)])
    w0 = table[day - d0]
    w1 = table[day - d0 + 1]
    weather = w0 + (w1 - w0) * frac
    out: np.ndarray = season + daily + weather
    return out


def daylight(climate: Climate, t: np.ndarray) -> np.ndarray:
    """Clear-sky sun elevation factor in [0, 1]: 0 at night, 1 at a summer-solstice noon."""
    doy = day_of_year(t)
    daylen = 12.0 + climate.daylength_amp_h * np.sin(2 * np.pi * (doy - 80) / YEAR_DAYS)
    hours_from_noon = np.mod(t / 3600.0 - climate.solar_noon_utc_h + 12.0, 24.0) - 12.0
    x = 1.0 - np.abs(hours_from_noon) / (daylen / 2.0)
    peak = 0.35 + 0.65 * (daylen - (12 - abs(climate.daylength_amp_h))) / max(
        2 * abs(climate.daylength_amp_h), 1e-9
    )
    out: np.ndarray = np.clip(np.sin(np.pi / 2 * np.clip(x, 0.0, 1.0)), 0.0, 1.0) ** 1.3 * peak
    return out


def sun_times_h(climate: Climate, t_s: int, offset_s: int) -> tuple[float, float]:
    """Local clock hours of sunrise and sunset on the day of ``t_s``."""
    doy = float(day_of_year(np.array([t_s], dtype=np.float64))[0])
    daylen = 12.0 + climate.daylength_amp_h * float(np.sin(2 * np.pi * (doy - 80) / YEAR_DAYS))
    noon_local = (climate.solar_noon_utc_h + offset_s / 3600.0) % 24.0
    return noon_local - daylen / 2.0, noon_local + daylen / 2.0

"""Archetype load profiles: the baseline of a household that has too little history.

Hourly mean power (W) by local hour of day, with a deliberately wide spread: an archetype only
has to keep a cold-start household from alarming on ordinary use while catching gross excess.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Archetype(NamedTuple):
    name: str
    mean_w: tuple[float, ...]
    """24 hourly means, local time."""
    sd_w: tuple[float, ...]


def _sd(mean: tuple[float, ...], frac: float, floor: float) -> tuple[float, ...]:
    return tuple(max(floor, frac * m) for m in mean)


_SMALL = (
    120, 110, 105, 100, 100, 105, 160, 260, 240, 170, 150, 160,
    210, 190, 160, 160, 180, 260, 380, 430, 400, 330, 240, 160,
)  # fmt: skip
_FAMILY = (
    220, 190, 180, 175, 175, 190, 330, 620, 560, 400, 360, 400,
    560, 480, 400, 400, 480, 700, 1050, 1150, 1000, 800, 560, 330,
)  # fmt: skip
_HEATING = (
    1300, 1250, 1200, 1200, 1250, 1400, 1900, 2300, 2000, 1500, 1300, 1250,
    1350, 1250, 1150, 1150, 1350, 1900, 2500, 2600, 2400, 2100, 1800, 1500,
)  # fmt: skip

ARCHETYPES: Final[dict[str, Archetype]] = {
    "small_flat": Archetype("small_flat", tuple(map(float, _SMALL)), _sd(_SMALL, 0.8, 150.0)),
    "family_house": Archetype(
        "family_house", tuple(map(float, _FAMILY)), _sd(_FAMILY, 0.8, 250.0)
    ),
    "electric_heating": Archetype(
        "electric_heating", tuple(map(float, _HEATING)), _sd(_HEATING, 0.6, 500.0)
    ),
}


def archetype_for(max_power_w: float) -> str:
    """Default archetype from the connection size (subscribed power correlates with usage)."""
    if max_power_w <= 6_000.0:
        return "small_flat"
    if max_power_w <= 9_000.0:
        return "family_house"
    return "electric_heating"

"""Which resolution a range query reads: app.domain.resolution."""

from __future__ import annotations

import pytest

from app.domain.resolution import (
    Resolution,
    choose,
    measurement_for,
    parse_duration_ms,
    resolutions,
)

S, M, H, D = 1_000, 60_000, 3_600_000, 86_400_000
NOW = 1_795_000_000_000
DEFAULT = resolutions({"raw": "7d", "1m": "90d", "15m": "730d", "1h": "3650d", "1d": "3650d"})


@pytest.mark.parametrize(("text", "ms"), [
    ("7d", 7 * D), ("90d", 90 * D), ("730d", 730 * D), ("3650d", 3650 * D), ("52w", 364 * D),
    ("1h30m", 90 * M), ("15m", 15 * M), ("500ms", 500), ("10s", 10 * S), ("INF", 0),
    ("inf", 0), ("0s", 0),
])
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "7d garbage", "-7d", "1.5h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text)


@pytest.mark.parametrize(("span_ms", "age_ms", "expected"), [
    (10 * M, 0, "raw"),
    (H, 0, "raw"),              # 3 600 points
    (H + 30 * M, 0, "1m"),     # 5 400 raw points > 5 000
    (D, 0, "1m"),               # 1 440 points
    (3 * D, 0, "1m"),           # 4 320
    (7 * D, 0, "15m"),          # 10 080 one-minute points > 5 000
    (30 * D, 0, "15m"),         # 2 880
    (90 * D, 0, "1h"),          # 8 640 quarter-hours > 5 000 -> 2 160 hours
    (365 * D, 0, "1d"),         # 8 760 hours > 5 000 -> 365 days
    (10 * 365 * D, 0, "1d"),
    # a short range too old for the finer series: the finest that still holds it
    (H, 8 * D, "1m"),
    (H, 100 * D, "15m"),
    (H, 800 * D, "1h"),
    # older than every retention: the longest-retained series
    (H, 4000 * D, "1d"),
])
def test_choose_default_rule(span_ms: int, age_ms: int, expected: str) -> None:
    end = NOW - age_ms
    res = choose(end - span_ms, end, NOW, DEFAULT)
    assert res.name == expected
    assert res.rp == expected
    assert res.measurement == measurement_for(expected)


def test_a_year_is_never_read_from_the_raw_series() -> None:
    for max_points in (100, 5_000, 100_000, 10_000_000):
        assert choose(NOW - 365 * D, NOW, NOW, DEFAULT, max_points).name != "raw"


def test_max_points_moves_the_choice() -> None:
    assert choose(NOW - D, NOW, NOW, DEFAULT, max_points=100_000).name == "raw"
    assert choose(NOW - D, NOW, NOW, DEFAULT, max_points=24).name == "1h"
    assert choose(NOW - D, NOW, NOW, DEFAULT, max_points=1).name == "1d"


def test_infinite_retention_holds_everything() -> None:
    res = resolutions({"raw": "INF", "1h": "1d"})
    assert [r.name for r in res] == ["raw", "1h"]
    assert choose(0, H, NOW, res).name == "raw"


def test_order_of_available_does_not_matter() -> None:
    shuffled: list[Resolution] = [DEFAULT[3], DEFAULT[0], DEFAULT[4], DEFAULT[2], DEFAULT[1]]
    assert choose(NOW - D, NOW, NOW, shuffled).name == "1m"


def test_choose_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no resolution"):
        choose(0, 1, NOW, [])
    with pytest.raises(ValueError, match="empty range"):
        choose(10, 1, NOW, DEFAULT)

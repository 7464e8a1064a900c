"""InfluxSink's request body helpers: gzip (ISA-L or zlib) and points per measurement."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from app.services import influx

LINES = [
    b"reading,household=hh-1,meter=m-1,source=json power_w=1.0 1795000000000",
    b"reading,household=hh-2,meter=m-2,source=json power_w=2.0 1795000000000",
    b"reading,household=hh-3,meter=m-3,source=json power_w=3.0 1795000001000",
]


@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 9])
def test_gzip_body_is_standard_gzip(level: int) -> None:
    raw = b"\n".join(LINES * 2000)
    assert gzip.decompress(influx._gzip_compress(raw, level)) == raw


def test_gzip_falls_back_to_zlib_without_isal(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b"\n".join(LINES * 100)
    monkeypatch.setattr(influx, "_isal_zlib", None)
    assert gzip.decompress(influx._gzip_compress(raw, 1)) == raw


def test_isal_is_installed() -> None:
    # a dependency (pyproject.toml, constraints.txt): without it the sink costs ~4x the gzip CPU
    assert influx._isal_zlib is not None


@pytest.mark.parametrize("lines", [
    LINES,
    LINES[:1],
    [b"reading power_w=1.0 1", b"reading power_w=2.0 2"],  # no tags
    [b"m power_w=1.0 1"],
    [*LINES, b"reading power_w=9.0 9"],  # one without tags: not the one-scan case
    [*LINES, b"readings,household=hh-1 power_w=1.0 1"],  # a longer name, same prefix
    [b"readings,household=hh-1 power_w=1.0 1", *LINES],
    LINES + [b"channel_power,household=hh-1,appliance=kettle power_w=2000.0 1"] * 3,
    [b"alert,type=spike status=1 1", *LINES, b"channel_power,appliance=x power_w=1 1"],
    [b"my\\ measurement,household=hh-1 v=1 1", b"my\\ measurement,household=hh-2 v=1 1"],
    [b"a,t=1 v=1 1", b"b,t=1 v=1 1", b"a,t=1 v=1 2"],
])
def test_points_per_measurement(lines: list[bytes]) -> None:
    want = Counter(influx._measurement(x) for x in lines)
    assert dict(influx._count_measurements(b"\n".join(lines), len(lines))) == dict(want)

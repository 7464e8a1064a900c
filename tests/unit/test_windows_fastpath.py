"""The one-window fast path of ``apply`` gives exactly the general path's results."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.reading import Reading
from app.domain.windows import (
    ApplyResult,
    HouseholdWindows,
    WindowParams,
    _apply_general,
    _apply_in_window,
    advance,
    apply,
)
from tests.unit.test_windows_properties import scenarios

T0 = 1_795_647_600_000  # 2026-11-26T00:00:00+01:00
PARIS = "Europe/Paris"
ENC = msgspec.msgpack.Encoder()
DEC = msgspec.msgpack.Decoder(HouseholdWindows)
LIVE_DTS = [1000] * 6 + [250, 250, 50] + [7000, 59_999, 61_000, 400_000]
"""Mostly 1 Hz or faster (the fast path), with the odd gap that closes windows."""


def step(
    state: HouseholdWindows | None,
    batch: list[Reading],
    params: WindowParams,
    tz: str,
    now_ms: int | None,
) -> tuple[ApplyResult, bool]:
    """``apply`` and the general path on the same input: identical, bit for bit."""
    got = apply(state, batch, params, tz, now_ms=now_ms)
    limit = now_ms + params.max_future_skew_ms if now_ms is not None else None
    want = _apply_general(state, batch, params, tz, limit)
    assert got == want
    assert ENC.encode(got) == ENC.encode(want)  # same types too (int vs float)
    fast = state is not None and _apply_in_window(state, batch, params, tz, limit) is not None
    return got, fast


@settings(max_examples=150, deadline=None)
@given(
    scenarios(dts=LIVE_DTS),
    st.lists(st.integers(1, 6), min_size=1, max_size=20),
    st.lists(st.sampled_from([None, -400_000, 0, 2_000, 400_000]), min_size=1, max_size=7),
    st.sets(st.integers(0, 200), max_size=3),
)
def test_fast_path_equals_general_path_call_by_call(
    scenario: tuple[list[Reading], WindowParams, str],
    sizes: list[int],
    skews: list[int | None],
    advance_at: set[int],
) -> None:
    readings, params, tz = scenario
    state: HouseholdWindows | None = None
    i = call = 0
    while i < len(readings):
        batch = readings[i : i + sizes[call % len(sizes)]]
        skew = skews[call % len(skews)]
        now_ms = None if skew is None else batch[0].ts_ms + skew
        res, _ = step(state, batch, params, tz, now_ms)
        state = res.state
        if state is not None:
            state = DEC.decode(ENC.encode(state))  # as stored in a table
            if call in advance_at:
                state, _ = advance(state, state.watermark_ms + 1_000_000, params)
        i += len(batch)
        call += 1


def test_live_meter_takes_the_fast_path_and_matches() -> None:
    params = WindowParams()
    for counter in (True, False):
        state: HouseholdWindows | None = None
        fast = closed = 0
        for s in range(1800):  # 30 min at 1 Hz, one reading per call
            energy = 10.0 + s * 0.1 if counter else None
            r = Reading("hh1", "m1", T0 + s * 1000 + 300, 500.0 + s % 7, energy)
            res, was_fast = step(state, [r], params, PARIS, r.ts_ms)
            fast += was_fast
            closed += len(res.closed)
            state = res.state
        # the general path only for the first 30 s (nothing committed yet: fast too) and
        # once a minute when the smallest window closes
        assert fast >= 1800 - 31 - 1
        assert closed == 29 + 1  # 29 minutes + the first quarter hour


def test_meter_swap_while_nothing_commits_matches() -> None:
    # 1 Hz, then 20 Hz with the meter changing back and forth: with a 10 s grace the dense
    # readings move the frontier by 50 ms each, so most calls commit nothing
    params = WindowParams(grace_ms=10_000)
    times = [T0 + s * 1000 for s in range(120)] + [T0 + 120_000 + j * 50 for j in range(200)]
    meters = ["m1"] * 120 + [("m1", "m2", "m1", "m1", "m2")[j // 7 % 5] for j in range(200)]
    state: HouseholdWindows | None = None
    fast = i = 0
    while i < len(times):
        batch = [
            Reading("hh1", meters[j], times[j], 400.0 + j % 5, 5.0 + j * 0.03)
            for j in range(i, min(i + 1 + i % 3, len(times)))
        ]
        res, was_fast = step(state, batch, params, PARIS, None)
        fast += was_fast
        state = res.state
        i += len(batch)
    assert fast > 100


def test_counter_series_change_matches_the_general_path() -> None:
    # like the meter swap above, but the meter id stays and ingestion's counter series moves
    # on (a reset it accepted): the fast path must not take a new series for the last meter
    params = WindowParams(grace_ms=3_000)
    series = [0] * 90 + [1] * 60 + [2] * 60
    state: HouseholdWindows | None = None
    fast = i = 0
    while i < len(series):
        batch = [
            Reading(
                "hh1", "m1", T0 + j * 1000, 400.0, 5.0 + (j % 90) * 0.1, counter_series=series[j]
            )
            for j in range(i, min(i + 1 + i % 2, len(series)))
        ]
        res, was_fast = step(state, batch, params, PARIS, None)
        fast += was_fast
        state = res.state
        i += len(batch)
    assert fast > 50
    assert state is not None and state.last_meter == "m1#2"

"""Unit tests of the window engine with explicit numbers (app.domain.windows)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest

from app.domain.reading import Reading
from app.domain.window_energy import day_bounds
from app.domain.windows import (
    ClosedWindow,
    HouseholdWindows,
    WindowParams,
    WindowSize,
    advance,
    apply,
    close_due,
    live_view,
    partition_clock,
)

PARIS = "Europe/Paris"
T0 = 1_795_647_600_000  # 2026-11-26T00:00:00+01:00
DST_SHORT = (1_774_738_800_000, 1_774_821_600_000)  # 2026-03-29 Paris, 23 h
DST_LONG = (1_792_879_200_000, 1_792_969_200_000)  # 2026-10-25 Paris, 25 h
S = 1000
M = 60_000
FAR = T0 + 40 * 86_400_000  # far-future "now" for advance(): closes everything


def rd(t_ms: int, power: float, energy: float | None = None, meter: str = "m1") -> Reading:
    return Reading("hh1", meter, t_ms, power, energy)


def run(
    readings: Sequence[Reading], params: WindowParams, tz: str = PARIS, *, close: bool = True
) -> tuple[HouseholdWindows | None, list[ClosedWindow]]:
    res = apply(None, readings, params, tz)
    closed = list(res.closed)
    state = res.state
    if close and state is not None:
        state, more = advance(state, FAR, params)
        closed += more
    return state, closed


def by(closed: list[ClosedWindow], size: str) -> dict[int, ClosedWindow]:
    out = {c.start_ms: c for c in closed if c.size == size}
    assert len(out) == len([c for c in closed if c.size == size]), "window emitted twice"
    return out


NO_GRACE = WindowParams(grace_ms=0)


def test_counter_energy_is_interpolated_at_boundaries() -> None:
    rs = [
        rd(T0 + 30 * S, 3600.0, 1000.0),
        rd(T0 + 90 * S, 3600.0, 1060.0),
        rd(T0 + 150 * S, 3600.0, 1120.0),
    ]
    res = apply(None, rs, NO_GRACE, PARIS)
    # watermark 150 s, grace 0: the minutes ending at 60 s and 120 s are closed, final
    assert [(c.size, c.start_ms - T0, c.energy_wh) for c in res.closed] == [
        ("1m", 0, 30.0),
        ("1m", 60 * S, 60.0),
    ]
    first, second = res.closed
    assert (first.readings, first.coverage, first.gap, first.estimated) == (1, 0.5, True, False)
    assert (second.readings, second.coverage, second.gap) == (1, 1.0, False)
    assert res.state is not None
    _, rest = advance(res.state, FAR, NO_GRACE)
    # after the last reading E is held flat: nothing invented, the gap shows
    assert [(c.size, c.energy_wh, c.coverage) for c in rest] == [
        ("1m", 30.0, 0.5),
        ("15m", 120.0, 120 / 900),
        ("1h", 120.0, 120 / 3600),
        ("1d", 120.0, 120 / 86400),
    ]
    day = rest[-1]
    assert (day.start_ms, day.end_ms, day.readings) == (T0, T0 + 86_400_000, 3)
    assert (day.mean_power_w, day.min_power_w, day.max_power_w) == (3600.0, 3600.0, 3600.0)


@pytest.mark.parametrize(
    ("day", "hours"), [(DST_SHORT, 23), (DST_LONG, 25), ((T0, T0 + 86_400_000), 24)]
)
def test_local_day_is_23_24_or_25_hours(day: tuple[int, int], hours: int) -> None:
    start, end = day
    assert day_bounds(start, PARIS) == (start, end)
    assert day_bounds(end - 1, PARIS) == (start, end)
    # a constant 1 kW meter, counter and power, one reading a minute across the whole day
    rs = [rd(t, 1000.0, 50_000.0 + (t - start) / 3600.0) for t in range(start, end + M, M)]
    _, closed = run(rs, NO_GRACE)
    d = by(closed, "1d")[start]
    assert (d.end_ms - d.start_ms) == hours * 3_600_000
    assert d.energy_wh == pytest.approx(1000.0 * hours, abs=1e-6)
    assert (d.coverage, d.gap, d.estimated, d.readings) == (1.0, False, False, hours * 60)
    minutes = [c for c in by(closed, "1m").values() if start <= c.start_ms < end]
    assert len(minutes) == hours * 60
    assert sum(c.energy_wh for c in minutes) == pytest.approx(d.energy_wh, abs=1e-6)
    hours_w = [c for c in by(closed, "1h").values() if start <= c.start_ms < end]
    assert len(hours_w) == hours
    assert all(c.energy_wh == pytest.approx(1000.0, abs=1e-6) for c in hours_w)


def test_power_only_meter_integrates_trapezoids_and_is_estimated() -> None:
    # 1 kW then 2 kW, a reading every 10 s: trapezoid of 1000 -> 2000 over 10 s = 4.1667 Wh
    rs = [rd(T0 + i * 10 * S, 1000.0 if i < 3 else 2000.0) for i in range(7)]
    _, closed = run(rs, NO_GRACE)
    m = by(closed, "1m")[T0]
    expected = (1000 * 20 + 1500 * 10 + 2000 * 30) / 3600
    assert m.energy_wh == pytest.approx(expected)  # 26.388... Wh
    assert (m.estimated, m.counter_reset, m.coverage, m.readings) == (True, False, 1.0, 6)
    assert m.mean_power_w == pytest.approx(1500.0)
    # exports (negative power) never make import energy negative
    _, closed = run([rd(T0, -500.0), rd(T0 + 10 * S, -500.0)], NO_GRACE)
    assert by(closed, "1m")[T0].energy_wh == 0.0


def test_long_gap_on_power_only_meter_is_flagged_not_invented() -> None:
    p = WindowParams(grace_ms=0, max_gap_ms=5 * M)
    rs = [rd(T0 + i * 10 * S, 1200.0) for i in range(7)]  # 0 .. 60 s
    rs += [rd(T0 + 660 * S + i * 10 * S, 1200.0) for i in range(7)]  # 660 .. 720 s
    _, closed = run(rs, p)
    minutes = by(closed, "1m")
    # the 10 minutes of gap get no energy and no window; the two sides are integrated
    assert sorted(k - T0 for k in minutes) == [0, 60 * S, 660 * S, 720 * S]
    assert minutes[T0].energy_wh == pytest.approx(20.0)
    assert (minutes[T0 + 60 * S].energy_wh, minutes[T0 + 60 * S].coverage) == (0.0, 0.0)
    assert minutes[T0 + 60 * S].gap and minutes[T0 + 60 * S].readings == 1
    assert minutes[T0 + 660 * S].energy_wh == pytest.approx(20.0)
    q = by(closed, "15m")[T0]
    assert q.energy_wh == pytest.approx(40.0)
    assert q.coverage == pytest.approx(120 / 900) and q.gap and q.readings == 14


def test_long_gap_on_counter_meter_is_spread_and_flagged() -> None:
    p = WindowParams(grace_ms=0, max_gap_ms=5 * M)
    # counter rises 100 Wh over a 10-minute silence: kept (it was measured), spread linearly
    rs = [rd(T0, 600.0, 1000.0), rd(T0 + 600 * S, 600.0, 1100.0)]
    _, closed = run(rs, p)
    minutes = by(closed, "1m")
    assert len(minutes) == 11
    assert all(minutes[T0 + k * M].energy_wh == pytest.approx(10.0) for k in range(10))
    assert all(minutes[T0 + k * M].estimated and minutes[T0 + k * M].gap for k in range(10))
    assert by(closed, "15m")[T0].energy_wh == pytest.approx(100.0)


def test_counter_reset_is_a_new_base_not_negative_energy() -> None:
    # 3600 W = 10 Wh per 10 s; the counter drops from 5020 to 3 (meter reset)
    cs = [5000.0, 5010.0, 5020.0, 3.0, 13.0, 23.0, 33.0]
    rs = [rd(T0 + i * 10 * S, 3600.0, c) for i, c in enumerate(cs)]
    _, closed = run(rs, NO_GRACE)
    m = by(closed, "1m")[T0]
    # 20 Wh from the counter, 10 Wh estimated across the reset, 30 Wh from the new base
    assert m.energy_wh == pytest.approx(60.0)
    assert (m.counter_reset, m.estimated) == (True, True)
    m2 = by(closed, "1m")[T0 + M]
    assert (m2.energy_wh, m2.counter_reset) == (0.0, False)  # held flat after the last reading


@pytest.mark.parametrize(
    ("second", "meter"),
    [
        (9_000_000.0, "m1"),  # +9 MWh in 10 s: implausible jump
        (10.0, "m2"),  # meter replaced, new counter starts low
        (9_000_000.0, "m2"),  # meter replaced, new counter much higher
    ],
)
def test_meter_change_or_implausible_jump_is_a_reset(second: float, meter: str) -> None:
    rs = [
        rd(T0, 3600.0, 5000.0),
        rd(T0 + 10 * S, 3600.0, 5010.0),
        rd(T0 + 20 * S, 3600.0, second, meter),
        rd(T0 + 30 * S, 3600.0, second + 10, meter),
    ]
    _, closed = run(rs, NO_GRACE)
    m = by(closed, "1m")[T0]
    assert m.energy_wh == pytest.approx(30.0)
    assert m.counter_reset


def test_a_discontinuity_ingestion_accepted_is_a_reset_even_at_a_plausible_rate() -> None:
    # +2000 Wh in 10 s is 720 kW: below no connection, but above max_counter_rate_w it would be
    # a reset anyway; +200 Wh in 10 s (72 kW) is under the windows' own rate bound and would
    # be counted as energy -- unless ingestion says the counter started a new series.
    def series(r: Reading, n: int) -> Reading:
        return msgspec.structs.replace(r, counter_series=n)

    rs = [
        rd(T0, 3600.0, 5000.0),
        rd(T0 + 10 * S, 3600.0, 5010.0),
        series(rd(T0 + 20 * S, 3600.0, 5210.0), 1),
        series(rd(T0 + 30 * S, 3600.0, 5220.0), 1),
    ]
    m = by(run(rs, NO_GRACE)[1], "1m")[T0]
    assert m.energy_wh == pytest.approx(30.0)  # 10 + 10 estimated across the jump + 10
    assert m.counter_reset
    # the same readings without the series are counted as measured energy (the old behaviour)
    plain = [msgspec.structs.replace(r, counter_series=0) for r in rs]
    m0 = by(run(plain, NO_GRACE)[1], "1m")[T0]
    assert m0.energy_wh == pytest.approx(220.0) and not m0.counter_reset


def test_a_new_series_in_the_live_fast_path_matches_the_general_path() -> None:
    p = WindowParams(grace_ms=5 * S)
    base = [rd(T0 + i * S, 3600.0, 5000.0 + i) for i in range(40)]
    jumped = [
        msgspec.structs.replace(rd(T0 + i * S, 3600.0, 9000.0 + i), counter_series=1)
        for i in range(40, 70)
    ]
    one_by_one: HouseholdWindows | None = None
    closed: list[ClosedWindow] = []
    for r in base + jumped:
        res = apply(one_by_one, [r], p, PARIS)
        one_by_one = res.state
        closed += res.closed
    assert one_by_one is not None
    one_by_one, more = advance(one_by_one, FAR, p)
    closed += more
    _, together = run(base + jumped, p)
    assert closed == together
    m = by(together, "1m")[T0]
    assert m.counter_reset and m.energy_wh == pytest.approx(59.0 + 1.0)


def test_late_readings_within_grace_update_their_window_later_ones_are_returned() -> None:
    p = WindowParams(grace_ms=10 * S)
    rs = [rd(T0 + i * 10 * S, 1000.0, 100.0 + i) for i in range(7)]  # 0 .. 60 s, 1 Wh / 10 s
    rs.append(rd(T0 + 55 * S, 5000.0, 105.5))  # 5 s late: within grace, window not closed
    rs.append(rd(T0 + 70 * S, 1000.0, 107.0))  # watermark 70 s: [0, 60) closes
    rs.append(rd(T0 + 45 * S, 9999.0, 104.5))  # 25 s late: returned, never applied
    res = apply(None, rs, p, PARIS)
    assert [r.ts_ms - T0 for r in res.late] == [45 * S]
    [m] = res.closed
    assert (m.start_ms, m.readings, m.max_power_w) == (T0, 7, 5000.0)
    assert m.energy_wh == pytest.approx(6.0)
    # the same reading after the window closed is late too
    assert res.state is not None
    res2 = apply(res.state, [rd(T0 + 58 * S, 1.0, 105.8)], p, PARIS)
    assert [r.ts_ms for r in res2.late] == [T0 + 58 * S] and res2.closed == []


def test_far_future_reading_is_refused_and_moves_nothing() -> None:
    p = WindowParams(grace_ms=0, max_future_skew_ms=5 * M)
    rs = [rd(T0, 1000.0), rd(T0 + 3_600_000, 1000.0), rd(T0 + 10 * S, 1000.0)]
    res = apply(None, rs, p, PARIS, now_ms=T0 + 20 * S)
    assert [r.ts_ms - T0 for r in res.future] == [3_600_000]
    assert res.late == [] and res.closed == []
    assert res.state is not None and res.state.watermark_ms == T0 + 10 * S
    # the partition clock ignores it as well
    assert partition_clock(None, [T0, T0 + 3_600_000, T0 + 10 * S], T0 + 20 * S, p) == T0 + 10 * S
    assert partition_clock(T0 + 15 * S, [T0], T0 + 20 * S, p) == T0 + 15 * S


def test_duplicates_are_returned_and_first_one_wins() -> None:
    p = WindowParams(grace_ms=10 * S)
    res = apply(None, [rd(T0, 1000.0), rd(T0 + S, 1000.0), rd(T0, 7.0)], p, PARIS)
    assert [r.power_w for r in res.duplicates] == [7.0] and res.late == []
    assert res.state is not None
    res2 = apply(res.state, [rd(T0 + S, 8.0), rd(T0 + 20 * S, 1000.0), rd(T0 + S, 9.0)], p, PARIS)
    assert [r.power_w for r in res2.duplicates] == [8.0]
    assert [r.power_w for r in res2.late] == [9.0]  # once committed, older than the grace


def test_silent_household_is_closed_by_advance_and_energy_lands_after() -> None:
    p = WindowParams(grace_ms=10 * S, idle_timeout_ms=5 * M, max_gap_ms=5 * M)
    rs = [rd(T0 + i * 10 * S, 3600.0, 1000.0 + 10 * i) for i in range(10)]  # 0 .. 90 s
    res = apply(None, rs, p, PARIS)
    assert [c.start_ms for c in res.closed] == [T0]
    assert res.state is not None
    same, none = advance(res.state, T0 + 6 * M, p)  # 1:50 + grace + idle > 6:00: too early
    assert none == [] and same is res.state
    st, closed = advance(res.state, T0 + 20 * M, p)
    # closes up to 20 min - 10 s - 5 min, rounded down to 14 min: the minute [1, 2) only
    assert [(c.size, c.start_ms - T0, c.energy_wh) for c in closed] == [("1m", M, 30.0)]
    assert closed[0].gap and closed[0].coverage == pytest.approx(0.5)
    assert st.closed_until_ms == T0 + 14 * M
    # the meter comes back at 20 min with its counter: 1120 Wh more
    back = apply(
        st,
        [
            rd(T0 + 13 * M, 1.0, 1095.0),
            rd(T0 + 20 * M, 3600.0, 2210.0),
            rd(T0 + 21 * M, 3600.0, 2270.0),
        ],
        p,
        PARIS,
    )
    assert [r.ts_ms for r in back.late] == [T0 + 13 * M]
    _, rest = advance(back.state, FAR, p)  # type: ignore[arg-type]
    allw = closed + back.closed + rest
    minutes = by(allw, "1m")
    # the 1120 Wh of the silence are spread over [14, 20) min, 186.67 Wh a minute
    assert [round(minutes[T0 + k * M].energy_wh, 6) for k in range(14, 20)] == [186.666667] * 6
    assert all(minutes[T0 + k * M].estimated for k in range(14, 20))
    q = by(allw, "15m")
    assert q[T0].energy_wh == pytest.approx(90.0 + 186.666667, abs=1e-5)
    assert q[T0 + 15 * M].energy_wh == pytest.approx(5 * 186.666667 + 60.0, abs=1e-5)
    assert by(allw, "1h")[T0].energy_wh == pytest.approx(1270.0)


def test_batch_split_and_state_roundtrip_give_identical_results() -> None:
    p = WindowParams(grace_ms=20 * S)
    rs = [rd(T0 + i * 7 * S, 500.0 + i, 10.0 + i * 0.9 if i % 13 else None) for i in range(400)]
    rs[50], rs[53] = rs[53], rs[50]  # a little disorder
    one = apply(None, rs, p, PARIS)
    state: HouseholdWindows | None = None
    closed: list[ClosedWindow] = []
    dec = msgspec.msgpack.Decoder(HouseholdWindows)
    for i in range(0, len(rs), 37):
        res = apply(state, rs[i : i + 37], p, PARIS)
        closed += res.closed
        state = dec.decode(msgspec.msgpack.encode(res.state))
    assert closed == one.closed and state == one.state
    assert len(one.closed) > 40


def test_live_view_reports_pending_readings_and_today() -> None:
    p = WindowParams(grace_ms=60 * S)
    rs = [rd(T0 + i * 10 * S, 3600.0, 1000.0 + 10 * i) for i in range(13)]  # 0 .. 120 s
    res = apply(None, rs, p, PARIS)
    assert res.state is not None
    view = live_view(res.state, p)
    assert (view["last_ts_ms"], view["last_power_w"]) == (T0 + 120 * S, 3600.0)
    assert view["today_start_ms"] == T0
    assert view["today_energy_wh"] == pytest.approx(120.0)
    sizes = {w["size"]: w for w in view["open_windows"]}
    assert sizes["1m"]["start_ms"] == T0 + 120 * S and sizes["1m"]["energy_wh"] == 0.0
    assert sizes["15m"]["readings"] == 13 and sizes["15m"]["energy_wh"] == pytest.approx(120.0)
    assert msgspec.json.encode(view)


def test_closed_windows_are_json_encodable() -> None:
    _, closed = run([rd(T0, 1000.0)], NO_GRACE)
    assert msgspec.json.decode(msgspec.json.encode(closed[0]), type=ClosedWindow) == closed[0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sizes": ()},
        {"sizes": (WindowSize("d", local_day=True),)},
        {"sizes": (WindowSize("1m", 60_000), WindowSize("90s", 90_000))},
        {"sizes": (WindowSize("a", 60_000), WindowSize("a", 120_000))},
        {"grace_ms": -1},
        {"max_gap_ms": 0},
    ],
)
def test_invalid_params_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WindowParams(**kwargs)  # type: ignore[arg-type]


def test_custom_sizes() -> None:
    p = WindowParams(sizes=(WindowSize("5m", 300_000), WindowSize("30m", 1_800_000)), grace_ms=0)
    rs = [rd(T0 + i * M, 600.0, 10.0 * i) for i in range(61)]
    _, closed = run(rs, p)
    # the last reading (60 min) opens a third 30 min window: one reading, no energy after it
    assert [c.energy_wh for c in closed if c.size == "30m"] == pytest.approx([300.0, 300.0, 0.0])
    assert len(by(closed, "5m")) == 13


def test_the_partition_clock_closes_a_live_households_window_without_its_next_reading() -> None:
    p = WindowParams(grace_ms=30 * S)
    # 1 Hz at a 700 ms phase, up to 89.7 s: its own next reading (90.7 s) would close [0, 60)
    rs = [rd(T0 + i * S + 700, 3600.0, 1000.0 + i) for i in range(90)]
    res = apply(None, rs, p, PARIS)
    assert res.closed == [] and res.state is not None
    # other households moved the partition clock to 90.0 s: due, not yet 89.9 s
    assert close_due(res.state, T0 + 90 * S - 100, p) == (res.state, [])
    state, closed = close_due(res.state, T0 + 90 * S, p)
    [m] = closed
    assert (m.start_ms, m.end_ms, m.readings) == (T0, T0 + M, 60)
    assert m.energy_wh == pytest.approx(59.3)  # 1 Wh/s from 0.7 s, interpolated at 60 s
    # identical to what the household's own next reading would have closed
    own = apply(res.state, [rd(T0 + 90 * S + 700, 3600.0, 1090.0)], p, PARIS)
    assert own.closed == [m]
    # afterwards its readings continue as usual; one before the closed boundary is late
    nxt = [rd(T0 + 90 * S + 700, 3600.0, 1090.0), rd(T0 + 59 * S, 1.0, 1059.0)]
    more = apply(state, nxt, p, PARIS)
    assert more.closed == [] and [r.ts_ms for r in more.late] == [T0 + 59 * S]
    assert close_due(state, T0 + 95 * S, p) == (state, [])  # nothing more is due


def test_the_partition_clock_leaves_lagging_and_gapped_households_alone() -> None:
    p = WindowParams(grace_ms=30 * S, max_gap_ms=5 * M)
    lagging = apply(None, [rd(T0 + i * S, 100.0, 1.0) for i in range(50)], p, PARIS).state
    assert lagging is not None  # its data stops at 49 s: its window [0, 60) waits for it
    assert close_due(lagging, T0 + 10 * M, p) == (lagging, [])
    gap = apply(None, [rd(T0 + 10 * S, 100.0, 1.0), rd(T0 + 7 * M + 5 * S, 100.0, 1.0)], p, PARIS)
    assert gap.state is not None  # 6 min 55 s without data across the due boundaries
    assert close_due(gap.state, T0 + 7 * M + 40 * S, p) == (gap.state, [])

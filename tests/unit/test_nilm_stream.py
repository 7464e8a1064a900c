"""NILM as the agent runs it: 1 Hz readings, chunking, per-window appliance energy."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.nilm.model import NilmParams
from app.domain.nilm.stream import feed
from app.domain.reading import Reading

BASE = 1_699_999_200_000  # a 15-minute boundary


def signal(seconds: int = 2000, step_s: int = 1) -> list[Reading]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(0, seconds, step_s):
        p = 100.0 + rng.normal(0, 3)
        p += 2000.0 if 300 <= i < 420 else 0.0   # a kettle, 2 min
        p += 1200.0 if 1300 <= i < 1500 else 0.0  # a 1.2 kW load, 200 s
        out.append(Reading("h", "m", BASE + i * 1000, float(p)))
    return out


def run(readings: list[Reading], chunk: int):  # type: ignore[no-untyped-def]
    state, events, windows = None, [], []
    for k in range(0, len(readings), chunk):
        state, ev, cl = feed(state, "h", readings[k:k + chunk], NilmParams())
        events += ev
        windows += cl
    return state, events, windows


def test_one_hertz_meter_gets_its_appliance_edges() -> None:
    _, events, _ = run(signal(), 1000)
    edges = [(e.state, round(e.delta_w, -2), (e.ts_ms - BASE) // 1000) for e in events]
    assert [(s, d) for s, d, _ in edges] == [("on", 2000.0), ("off", -2000.0),
                                            ("on", 1200.0), ("off", -1200.0)]
    # edge times within one 6 s bin of the truth
    for (_, _, t), truth in zip(edges, (300, 420, 1300, 1500), strict=True):
        assert abs(t - truth) <= 6


@pytest.mark.parametrize("chunk", [1, 7, 61, 2000])
def test_same_events_and_windows_whatever_the_batching(chunk: int) -> None:
    _, ref_events, ref_windows = run(signal(), 2000)
    _, events, windows = run(signal(), chunk)
    assert [(e.ts_ms, e.state, round(e.delta_w, 6)) for e in events] == \
        [(e.ts_ms, e.state, round(e.delta_w, 6)) for e in ref_events]
    assert [(w.start_ms, round(w.total_wh, 9)) for w in windows] == \
        [(w.start_ms, round(w.total_wh, 9)) for w in ref_windows]


def test_window_breakdown_sums_to_the_household_total() -> None:
    readings = signal(2000)
    _, _, windows = run(readings, 100)
    assert [w.start_ms for w in windows] == [BASE, BASE + 900_000]
    first = windows[0]
    # 100 W for 900 s + 2000 W for 120 s (first sample holds no time): ~91.7 Wh
    assert first.total_wh == pytest.approx(100 * 900 / 3600 + 2000 * 120 / 3600, rel=0.01)
    for w in windows:
        parts = sum(w.measured_wh.values()) + sum(w.estimated_wh.values()) + w.residual_wh
        assert parts == pytest.approx(w.total_wh, abs=1e-9)
    assert first.estimated_wh and max(first.estimated_wh.values()) == pytest.approx(
        2000 * 120 / 3600, rel=0.05)


def test_slow_meter_is_not_resampled() -> None:
    _, events, _ = run(signal(8000, step_s=8), 50)
    assert [e.state for e in events][:2] == ["on", "off"]


def test_late_and_duplicate_readings_are_ignored() -> None:
    readings = signal(600)
    state, _, _ = feed(None, "h", readings, NilmParams())
    again, more, closed = feed(state, "h", readings[100:200], NilmParams())
    assert more == [] and closed == []
    assert again.buf_ts == state.buf_ts


def test_owned_state_gives_the_same_results_as_a_copied_one() -> None:
    readings = signal(1200)
    copied, owned = None, None
    ev_c, ev_o = [], []
    for k in range(0, 1200, 3):
        copied, e1, _ = feed(copied, "h", readings[k:k + 3], NilmParams())
        owned, e2, _ = feed(owned, "h", readings[k:k + 3], NilmParams(), owned=True)
        ev_c += e1
        ev_o += e2
    assert ev_c == ev_o and copied == owned
    before = feed(None, "h", readings[:10], NilmParams())[0]
    snapshot = before.buf_ts.copy()
    feed(before, "h", readings[10:20], NilmParams())  # not owned: input untouched
    assert before.buf_ts == snapshot

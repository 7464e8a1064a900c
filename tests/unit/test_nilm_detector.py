"""NILM detector on synthetic signals with known edges; chunking invariance; loop equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from app.domain.nilm import NilmParams, detect_edges, detect_edges_loop

P = NilmParams()
DT = 7000


def signal(levels: list[tuple[int, float]], noise: float = 0.0, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-constant power: (number of samples, watts) segments, 7-s sampling."""
    x = np.concatenate([np.full(n, w) for n, w in levels])
    if noise:
        x = x + np.random.default_rng(seed).normal(0, noise, x.size)
    t = 1_420_675_200_000 + np.arange(x.size, dtype=np.int64) * DT
    return t, x


def edges(t: np.ndarray, x: np.ndarray, p: NilmParams = P) -> list[tuple[int, int]]:
    _, e = detect_edges(None, t, x, p)
    return [(int((ed.ts_ms - t[0]) // DT), round(ed.delta_w)) for ed in e]


def test_single_on_off_with_noise() -> None:
    t, x = signal([(50, 200), (30, 2200), (50, 200)], noise=5)
    got = edges(t, x)
    assert [i for i, _ in got] == [50, 80]
    assert got[0][1] == pytest.approx(2000, abs=20) and got[1][1] == pytest.approx(-2000, abs=20)


def test_inrush_spike_is_not_a_steady_state() -> None:
    # fridge: one 1500 W inrush sample, then +85 W
    t, x = signal([(20, 300), (1, 1800), (40, 385), (40, 300)])
    assert edges(t, x) == [(20, 85), (61, -85)]


def test_overlapping_loads_stack() -> None:
    # toaster on, kettle on over it, toaster off while the kettle still boils, kettle off
    t, x = signal([(20, 200), (20, 1100), (10, 3100), (10, 2200), (40, 200)], noise=3)
    got = edges(t, x)
    assert [i for i, _ in got] == [20, 40, 50, 60]
    assert [round(d, -2) for _, d in got] == [900, 2000, -900, -2000]


def test_small_step_on_top_of_a_big_load_is_seen() -> None:
    # a 90 W fridge stopping while a 2.2 kW load runs: windows are steady within 5 %
    t, x = signal([(20, 200), (20, 2290), (10, 2200), (40, 200)])
    assert edges(t, x) == [(20, 2090), (40, -90), (50, -2000)]


def test_ramp_over_two_samples_is_one_step() -> None:
    # meter averaging: 430 -> 405 -> 380, each difference inside the noise tolerance
    t, x = signal([(20, 430), (1, 405), (40, 380), (40, 430)], noise=2)
    got = edges(t, x)
    assert [i for i, _ in got] == [20, 61]
    # the smallest transition whose windows are steady wins: part of the ramp is in a window
    assert got[0][1] == pytest.approx(-50, abs=10)


def test_noisy_region_gives_no_edges() -> None:
    # a dithering heating element: 750 / 1050 W alternating, no steady window inside, so
    # neither its start nor its end is a clean edge
    dither = 900 + 150 * (-1.0) ** np.arange(60)
    x = np.concatenate([np.full(20, 300.0), dither, np.full(20, 300.0)])
    t = np.arange(x.size, dtype=np.int64) * DT
    assert edges(t, x) == []


def test_slow_drift_is_not_an_edge_and_does_not_bias_delta() -> None:
    ramp = np.linspace(200, 400, 400)  # +0.5 W per sample
    x = np.concatenate([ramp, np.full(30, 400 + 1000.0), np.full(30, 400.0)])
    t = np.arange(x.size, dtype=np.int64) * DT
    got = edges(t, x)
    assert [i for i, _ in got] == [400, 430]
    assert got[0][1] == pytest.approx(1000, abs=3)


def test_small_step_below_threshold_is_ignored() -> None:
    t, x = signal([(30, 200), (30, 225), (30, 200)])
    assert edges(t, x) == []


def test_duty_cycle_pause_is_merged() -> None:
    # hob regulator: 2 kW with 28 s pauses -> one on, one off
    segs: list[tuple[int, float]] = [(20, 300)]
    for _ in range(5):
        segs += [(6, 2300), (4, 300)]
    segs += [(6, 2300), (30, 300)]
    t, x = signal(segs)
    got = edges(t, x)
    assert [i for i, _ in got] == [20, 20 + 5 * 10 + 6]


def test_long_off_is_not_merged() -> None:
    t, x = signal([(20, 300), (20, 2300), (40, 300), (20, 2300), (40, 300)])  # 280 s off
    assert [i for i, _ in edges(t, x)] == [20, 40, 80, 100]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 17, 64, 1000])
def test_same_edges_whatever_the_chunking(chunk: int) -> None:
    segs = [(30, 250), (1, 1500), (25, 335), (8, 2335), (3, 335), (8, 2335), (40, 250)]
    t, x = signal(segs * 4, noise=8, seed=3)
    whole_state, whole = detect_edges(None, t, x, P)
    st = None
    got = []
    for i in range(0, t.size, chunk):
        st, e = detect_edges(st, t[i:i + chunk], x[i:i + chunk], P)
        got += e
    assert got == whole and st == whole_state
    assert len(whole) >= 8


def test_vectorised_equals_per_sample_loop() -> None:
    rng = np.random.default_rng(7)
    levels = [(int(n), float(w)) for n, w in zip(rng.integers(1, 40, 120),
                                                 rng.choice([150, 240, 1150, 2300], 120),
                                                 strict=True)]
    t, x = signal(levels, noise=12, seed=5)
    assert detect_edges(None, t, x, P) == detect_edges_loop(None, t, x, P)


def test_gap_breaks_the_steady_state() -> None:
    t, x = signal([(20, 200), (20, 200)])
    t[20:] += 600_000  # 10 min outage, same level after: no edge
    assert edges(t, x) == []


def _rough_signal(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random levels with noise, ties, uneven sampling, gaps and a few backward timestamps."""
    rng = np.random.default_rng(seed)
    levels = rng.choice([0.0, 150.0, 190.0, 240.0, 300.0, 1150.0, 2300.0], 150)
    x = np.repeat(levels, rng.integers(1, 30, 150))
    x = x + rng.normal(0, rng.choice([0.0, 4.0, 15.0]), x.size)
    if seed % 2:
        x = np.round(x)  # equal levels: ties in |ΔP| between candidates
    dt = rng.choice([6000, 7000, 8000], x.size)
    odd = rng.random(x.size) < 0.01
    dt[odd] = rng.choice([0, -3000, 70_000, 600_000], int(odd.sum()))
    return 1_420_675_200_000 + np.cumsum(dt), x


@pytest.mark.parametrize(("seed", "params"), [
    (11, P),
    (12, NilmParams(merge_dip_ms=0)),
    (13, NilmParams(level_samples=1, max_transition_samples=0, min_steady_ms=0)),
    (14, NilmParams(level_samples=4, max_transition_samples=4, merge_dip_ms=400_000)),
    (15, NilmParams(level_samples=2, max_transition_samples=1, min_steady_ms=6000,
                    step_threshold_w=0.0)),
])
@pytest.mark.parametrize("chunk", [1, 5, 450, 10_000])
def test_vectorised_equals_loop_chunk_by_chunk(seed: int, params: NilmParams,
                                               chunk: int) -> None:
    # state and edges after every chunk, also for parameters the eval does not use
    t, x = _rough_signal(seed)
    sv = sl = None
    total = 0
    for i in range(0, t.size, chunk):
        sv, ev = detect_edges(sv, t[i:i + chunk], x[i:i + chunk], params)
        sl, el = detect_edges_loop(sl, t[i:i + chunk], x[i:i + chunk], params)
        assert (sv, ev) == (sl, el)
        total += len(ev)
    assert total >= 10

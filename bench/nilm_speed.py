"""Speed of the NILM detector vs a per-sample Python loop of the same steady-state rule.

Both run in this process on the same signal (REFIT house 2 when present, else synthetic
8-s data): :func:`app.domain.nilm.detect_edges` (numpy segmentation, one call per chunk) and
:func:`app.domain.nilm.detect_edges_loop` (one Python iteration per sample). Both must emit
the same edges; the figure is samples/s per core.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from app.domain.nilm import NilmParams, detect_edges, detect_edges_loop, step
from app.domain.nilm.model import DetectorState, Edge
from bench.refit import house_files, load_house, resolve_data_dir

CHUNK = 3600  # the headline: 1 h of 1-Hz samples (or ~8 h of REFIT's 8-s samples) per call
OTHER_CHUNKS = (450, 12_600)  # 1 h of 8-s samples; one REFIT day


def _signal() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], str]:
    files = house_files(resolve_data_dir())
    if files:
        h = load_house(files[min(files)])
        return h.ts_ms, h.aggregate_w, f"REFIT house {h.house}"
    rng = np.random.default_rng(1)
    n = 12_000
    t = np.arange(n, dtype=np.int64) * 7000
    x = 200 + rng.normal(0, 5, n) + 80 * ((np.arange(n) // 200) % 2) + 2000 * (
        (np.arange(n) % 900) < 20)
    return t, x.astype(np.float64), "synthetic 7-s"


Fn = Callable[..., tuple[DetectorState, list[Edge]]]


def _time(fn: Fn, t: npt.NDArray[np.int64], x: npt.NDArray[np.float64], p: NilmParams,
          chunk: int, reps: int) -> tuple[float, list[Edge]]:
    fn(None, t[:chunk], x[:chunk], p)  # warm-up, untimed (both functions get one)
    best = float("inf")
    edges: list[Edge] = []
    for _ in range(reps):
        st: DetectorState | None = None
        edges = []
        t0 = time.perf_counter()
        for i in range(0, t.size, chunk):
            st, e = fn(st, t[i:i + chunk], x[i:i + chunk], p)
            edges.extend(e)
        best = min(best, time.perf_counter() - t0)
    return best, edges


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    t, x, src = _signal()
    reps = 2 if quick else 5
    if not quick:  # a longer series: four days back to back
        span = int(t[-1] - t[0]) + 7000
        t = np.concatenate([t + i * span for i in range(4)])
        x = np.tile(x, 4)
    p = NilmParams()
    dt_vec, e_vec = _time(detect_edges, t, x, p, CHUNK, reps)
    dt_loop, e_loop = _time(detect_edges_loop, t, x, p, CHUNK, max(1, reps // 2))
    if e_vec != e_loop:
        raise AssertionError("vectorised and loop detectors disagree")
    others = []
    for c in OTHER_CHUNKS:
        dt_c, e_c = _time(detect_edges, t, x, p, c, reps)
        if e_c != e_vec:
            raise AssertionError("edges depend on the chunk size")
        others.append(f"chunks of {c}: {round(t.size / dt_c)} samples/s "
                      f"({dt_loop / dt_c:.1f}x)")
    st = None
    t0 = time.perf_counter()
    for i in range(0, t.size, CHUNK):
        st, _, _ = step(st, t[i:i + CHUNK], x[i:i + CHUNK], p)
    dt_step = time.perf_counter() - t0
    v, b = t.size / dt_vec, t.size / dt_loop
    return {
        "nilm_vs_loop": {
            "value": round(v), "baseline": round(b), "ratio": round(v / b, 1),
            "unit": "samples/s",
            "note": f"{src}, {t.size} samples, chunks of {CHUNK}, {len(e_vec)} identical edges;"
                    f" {'; '.join(others)};"
                    f" full step() incl. pairing+energy: {round(t.size / dt_step)} samples/s",
        }
    }


def main() -> int:
    res = run(quick="--quick" in sys.argv)
    print(f"{'figure':14} {'value':>12} {'baseline':>12} {'ratio':>7} unit")
    for k, r in res.items():
        print(f"{k:14} {r['value']:12,} {r['baseline']:12,} {r['ratio']:7} {r['unit']}")
        print(f"  {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

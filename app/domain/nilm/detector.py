"""Online step detector on aggregate active power: two steady windows around a transition.

Rule (the same in :func:`detect_edges` and the per-sample reference :func:`detect_edges_loop`),
with ``k = level_samples`` and ``G = max_transition_samples``:

1. A *window* is ``k`` consecutive samples. It is *steady* when ``max - min`` is at most
   ``noise_abs_w + noise_rel * min`` and it spans at least ``min_steady_ms`` (Hart's steady
   state, measured on a window instead of sample to sample, so a step spread over two
   samples by the meter's averaging is still one step). Its level is its mean.
2. A *candidate* at sample ``i`` compares the steady window ending just before ``i`` with the
   steady window starting at ``i + g``; the ``g <= G`` samples skipped between them are the
   transition (a ramp, an inrush spike). The smallest ``g`` whose two windows are steady
   wins. ΔP = level after - level before; a candidate needs |ΔP| >= ``step_threshold_w`` and
   no gap longer than ``max_gap_ms`` (nor a non-increasing time) inside the two windows.
   Inside a high-variance region (electronics, a dithering heater) windows are not steady,
   so no candidate exists there.
3. Consecutive candidates of the same sign are one edge: the one with the smallest ``g``
   (then the largest |ΔP|, then the earliest). The edge time is ``t[i]``: the first sample
   after the old level.
4. A drop whose next edge comes back to the level before it within ``merge_dip_ms`` is a
   duty-cycling pause (hob regulator, heater element), not an off/on pair.

:func:`detect_edges` computes all candidates of a chunk with numpy (window sums, sliding
max/min, boolean masks, ``np.flatnonzero`` for the change points) and runs Python only per
edge. The last few samples are carried in the state, so the edges are the same whatever the
chunking (window sums are formed in the same order, so even the bits agree).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from app.domain.nilm.model import DetectorState, Edge, NilmParams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _copy(st: DetectorState) -> DetectorState:
    return DetectorState(
        buf_t=list(st.buf_t), buf_x=list(st.buf_x), settled_ts=st.settled_ts, pend=st.pend,
        pend_ts=st.pend_ts, pend_dp=st.pend_dp, pend_before=st.pend_before,
        pend_after=st.pend_after,
    )


def _inputs(ts_ms: Sequence[int] | IntArray, power_w: Sequence[float] | FloatArray
            ) -> tuple[IntArray, FloatArray]:
    t = np.asarray(ts_ms, dtype=np.int64)
    x = np.asarray(power_w, dtype=np.float64)
    if t.shape != x.shape or t.ndim != 1:
        raise ValueError("ts_ms and power_w must be 1-D and of equal length")
    return t, x


def _max_group(p: NilmParams) -> int:
    """Longest run of candidates taken as one edge (bounds the carried samples)."""
    return 2 * (p.level_samples + p.max_transition_samples) + 2


# --- dip merge: Python per edge -----------------------------------------------------------

def _emit(st: DetectorState, e: Edge, p: NilmParams, out: list[Edge]) -> None:
    """Pass one raw edge through the duty-cycle pause merge (rule 4)."""
    if st.pend:
        tol = max(p.noise_abs_w, p.dip_match_rel * abs(st.pend_dp))
        if (e.delta_w > 0 and e.ts_ms - st.pend_ts <= p.merge_dip_ms
                and abs(e.after_w - st.pend_before) <= tol):
            st.pend = False  # the load came back: a pause, not an off/on pair
            return
        _flush(st, out)
    if e.delta_w < 0 and p.merge_dip_ms > 0:
        st.pend, st.pend_ts, st.pend_dp = True, e.ts_ms, e.delta_w
        st.pend_before, st.pend_after = e.before_w, e.after_w
    else:
        out.append(e)


def _flush(st: DetectorState, out: list[Edge]) -> None:
    out.append(Edge(st.pend_ts, st.pend_dp, st.pend_before, st.pend_after))
    st.pend = False


def _timeout(st: DetectorState, decided_ts: int, p: NilmParams, out: list[Edge]) -> None:
    """Every candidate up to ``decided_ts`` is settled: a drop older than the merge window
    can no longer be followed by its return."""
    st.settled_ts = max(st.settled_ts, decided_ts)
    if st.pend and decided_ts - st.pend_ts > p.merge_dip_ms:
        _flush(st, out)


# --- vectorised detector ------------------------------------------------------------------

def _window_sums(x: FloatArray, k: int) -> FloatArray:
    """``s[j] = x[j] + ... + x[j+k-1]``, added left to right (the loop does the same)."""
    m = x.size - k + 1
    s = x[:m].copy()
    for q in range(1, k):
        s += x[q:q + m]
    return s


def candidates(t: IntArray, x: FloatArray, p: NilmParams
               ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Rule 1-2 for every ``i`` in ``[k, n - k - G]``: (i, g, before, after) of the valid ones."""
    k, big_g = p.level_samples, p.max_transition_samples
    n = int(x.size)
    last = n - k - big_g
    if last < k:
        e = np.empty(0, dtype=np.int64)
        return e, e, np.empty(0), np.empty(0)
    s = _window_sums(x, k)
    m = n - k + 1
    lo, hi = x[:m].copy(), x[:m].copy()
    for q in range(1, k):
        np.minimum(lo, x[q:q + m], out=lo)
        np.maximum(hi, x[q:q + m], out=hi)
    steady = (hi - lo) <= p.noise_abs_w + p.noise_rel * lo
    steady &= (t[k - 1:] - t[: n - k + 1]) >= p.min_steady_ms
    dt = np.diff(t)
    bad = np.zeros(n, dtype=np.int64)  # bad[j]: the step into sample j is a gap
    bad[1:] = ((dt > p.max_gap_ms) | (dt <= 0)).astype(np.int64)
    cbad = np.cumsum(bad)
    i = np.arange(k, last + 1)
    before = s[i - k] / k
    g_of = np.full(i.size, -1, dtype=np.int64)
    after = np.zeros(i.size)
    ok_before = steady[i - k]
    for g in range(big_g + 1):
        a = s[i + g] / k
        # no gap from the first sample of the before window to the last of the after window
        nogap = cbad[i + g + k - 1] - cbad[i - k] == 0
        ok = ok_before & steady[i + g] & nogap & (np.abs(a - before) >= p.step_threshold_w)
        new = ok & (g_of < 0)
        g_of[new] = g
        after[new] = a[new]
    sel = np.flatnonzero(g_of >= 0)
    return i[sel], g_of[sel], before[sel], after[sel]


def detect_edges(state: DetectorState | None, ts_ms: Sequence[int] | IntArray,
                 power_w: Sequence[float] | FloatArray, p: NilmParams
                 ) -> tuple[DetectorState, list[Edge]]:
    """Process one chunk of one household's samples (time-ordered); return new state, edges."""
    st = DetectorState() if state is None else _copy(state)
    t_new, x_new = _inputs(ts_ms, power_w)
    out: list[Edge] = []
    if t_new.size == 0:
        return st, out
    c = len(st.buf_t)
    t = np.concatenate((np.asarray(st.buf_t, dtype=np.int64), t_new)) if c else t_new
    x = np.concatenate((np.asarray(st.buf_x, dtype=np.float64), x_new)) if c else x_new
    k, big_g = p.level_samples, p.max_transition_samples
    n = int(x.size)
    last = n - k - big_g  # last i whose windows are complete
    ci, cg, cb, ca = candidates(t, x, p)
    first_open = max(last + 1, k)  # first i not settled by this call
    if ci.size:
        sign = ca > cb
        # runs of consecutive i with the same sign (change points by flatnonzero), cut into
        # pieces of at most max_len counted from the start of the run
        idx = np.arange(ci.size)
        brk = np.zeros(ci.size, dtype=np.bool_)
        brk[0] = True
        brk[1:] = (np.diff(ci) != 1) | (sign[1:] != sign[:-1])
        run0 = np.maximum.accumulate(np.where(brk, idx, 0))
        starts = np.flatnonzero((idx - run0) % _max_group(p) == 0)
        ends = np.append(starts[1:], ci.size)
        if int(ci[-1]) == last:  # the last piece may continue in the next chunk
            first_open = int(ci[starts[-1]])
            starts, ends = starts[:-1], ends[:-1]
        tl, gl, bl, al = t[ci].tolist(), cg.tolist(), cb.tolist(), ca.tolist()
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            j = min(range(a, b), key=lambda r: (gl[r], -abs(al[r] - bl[r])))
            _timeout(st, tl[j], p, out)
            _emit(st, Edge(tl[j], al[j] - bl[j], bl[j], al[j]), p, out)
    if first_open <= n:  # every i before first_open is settled
        _timeout(st, int(t[first_open - 1]), p, out)
    keep = max(0, first_open - k)
    st.buf_t = t[keep:].tolist()
    st.buf_x = x[keep:].tolist()
    return st, out


# --- per-sample reference -----------------------------------------------------------------

def detect_edges_loop(state: DetectorState | None, ts_ms: Sequence[int] | IntArray,
                      power_w: Sequence[float] | FloatArray, p: NilmParams
                      ) -> tuple[DetectorState, list[Edge]]:
    """Reference: the same rule in plain Python, one sample at a time (tests, speed bench)."""
    st = DetectorState() if state is None else _copy(state)
    out: list[Edge] = []
    k, big_g = p.level_samples, p.max_transition_samples
    max_len = _max_group(p)
    bt, bx = st.buf_t, st.buf_x
    # Re-derive the open run of candidates carried in the buffer (at most max_len items).
    run: list[tuple[int, int, float, float]] = []
    for i in range(k, len(bt) - k - big_g + 1):
        cand = _candidate_at(bt, bx, i, p)
        if cand is not None:
            run.append(cand)
    for ti, xi in zip(list(ts_ms), list(power_w), strict=True):
        bt.append(int(ti))
        bx.append(float(xi))
        n = len(bt)
        i = n - k - big_g  # the newest i whose windows are complete
        if i < k:
            continue
        cand = _candidate_at(bt, bx, i, p)
        if run and (cand is None or i != run[-1][0] + 1
                    or (cand[3] > cand[2]) != (run[0][3] > run[0][2])):
            _close_run(st, bt, run, p, out)
            run = []
        if cand is not None:
            if len(run) == max_len:
                _close_run(st, bt, run, p, out)
                run = []
            run.append(cand)
        # keep the samples still needed: from k before the open run (or the next i)
        first_open = run[0][0] if run else i + 1
        drop = first_open - k
        if drop > 0:
            del bt[:drop], bx[:drop]
            run = [(ri - drop, rg, rb, ra) for ri, rg, rb, ra in run]
    first_open = run[0][0] if run else max(len(bt) - k - big_g + 1, k)
    if first_open <= len(bt):
        _timeout(st, bt[first_open - 1], p, out)
    return st, out


def _candidate_at(t: list[int], x: list[float], i: int, p: NilmParams
                  ) -> tuple[int, int, float, float] | None:
    k = p.level_samples

    def window(j: int) -> tuple[bool, float]:
        vals = x[j:j + k]
        s = vals[0]
        for v in vals[1:]:
            s += v
        lo = min(vals)
        ok = max(vals) - lo <= p.noise_abs_w + p.noise_rel * lo and (
            t[j + k - 1] - t[j] >= p.min_steady_ms)
        return ok, s / k

    ok_b, before = window(i - k)
    if not ok_b:
        return None
    for j in range(i - k + 1, i + k - 1):  # no gap up to the last sample of g = 0, but one
        if not 0 < t[j] - t[j - 1] <= p.max_gap_ms:
            return None
    for g in range(p.max_transition_samples + 1):
        j = i + g + k - 1  # the one more step that transition g adds
        if not 0 < t[j] - t[j - 1] <= p.max_gap_ms:
            return None  # this gap is inside every wider transition too
        ok_a, after = window(i + g)
        if ok_a and abs(after - before) >= p.step_threshold_w:
            return i, g, before, after
    return None


def _close_run(st: DetectorState, t: list[int], run: list[tuple[int, int, float, float]],
               p: NilmParams, out: list[Edge]) -> None:
    best = min(run, key=lambda r: (r[1], -abs(r[3] - r[2])))
    ts = t[best[0]]
    _timeout(st, ts, p, out)
    _emit(st, Edge(ts, best[3] - best[2], best[2], best[3]), p, out)

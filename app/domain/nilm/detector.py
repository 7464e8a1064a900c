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

:func:`detect_edges` does every rule in bulk with numpy: window levels and ranges, one
boolean mask per transition length (slices of the window arrays, no per-sample indexing),
``np.flatnonzero`` for the few valid candidates, a ``lexsort`` for the best candidate of each
run and shifted masks for the pause merge. Python only builds the output ``Edge`` objects.
The last few samples are carried in the state, so the edges are the same whatever the
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


# --- dip merge, one edge at a time (the loop; :func:`_merge_dips` is the bulk version) -----

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

_NO_INT = np.empty(0, dtype=np.int64)
_NO_FLOAT = np.empty(0, dtype=np.float64)


def _window_stats(x: FloatArray, k: int, p: NilmParams) -> tuple[FloatArray, BoolArray]:
    """Level ``lv[j]`` (mean of ``x[j:j+k]``) and amplitude test of every window.

    The sum is added left to right (``x[j] + x[j+1] + ...``), then divided by ``k``, as the
    loop does, so the levels agree to the bit.
    """
    m = x.size - k + 1
    if k == 1:
        s, lo, hi = x.copy(), x.copy(), x.copy()
    else:
        s = np.add(x[:m], x[1:1 + m])
        lo = np.minimum(x[:m], x[1:1 + m])
        hi = np.maximum(x[:m], x[1:1 + m])
    for q in range(2, k):
        xq = x[q:q + m]
        s += xq
        np.minimum(lo, xq, out=lo)
        np.maximum(hi, xq, out=hi)
    s /= k
    hi -= lo  # the window's range
    lo *= p.noise_rel
    lo += p.noise_abs_w  # its tolerance
    return s, hi <= lo


def candidates(t: IntArray, x: FloatArray, p: NilmParams
               ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Rule 1-2 for every ``i`` in ``[k, n - k - G]``: (i, g, before, after) of the valid ones.

    Candidate ``i`` uses windows at offsets ``i - k`` (before) and ``i + g`` (after), so with
    ``c = i - k`` every test below is a slice of a window array: no fancy indexing until the
    few valid candidates are picked out.
    """
    k, big_g = p.level_samples, p.max_transition_samples
    n = int(x.size)
    nc = n - 2 * k - big_g + 1  # number of i in [k, n - k - G]
    if nc <= 0:
        return _NO_INT, _NO_INT, _NO_FLOAT, _NO_FLOAT
    lv, steady = _window_stats(x, k, p)
    # A quiet chunk: no two levels are far enough apart (rounding keeps every |a - b| <= this).
    if lv.max() - lv.min() < p.step_threshold_w:
        return _NO_INT, _NO_INT, _NO_FLOAT, _NO_FLOAT
    m = lv.size
    steady &= t[k - 1:] - t[:m] >= p.min_steady_ms
    dt = t[1:] - t[:-1]
    bad = (dt > p.max_gap_ms) | (dt <= 0)  # bad[j]: the step into sample j + 1 is a gap
    cbad = np.cumsum(bad) if bad.any() else None
    before = lv[:nc]
    found = np.empty((big_g + 1, nc), dtype=np.bool_)  # found[g]: transition g is valid
    dif = np.empty(nc)
    lo_c = None if cbad is None else np.concatenate(((0,), cbad[:nc - 1]))
    for g in range(big_g + 1):
        o = k + g  # window offset of the after window from the before window
        np.subtract(lv[o:o + nc], before, out=dif)
        np.abs(dif, out=dif)
        np.greater_equal(dif, p.step_threshold_w, out=found[g])
        found[g] &= steady[o:o + nc]
        if cbad is not None:
            # no gap from the first sample of the before window to the last of the after
            # window: steps into samples c+1 .. c+k+o-1 (cbad[j] counts steps into 1..j+1)
            found[g] &= cbad[k + o - 2:k + o - 2 + nc] == lo_c
    c = np.flatnonzero(np.logical_or.reduce(found, axis=0) & steady[:nc])
    if c.size == 0:
        return _NO_INT, _NO_INT, _NO_FLOAT, _NO_FLOAT
    g_of = found[:, c].argmax(axis=0)  # the smallest g that is valid wins
    return c + k, g_of, lv[c], lv[c + k + g_of]


def _best_of_runs(ci: IntArray, cg: IntArray, cb: FloatArray, ca: FloatArray, max_len: int
                  ) -> tuple[IntArray, IntArray]:
    """Rule 3 in bulk: cut the candidates into runs of consecutive ``i`` with the same sign,
    runs into pieces of at most ``max_len`` counted from the start of the run; return the
    piece starts and, per piece, the index of its best candidate (smallest ``g``, then the
    largest ``|ΔP|``, then the earliest)."""
    n = ci.size
    idx = np.arange(n)
    rise = ca > cb
    brk = np.empty(n, dtype=np.bool_)
    brk[0] = True
    np.not_equal(ci[1:] - ci[:-1], 1, out=brk[1:])
    brk[1:] |= rise[1:] != rise[:-1]
    run0 = np.maximum.accumulate(np.where(brk, idx, 0))
    first = (idx - run0) % max_len == 0
    starts = np.flatnonzero(first)
    piece = np.cumsum(first)  # pieces are contiguous, so after the sort piece p sits at
    order = np.lexsort((idx, -np.abs(ca - cb), cg, piece))  # starts[p] .. starts[p+1] - 1
    return starts, order[starts]


def _merge_dips(st: DetectorState, ts: IntArray, before: FloatArray, after: FloatArray,
                p: NilmParams) -> list[Edge]:
    """Rule 4 in bulk, the same as :func:`_emit` edge by edge: every drop waits (it is
    pending), and the next edge cancels it and itself when it is a rise back to the level
    before the drop within ``merge_dip_ms``. A rise is only ever cancelled by the drop just
    before it, so the pairs do not interact. The drop carried in the state goes first."""
    dp = after - before
    drop = dp < 0 if p.merge_dip_ms > 0 else np.zeros(dp.size, dtype=np.bool_)
    if st.pend:
        ts = np.concatenate(((st.pend_ts,), ts))
        dp = np.concatenate(((st.pend_dp,), dp))
        before = np.concatenate(((st.pend_before,), before))
        after = np.concatenate(((st.pend_after,), after))
        drop = np.concatenate(((True,), drop))
    tol = np.abs(dp[:-1])
    tol *= p.dip_match_rel
    np.maximum(tol, p.noise_abs_w, out=tol)
    pause = np.abs(after[1:] - before[:-1]) <= tol
    pause &= ts[1:] - ts[:-1] <= p.merge_dip_ms
    pause &= dp[1:] > 0
    pause &= drop[:-1]
    keep = np.ones(ts.size, dtype=np.bool_)
    keep[:-1] &= ~pause
    keep[1:] &= ~pause
    st.pend = bool(drop[-1])  # the last drop waits for the next chunk (never in a pause)
    keep[-1] &= not st.pend
    waited = np.flatnonzero(drop)
    if waited.size:  # the fields keep the last drop that waited, as _emit leaves them
        j = int(waited[-1])
        st.pend_ts, st.pend_dp = int(ts[j]), float(dp[j])
        st.pend_before, st.pend_after = float(before[j]), float(after[j])
    return list(map(Edge, ts[keep].tolist(), dp[keep].tolist(), before[keep].tolist(),
                    after[keep].tolist()))


def detect_edges(state: DetectorState | None, ts_ms: Sequence[int] | IntArray,
                 power_w: Sequence[float] | FloatArray, p: NilmParams
                 ) -> tuple[DetectorState, list[Edge]]:
    """Process one chunk of one household's samples (time-ordered); return new state, edges."""
    st = DetectorState() if state is None else _copy(state)
    t_new, x_new = _inputs(ts_ms, power_w)
    out: list[Edge] = []
    if t_new.size == 0:
        return st, out
    if st.buf_t:
        t = np.concatenate((st.buf_t, t_new)).astype(np.int64, copy=False)
        x = np.concatenate((st.buf_x, x_new)).astype(np.float64, copy=False)
    else:
        t, x = t_new, x_new
    k, big_g = p.level_samples, p.max_transition_samples
    n = int(x.size)
    last = n - k - big_g  # last i whose windows are complete
    ci, cg, cb, ca = candidates(t, x, p)
    first_open = max(last + 1, k)  # first i not settled by this call
    if ci.size:
        starts, best = _best_of_runs(ci, cg, cb, ca, _max_group(p))
        if int(ci[-1]) == last:  # the last piece may continue in the next chunk
            first_open = int(ci[starts[-1]])
            best = best[:-1]
        if best.size:
            ts = t[ci[best]]
            st.settled_ts = max(st.settled_ts, int(ts.max()))
            out = _merge_dips(st, ts, cb[best], ca[best], p)
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

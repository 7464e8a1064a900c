"""Tumbling energy/power windows per household: 1 min, 15 min, 1 h and the local day.

Batch-first and pure: ``apply(state, readings, params, tz) -> ApplyResult`` folds one batch
of a household's readings into its state and returns the windows that closed (each exactly
once, final), the late readings and the rejected ones. ``advance(state, now_ms, params)``
closes the windows of a household that went silent; ``live_view(state)`` reads the open
windows. The state is one small immutable :class:`HouseholdWindows` struct, meant to be stored
whole in a table keyed by household id and written back once per batch.

Semantics (see docs/windows.md for the user-facing description):

* Readings are processed in arrival order, one at a time, so any split of a sequence into
  batches gives exactly the same result (recovery after a crash is exact).
* The household watermark is its largest accepted event time. A reading older than
  ``watermark - grace_ms`` (or than a window closed by :func:`advance`) is returned in ``late``.
  With ``now_ms`` (the partition clock or the Kafka record time), a reading later than
  ``now_ms + max_future_skew_ms`` is returned in ``future`` and moves nothing.
* A window closes when ``watermark - grace_ms`` reaches its end.
* Energy: see :mod:`app.domain.window_energy`.

Live operation mostly calls :func:`apply` with one reading per household, in order, and no
window closes: that case skips the :class:`~app.domain.window_energy.Cursor` round trip
(``_apply_in_window``); anything else goes through ``_apply_general``. Both give exactly the
same results (tests/unit/test_windows_fastpath.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any, cast

import msgspec

from app.domain.reading import Reading
from app.domain.window_energy import (
    FLAG_COUNTER_RESET,
    FLAG_ESTIMATED,
    NO_TIME,
    ClosedTuple,
    Cursor,
    segment_energy,
)

__all__ = [
    "ApplyResult",
    "ClosedWindow",
    "HouseholdWindows",
    "OpenWindow",
    "WindowParams",
    "WindowSize",
    "advance",
    "apply",
    "live_view",
    "partition_clock",
]


class WindowSize(msgspec.Struct, frozen=True):
    """One window size: a fixed length aligned on the Unix epoch, or the local calendar day."""

    name: str
    length_ms: int = 0
    local_day: bool = False
    """Day of the household's time zone (23 h / 24 h / 25 h); ``length_ms`` is ignored."""


DEFAULT_SIZES: tuple[WindowSize, ...] = (
    WindowSize("1m", 60_000),
    WindowSize("15m", 900_000),
    WindowSize("1h", 3_600_000),
    WindowSize("1d", local_day=True),
)


class WindowParams(msgspec.Struct, frozen=True):
    """Window sizes and event-time tolerances. The first size is the smallest; every other
    fixed size is a multiple of it, so larger windows are unions of smallest windows."""

    sizes: tuple[WindowSize, ...] = DEFAULT_SIZES
    grace_ms: int = 30_000
    """How long after a window's end (in household event time) late readings still count."""
    max_gap_ms: int = 300_000
    """Longest time between two readings that is still integrated / counted as covered."""
    max_future_skew_ms: int = 300_000
    """Readings later than ``now_ms`` + this are refused (``future``)."""
    idle_timeout_ms: int = 900_000
    """Extra wait before :func:`advance` closes the windows of a silent household."""
    max_counter_rate_w: float = 250_000.0
    """A counter rise faster than this mean power is not energy: treated as a counter reset."""

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("at least one window size is needed")
        first = self.sizes[0]
        if first.local_day or first.length_ms <= 0:
            raise ValueError("the first (smallest) window size must be a fixed length")
        names = [s.name for s in self.sizes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate window size names: {names}")
        for s in self.sizes[1:]:
            if not s.local_day and (
                s.length_ms <= first.length_ms or s.length_ms % first.length_ms
            ):
                raise ValueError(f"size {s.name} is not a multiple of {first.name}")
        if self.grace_ms < 0 or self.max_future_skew_ms < 0 or self.idle_timeout_ms < 0:
            raise ValueError("grace, skew and idle timeout must be >= 0")
        if self.max_gap_ms <= 0 or self.max_counter_rate_w <= 0:
            raise ValueError("max_gap_ms and max_counter_rate_w must be > 0")


class OpenWindow(msgspec.Struct, frozen=True, array_like=True):
    """Running aggregate of one open window (part of the stored state)."""

    start_ms: int
    end_ms: int
    e_start_wh: float
    """Household energy function ``E`` at ``start_ms``."""
    readings: int = 0
    sum_w: float = 0.0
    min_w: float = 0.0
    max_w: float = 0.0
    covered_ms: int = 0
    flags: int = 0


class HouseholdWindows(msgspec.Struct, frozen=True, array_like=True):
    """Whole window state of one household (table value). Energies are ``E`` values: Wh
    since the household's first reading, never reset."""

    household_id: str
    tz: str
    watermark_ms: int
    closed_until_ms: int
    anchor_ms: int
    """``E`` is final up to here (last committed reading or a closed window boundary)."""
    anchor_wh: float
    last_ms: int
    last_w: float
    last_wh: float
    last_meter: str
    counter_ms: int
    counter_raw: float | None
    """Last committed meter counter (Wh), None for a power-only meter."""
    counter_line_wh: float
    """``E`` the counter alone accounts for at ``counter_ms`` (below ``E`` only while an
    interpolated boundary ran ahead of the counter)."""
    counter_meter: str
    windows: tuple[OpenWindow, ...]
    """One open window per size (same order as ``WindowParams.sizes``); empty before the
    first committed reading."""
    pending_ts: tuple[int, ...] = ()
    """Readings not yet final (within the grace period), sorted by time."""
    pending_w: tuple[float, ...] = ()
    pending_wh: tuple[float | None, ...] = ()
    pending_meter: tuple[str, ...] = ()
    """Meter id per pending reading, "" for ``last_meter``; () when all are ``last_meter``."""


class ClosedWindow(msgspec.Struct, frozen=True):
    """A final window result, emitted once when the window closes (JSON-encodable)."""

    household_id: str
    size: str
    start_ms: int
    end_ms: int
    energy_wh: float
    mean_power_w: float | None
    """Mean of the readings' active power; None without readings."""
    min_power_w: float | None
    max_power_w: float | None
    readings: int
    coverage: float
    """Fraction of the window between two readings at most ``max_gap_ms`` apart."""
    gap: bool
    """Part of the window has no data (``coverage < 1``)."""
    counter_reset: bool
    """The counter dropped, jumped implausibly or the meter changed in this window."""
    estimated: bool
    """Some energy is not a counter difference over covered time (power integration,
    counter spread over a gap, or a correction)."""


class ApplyResult(msgspec.Struct, frozen=True):
    state: HouseholdWindows | None
    closed: list[ClosedWindow]
    late: list[Reading]
    """Older than the grace period or in a closed window: send to the late-data topic."""
    future: list[Reading] = msgspec.field(default_factory=list)
    """Later than ``now_ms + max_future_skew_ms``: not applied, send to the late-data topic."""
    duplicates: list[Reading] = msgspec.field(default_factory=list)
    """Same event time as a reading already applied (first one wins)."""


def _sizes(params: WindowParams) -> list[tuple[str, int, bool]]:
    return [(s.name, s.length_ms, s.local_day) for s in params.sizes]


def _load(state: HouseholdWindows | None, params: WindowParams, tz: str) -> Cursor:
    cur = Cursor(tz, _sizes(params), params.max_gap_ms, params.max_counter_rate_w)
    if state is None:
        return cur
    cur.wm = state.watermark_ms
    cur.closed_until = state.closed_until_ms
    cur.a_ms = state.anchor_ms
    cur.a_wh = state.anchor_wh
    cur.l_ms = state.last_ms
    cur.l_w = state.last_w
    cur.l_wh = state.last_wh
    cur.l_m = last = state.last_meter
    cur.c_ms = state.counter_ms
    cur.c_raw = state.counter_raw
    cur.c_line = state.counter_line_wh
    cur.c_m = state.counter_meter
    ws = state.windows
    if ws:
        if len(ws) != len(params.sizes):
            raise ValueError("window sizes changed: the stored state must be reset")
        cur.started = True
        w0 = ws[0]
        cur.s0 = w0.start_ms
        cur.e0 = w0.end_ms
        cur.es0 = w0.e_start_wh
        cur.n0 = w0.readings
        cur.sum0 = w0.sum_w
        cur.lo0 = w0.min_w
        cur.hi0 = w0.max_w
        cur.cov0 = w0.covered_ms
        cur.fl0 = w0.flags
        cur.big = None
        cur.big_src = ws[1:]
    if state.pending_ts:
        cur.pend_ts = list(state.pending_ts)
        cur.pend_w = list(state.pending_w)
        cur.pend_c = list(state.pending_wh)
        pm = state.pending_meter
        cur.pend_m = [m or last for m in pm] if pm else [last] * len(cur.pend_ts)
    return cur


def _save(cur: Cursor, household_id: str) -> HouseholdWindows:
    windows: tuple[OpenWindow, ...] = ()
    if cur.started:
        first = OpenWindow(
            cur.s0, cur.e0, cur.es0, cur.n0, cur.sum0, cur.lo0, cur.hi0, cur.cov0, cur.fl0
        )
        if cur.big is None:  # larger windows untouched in this call: reuse the stored ones
            windows = (first, *cast(tuple[OpenWindow, ...], cur.big_src))
        else:
            windows = (
                first,
                *(
                    OpenWindow(g.start, g.end, g.es, g.n, g.sum, g.lo, g.hi, g.cov, g.flags)
                    for g in cur.big
                ),
            )
    h = cur.head
    last = cur.l_m
    ms = cur.pend_m[h:]
    # meter ids of pending readings: () when all are ``last_meter`` (the usual case)
    pend_m = () if ms.count(last) == len(ms) else tuple("" if m == last else m for m in ms)
    return HouseholdWindows(
        household_id,
        cur.tz,
        cur.wm,
        cur.closed_until,
        cur.a_ms,
        cur.a_wh,
        cur.l_ms,
        cur.l_w,
        cur.l_wh,
        last,
        cur.c_ms,
        cur.c_raw,
        cur.c_line,
        cur.c_m,
        windows,
        tuple(cur.pend_ts[h:]),
        tuple(cur.pend_w[h:]),
        tuple(cur.pend_c[h:]),
        pend_m,
    )


def _closed(household_id: str, rows: list[ClosedTuple]) -> list[ClosedWindow]:
    out = []
    for name, start, end, energy, n, sum_w, lo, hi, cov, flags in rows:
        length = end - start
        out.append(
            ClosedWindow(
                household_id,
                name,
                start,
                end,
                energy,
                sum_w / n if n else None,
                lo if n else None,
                hi if n else None,
                n,
                cov / length,
                cov < length,
                bool(flags & FLAG_COUNTER_RESET),
                bool(flags & FLAG_ESTIMATED),
            )
        )
    return out


def counter_key(r: Reading) -> str:
    """The meter's counter series a reading belongs to: counters are only subtracted within
    one key, a change of key is a counter reset (a new meter, or a discontinuity ingestion
    accepted, :attr:`Reading.counter_series`)."""
    return r.meter_id if not r.counter_series else f"{r.meter_id}#{r.counter_series}"


def apply(
    state: HouseholdWindows | None,
    readings: Sequence[Reading],
    params: WindowParams,
    tz: str,
    *,
    now_ms: int | None = None,
) -> ApplyResult:
    """Fold one household's readings (any order) into its window state.

    ``tz`` is the household's IANA zone (for the local-day size). ``now_ms``, when given, is
    the reference clock for refusing far-future readings (partition clock or record time).
    """
    if not readings:
        return ApplyResult(state, [], [])
    limit = now_ms + params.max_future_skew_ms if now_ms is not None else None
    if state is not None:
        res = _apply_in_window(state, readings, params, tz, limit)
        if res is not None:
            return res
    return _apply_general(state, readings, params, tz, limit)


def _apply_in_window(
    state: HouseholdWindows,
    readings: Sequence[Reading],
    params: WindowParams,
    tz: str,
    limit: int | None,
) -> ApplyResult | None:
    """Fast path of :func:`apply` for the live case, or None when it does not apply.

    Applies when the readings are in order, newer than the watermark, not in the future, and
    ``watermark - grace`` stays inside the open smallest window (and, if a pending reading
    leaves the grace period, all pending readings are of the last meter): then no window
    closes and the only work is committing the readings that leave the grace period, each
    inside the smallest window (the ``ts < e0`` branch of ``Cursor.commit``,
    mirrored here on locals). The new state reuses the larger windows and the tuples that did
    not change. Exactly the same result as :func:`_apply_general` (tested on generated
    sequences, tests/unit/test_windows_fastpath.py).
    """
    ws = state.windows
    if state.tz != tz or (ws and len(ws) != len(params.sizes)):
        return None  # the general path stores the new zone, or raises
    grace = params.grace_ms
    if ws and readings[-1].ts_ms - grace >= ws[0].end_ms:
        return None  # a window closes (checked first: big batches usually close one)
    hid = state.household_id
    meter = state.last_meter
    if readings[0].ts_ms < state.closed_until_ms:
        return None
    prev = state.watermark_ms
    same_meter = True
    for r in readings:
        ts = r.ts_ms
        if ts <= prev or r.household_id != hid or (limit is not None and ts > limit):
            return None
        if (r.counter_series or r.meter_id != meter) and counter_key(r) != meter:
            same_meter = False
        prev = ts
    t = prev - grace  # the frontier's target: pending readings <= t are committed
    pts = state.pending_ts
    k = bisect_right(pts, t)
    if k == len(pts) and readings[0].ts_ms <= t:  # grace shorter than the batch (or 0)
        return None
    pw = state.pending_w
    pc = state.pending_wh
    if len(readings) == 1:
        r = readings[0]
        new_ts: tuple[int, ...] = (prev,)
        new_w: tuple[float, ...] = (r.power_w,)
        new_c: tuple[float | None, ...] = (r.energy_wh,)
    else:
        new_ts = tuple(r.ts_ms for r in readings)
        new_w = tuple(r.power_w for r in readings)
        new_c = tuple(r.energy_wh for r in readings)
    pm = state.pending_meter
    if not k:  # nothing leaves the grace period (also before the first commit)
        if pm or not same_meter:  # meter ids relative to ``last_meter``, as ``_save`` does
            pm = (pm or ("",) * len(pts)) + tuple(
                "" if (m := counter_key(r)) == meter else m for r in readings
            )
        return ApplyResult(
            msgspec.structs.replace(
                state, watermark_ms=prev, pending_ts=pts + new_ts, pending_w=pw + new_w,
                pending_wh=pc + new_c, pending_meter=pm,
            ),
            [], [], [], [],
        )  # fmt: skip
    if pm or not same_meter or not ws:
        return None
    w0 = ws[0]
    a_ms = state.anchor_ms
    a_wh = state.anchor_wh
    l_ms = state.last_ms
    l_w = state.last_w
    l_wh = state.last_wh
    c_ms = state.counter_ms
    c_raw = state.counter_raw
    c_line = state.counter_line_wh
    c_m = state.counter_meter
    n0 = w0.readings
    sum0 = w0.sum_w
    lo0 = w0.min_w
    hi0 = w0.max_w
    cov0 = w0.covered_ms
    fl0 = w0.flags
    max_gap = params.max_gap_ms
    max_rate = params.max_counter_rate_w
    for i in range(k):
        ts = pts[i]
        w = pw[i]
        c = pc[i]
        rem, covered, flags = segment_energy(
            ts, w, c, meter, l_ms, l_w, l_wh, a_wh, c_ms, c_raw, c_line, c_m, max_gap, max_rate
        )
        if covered:
            cov0 += ts - a_ms
        fl0 |= flags
        a_ms = ts
        a_wh += rem
        if n0:
            n0 += 1
            sum0 += w
            if w < lo0:
                lo0 = w
            elif w > hi0:
                hi0 = w
        else:
            n0 = 1
            sum0 = lo0 = hi0 = w
        l_ms = ts
        l_w = w
        l_wh = a_wh
        if c is not None:
            if c_raw is None or flags & FLAG_COUNTER_RESET:
                c_line = a_wh
            else:
                line = c_line + (c - c_raw)
                c_line = a_wh if a_wh - line <= 1e-9 * (1.0 + abs(a_wh)) else line
            c_ms = ts
            c_raw = c
            c_m = meter
    window = OpenWindow(w0.start_ms, w0.end_ms, w0.e_start_wh, n0, sum0, lo0, hi0, cov0, fl0)
    new = HouseholdWindows(
        hid, tz, prev, state.closed_until_ms, a_ms, a_wh, l_ms, l_w, l_wh, meter,
        c_ms, c_raw, c_line, c_m, (window, *ws[1:]),
        pts[k:] + new_ts, pw[k:] + new_w, pc[k:] + new_c, (),
    )  # fmt: skip
    return ApplyResult(new, [], [], [], [])


def _apply_general(
    state: HouseholdWindows | None,
    readings: Sequence[Reading],
    params: WindowParams,
    tz: str,
    limit: int | None,
) -> ApplyResult:
    """:func:`apply` for any input: one reading at a time through a :class:`Cursor`."""
    hid = state.household_id if state is not None else readings[0].household_id
    cur = _load(state, params, tz)
    grace = params.grace_ms
    late: list[Reading] = []
    future: list[Reading] = []
    dups: list[Reading] = []
    wm = cur.wm
    floor = max(wm - grace, cur.closed_until)
    add = cur.add_pending
    settle = cur.settle
    for r in readings:
        ts = r.ts_ms
        if r.household_id != hid:
            raise ValueError(f"reading of {r.household_id} applied to household {hid}")
        if ts < floor:
            late.append(r)
            continue
        if limit is not None and ts > limit:
            future.append(r)
            continue
        if not add(ts, r.power_w, r.energy_wh, counter_key(r)):
            dups.append(r)
            continue
        if ts > wm:
            cur.wm = wm = ts
            t = ts - grace
            if t > floor:
                floor = t
            settle(t)
        elif ts == floor:
            settle(ts)
    return ApplyResult(_save(cur, hid), _closed(hid, cur.out), late, future, dups)


def advance(
    state: HouseholdWindows, now_ms: int, params: WindowParams
) -> tuple[HouseholdWindows, list[ClosedWindow]]:
    """Close the windows whose ``end + grace + idle_timeout <= now_ms`` (silent household).

    ``now_ms`` is the partition's event-time clock (:func:`partition_clock`) or wall-clock
    time: the agent chooses. Energy after the household's last reading is not invented: ``E``
    is held flat up to the closed boundary (the window shows ``gap``/``coverage``); when the
    meter comes back, a counter's difference is spread over the time after that boundary.
    Returns the same state object when nothing closes.
    """
    small = params.sizes[0].length_ms
    f = now_ms - params.grace_ms - params.idle_timeout_ms
    f -= f % small
    if f <= state.closed_until_ms or f <= state.watermark_ms - params.grace_ms:
        return state, []
    cur = _load(state, params, state.tz)
    cur.settle(f)
    cur.closed_until = f
    return _save(cur, state.household_id), _closed(state.household_id, cur.out)


def due_boundary(clock_ms: int, params: WindowParams) -> int:
    """The latest smallest-window boundary ``b`` with ``b + grace <= clock_ms``: windows ending
    at or before it are due once the partition's event-time clock reads ``clock_ms``."""
    f = clock_ms - params.grace_ms
    return f - f % params.sizes[0].length_ms


def close_due(
    state: HouseholdWindows, clock_ms: int, params: WindowParams
) -> tuple[HouseholdWindows, list[ClosedWindow]]:
    """Close the windows that the partition's clock says are due, without waiting for this
    household's own next reading (Kafka Streams' stream-time semantics).

    A window ``[start, end)`` closes when ``end + grace <= clock_ms`` *and* the household has
    a reading at or after ``end`` (its watermark passed ``end``) no further than ``max_gap``
    from the one before ``end``, so the energy at the boundary is interpolated between real
    readings exactly as when the household's own reading closes it: for readings that arrive
    in order the closed windows are identical either way (property-tested). A household whose
    own data lags behind the partition (watermark before ``end``) or that has a gap across
    ``end`` is left to its own readings or to :func:`advance`. Afterwards readings before the
    closed boundary are late. Returns the same state object when nothing closes.
    """
    wm = state.watermark_ms
    small = params.sizes[0].length_ms
    f = min(due_boundary(clock_ms, params), wm - wm % small)
    ws = state.windows
    if f <= state.closed_until_ms or (
        f <= ws[0].start_ms if ws else not state.pending_ts or state.pending_ts[0] >= f
    ):
        return state, []  # nothing open ends at or before f
    pts = state.pending_ts
    k = bisect_right(pts, f)
    if k < len(pts) and pts[k] - (pts[k - 1] if k else state.last_ms) > params.max_gap_ms:
        return state, []  # f falls in a gap: the household's own readings decide
    cur = _load(state, params, state.tz)
    cur.settle(f)
    cur.closed_until = f
    return _save(cur, state.household_id), _closed(state.household_id, cur.out)


def partition_clock(
    clock_ms: int | None, event_ts: Iterable[int], reference_ms: int, params: WindowParams
) -> int | None:
    """Partition event-time clock for :func:`advance`: the largest event time seen, ignoring
    times later than ``reference_ms + max_future_skew_ms`` (``reference_ms`` = the Kafka record
    timestamp), so one meter with a wrong clock cannot close everyone's windows."""
    limit = reference_ms + params.max_future_skew_ms
    best = clock_ms
    for ts in event_ts:
        if ts <= limit and (best is None or ts > best):
            best = ts
    return best


def live_view(state: HouseholdWindows, params: WindowParams | None = None) -> dict[str, Any]:
    """Latest power, today's energy so far and the open windows, pending readings included.

    Read-only (works on a copy). "Today" is the local day of the latest reading (event time).
    """
    params = params if params is not None else WindowParams()
    cur = _load(state, params, state.tz)
    cur.flush()
    now_wh = cur.a_wh
    open_windows: list[dict[str, Any]] = []
    today: dict[str, Any] | None = None
    if cur.started:
        rows = [
            (
                cur.name0,
                cur.s0,
                cur.e0,
                cur.es0,
                cur.n0,
                cur.sum0,
                cur.lo0,
                cur.hi0,
                cur.cov0,
                cur.fl0,
            )
        ]
        for i, g in enumerate(cur.bigs()):  # closed smallest windows + the open smallest one
            n = g.n + cur.n0
            lo = min(g.lo, cur.lo0) if g.n and cur.n0 else (g.lo if g.n else cur.lo0)
            hi = max(g.hi, cur.hi0) if g.n and cur.n0 else (g.hi if g.n else cur.hi0)
            rows.append(
                (
                    cur.big_names[i],
                    g.start,
                    g.end,
                    g.es,
                    n,
                    g.sum + cur.sum0,
                    lo,
                    hi,
                    g.cov + cur.cov0,
                    g.flags | cur.fl0,
                )
            )
        for name, start, end, es, n, sum_w, lo, hi, cov, flags in rows:
            view = {
                "size": name,
                "start_ms": start,
                "end_ms": end,
                "energy_wh": now_wh - es,
                "readings": n,
                "mean_power_w": sum_w / n if n else None,
                "min_power_w": lo if n else None,
                "max_power_w": hi if n else None,
                "covered_ms": cov,
                "counter_reset": bool(flags & FLAG_COUNTER_RESET),
                "estimated": bool(flags & FLAG_ESTIMATED),
            }
            open_windows.append(view)
        for size, view in zip(params.sizes, open_windows, strict=True):
            if size.local_day:
                today = view
                break
    return {
        "household_id": state.household_id,
        "watermark_ms": state.watermark_ms if state.watermark_ms != NO_TIME else None,
        "last_ts_ms": cur.l_ms if cur.started else None,
        "last_power_w": cur.l_w if cur.started else None,
        "today_start_ms": today["start_ms"] if today else None,
        "today_energy_wh": today["energy_wh"] if today else None,
        "open_windows": open_windows,
    }

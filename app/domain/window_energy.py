"""The energy engine behind :mod:`app.domain.windows` (pure, mutable, one batch at a time).

A household's energy is one non-decreasing function ``E(t)`` (Wh, since the household's first
reading). Between two consecutive readings ``E`` rises linearly by the segment's energy: the
counter difference when both ends carry the same meter's counter, else the trapezoid of the two
powers (within ``max_gap_ms``) or nothing (longer gap). Every window's energy is
``E(end) - E(start)`` with each boundary value computed once and shared by the two windows that
meet there, so sums over smaller windows telescope to the larger window exactly.

The engine only ever moves forward: a *frontier* ``(a_ms, a_wh)`` is the point up to which
``E`` is final. Readings wait in a sorted pending buffer until no accepted reading can land
before them (``ts <= watermark - grace``), then are committed one by one. When a window end is
passed by ``watermark - grace`` but the next reading lies beyond it, the frontier is moved to
that boundary (a *virtual anchor*): the value there is interpolated towards the first pending
reading, or held flat when there is none (silent household, :func:`advance`). Later segments
subtract what was already attributed past the last real reading, so a counter's total is kept.

Closed windows come out as plain tuples (:data:`ClosedTuple`); :mod:`app.domain.windows`
turns them into structs. Nothing here allocates per reading except the pending buffer entries.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

FLAG_COUNTER_RESET = 1
FLAG_ESTIMATED = 2
NO_TIME = -(2**62)
"""Sentinel time (ms) for "never": before any real event time."""

MS_PER_HOUR = 3_600_000.0

ClosedTuple = tuple[str, int, int, float, int, float, float, float, int, int]
"""(size, start_ms, end_ms, energy_wh, readings, sum_w, min_w, max_w, covered_ms, flags)."""


@lru_cache(maxsize=8192)
def _midnight_ms(tz: str, ordinal: int, align_ms: int) -> int:
    """First instant of local date ``ordinal`` in ``tz``, rounded down to ``align_ms``.

    ``fold=0`` gives the first of two ambiguous midnights and, for a midnight that does not
    exist (DST starting at 00:00), the instant the clocks jump, which is the day's first instant.
    """
    d = date.fromordinal(ordinal)
    ms = int(datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz)).timestamp()) * 1000
    return ms - ms % align_ms


def day_bounds(t_ms: int, tz: str, align_ms: int = 60_000) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of the local day of ``tz`` containing ``t_ms``.

    23 h or 25 h on DST change days. Boundaries are rounded down to ``align_ms`` (a no-op for
    every present-day zone with the 1-minute smallest window) so that smaller windows tile days.
    """
    local = datetime.fromtimestamp(t_ms // 1000, ZoneInfo(tz))
    ordinal = local.date().toordinal()
    start = _midnight_ms(tz, ordinal, align_ms)
    while start > t_ms:
        ordinal -= 1
        start = _midnight_ms(tz, ordinal, align_ms)
    end = _midnight_ms(tz, ordinal + 1, align_ms)
    while end <= t_ms:
        ordinal += 1
        start, end = end, _midnight_ms(tz, ordinal + 1, align_ms)
    return start, end


def segment_energy(
    ts: int,
    w: float,
    c: float | None,
    m: str,
    l_ms: int,
    l_w: float,
    l_wh: float,
    a_wh: float,
    c_ms: int,
    c_raw: float | None,
    c_line: float,
    c_m: str,
    max_gap: int,
    max_rate: float,
) -> tuple[float, bool, int]:
    """Energy from the frontier (``E = a_wh``) to a reading ``(ts, w, c, m)`` that follows the
    last committed reading ``(l_ms, l_w, l_wh)`` and counter reading ``(c_ms, c_raw, c_line,
    c_m)``: ``(rem_wh, covered, flags)``. The one place segment energy is computed (used by
    :class:`Cursor` and by the one-window fast path of :func:`app.domain.windows.apply`)."""
    dt = ts - l_ms
    covered = dt <= max_gap
    flags = 0
    if c is not None and c_raw is not None:
        d = c - c_raw
        if m == c_m and d >= 0.0 and d * MS_PER_HOUR <= max_rate * (ts - c_ms):
            # energy the counter gives past what E already holds beyond the counter line
            # (0 unless a virtual anchor or a clamp moved E off the line)
            rem = d - (a_wh - c_line)
            if rem < 0.0:  # E is ahead of the counter (interpolation overshot): wait
                return 0.0, covered, (FLAG_ESTIMATED if rem < -1e-9 * (1.0 + d) else 0)
            if not covered or c_ms != l_ms:
                flags = FLAG_ESTIMATED
            return rem, covered, flags
        flags = FLAG_COUNTER_RESET
    if not covered:
        return 0.0, False, flags
    lw = l_w if l_w > 0.0 else 0.0
    est = (lw + (w if w > 0.0 else 0.0)) * dt / (2.0 * MS_PER_HOUR) - (a_wh - l_wh)
    return (est if est > 0.0 else 0.0), True, flags | FLAG_ESTIMATED


class WindowLike(Protocol):
    """What the engine reads of a stored open window (``windows.OpenWindow``)."""

    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def e_start_wh(self) -> float: ...
    @property
    def readings(self) -> int: ...
    @property
    def sum_w(self) -> float: ...
    @property
    def min_w(self) -> float: ...
    @property
    def max_w(self) -> float: ...
    @property
    def covered_ms(self) -> int: ...
    @property
    def flags(self) -> int: ...


class Agg:
    """Running aggregate of one open window of a size larger than the smallest."""

    __slots__ = ("cov", "end", "es", "flags", "hi", "lo", "n", "start", "sum")

    def __init__(
        self,
        start: int,
        end: int,
        es: float,
        n: int = 0,
        sum_w: float = 0.0,
        lo: float = 0.0,
        hi: float = 0.0,
        cov: int = 0,
        flags: int = 0,
    ) -> None:
        self.start = start
        self.end = end
        self.es = es
        self.n = n
        self.sum = sum_w
        self.lo = lo
        self.hi = hi
        self.cov = cov
        self.flags = flags


class Cursor:
    """Mutable working copy of one household's window state during one call."""

    __slots__ = (
        "a_ms",
        "a_wh",
        "big",
        "big_day",
        "big_len",
        "big_names",
        "big_src",
        "c_line",
        "c_m",
        "c_ms",
        "c_raw",
        "closed_until",
        "cov0",
        "e0",
        "es0",
        "fl0",
        "head",
        "hi0",
        "l_m",
        "l_ms",
        "l_w",
        "l_wh",
        "lo0",
        "max_gap",
        "max_rate",
        "n0",
        "name0",
        "out",
        "pend_c",
        "pend_m",
        "pend_ts",
        "pend_w",
        "s0",
        "small",
        "started",
        "sum0",
        "tz",
        "wm",
    )

    def __init__(
        self,
        tz: str,
        sizes: list[tuple[str, int, bool]],
        max_gap_ms: int,
        max_rate_w: float,
    ) -> None:
        name0, small, _ = sizes[0]
        self.tz = tz
        self.name0 = name0
        self.small = small
        self.big_names = [s[0] for s in sizes[1:]]
        self.big_len = [s[1] for s in sizes[1:]]
        self.big_day = [s[2] for s in sizes[1:]]
        self.max_gap = max_gap_ms
        self.max_rate = max_rate_w
        self.out: list[ClosedTuple] = []
        self.started = False
        self.wm = NO_TIME
        self.closed_until = NO_TIME
        self.a_ms = NO_TIME
        self.a_wh = 0.0
        self.l_ms = NO_TIME
        self.l_w = 0.0
        self.l_wh = 0.0
        self.l_m = ""
        self.c_ms = NO_TIME
        self.c_raw: float | None = None
        self.c_line = 0.0
        self.c_m = ""
        self.s0 = 0
        self.e0 = 0
        self.es0 = 0.0
        self.n0 = 0
        self.sum0 = 0.0
        self.lo0 = 0.0
        self.hi0 = 0.0
        self.cov0 = 0
        self.fl0 = 0
        self.big: list[Agg] | None = []
        """Open windows of the larger sizes; None while still ``big_src`` (not yet touched)."""
        self.big_src: tuple[WindowLike, ...] = ()
        self.pend_ts: list[int] = []
        self.pend_w: list[float] = []
        self.pend_c: list[float | None] = []
        self.pend_m: list[str] = []
        self.head = 0

    # ----------------------------------------------------------------- window calendar
    def bigs(self) -> list[Agg]:
        """The larger sizes' open windows, made mutable on first use."""
        big = self.big
        if big is None:
            big = self.big = [
                Agg(
                    w.start_ms,
                    w.end_ms,
                    w.e_start_wh,
                    w.readings,
                    w.sum_w,
                    w.min_w,
                    w.max_w,
                    w.covered_ms,
                    w.flags,
                )
                for w in self.big_src
            ]
        return big

    def _bounds(self, i: int, t: int) -> tuple[int, int]:
        """Window of larger size ``i`` containing ``t``."""
        if self.big_day[i]:
            return day_bounds(t, self.tz, self.small)
        size = self.big_len[i]
        start = t - t % size
        return start, start + size

    # ----------------------------------------------------------------- pending buffer
    def add_pending(self, ts: int, w: float, c: float | None, m: str) -> bool:
        """Insert a reading into the sorted pending buffer; False if its time is a duplicate."""
        pts = self.pend_ts
        if len(pts) == self.head or ts > pts[-1]:
            if ts == self.l_ms:
                return False
            pts.append(ts)
            self.pend_w.append(w)
            self.pend_c.append(c)
            self.pend_m.append(m)
            return True
        i = bisect_left(pts, ts, self.head)
        if pts[i] == ts or ts == self.l_ms:
            return False
        pts.insert(i, ts)
        self.pend_w.insert(i, w)
        self.pend_c.insert(i, c)
        self.pend_m.insert(i, m)
        return True

    def settle(self, t: int) -> None:
        """Make ``E`` final up to ``t``: commit pending readings at or before ``t`` and close
        every window ending at or before ``t`` (virtual anchor at the last such boundary)."""
        pts = self.pend_ts
        while self.head < len(pts) and pts[self.head] <= t:
            h = self.head
            self.head = h + 1
            self.commit(pts[h], self.pend_w[h], self.pend_c[h], self.pend_m[h])
        if not self.started:
            return
        e_star = t - t % self.small
        if e_star >= self.e0 and e_star > self.a_ms:
            self.anchor_at(e_star)

    def flush(self) -> None:
        """Commit every pending reading (no anchoring): used for live views on a copy."""
        pts = self.pend_ts
        while self.head < len(pts):
            h = self.head
            self.head = h + 1
            self.commit(pts[h], self.pend_w[h], self.pend_c[h], self.pend_m[h])

    # ----------------------------------------------------------------- energy of a segment
    def commit(self, ts: int, w: float, c: float | None, m: str) -> None:
        """Move the frontier to a real reading and count it in its window."""
        if not self.started:
            self._start(ts, w, c, m)
            return
        rem, covered, flags = segment_energy(
            ts, w, c, m, self.l_ms, self.l_w, self.l_wh, self.a_wh,
            self.c_ms, self.c_raw, self.c_line, self.c_m, self.max_gap, self.max_rate,
        )  # fmt: skip
        if ts < self.e0:  # fast path: the segment stays inside the current smallest window
            if covered:
                self.cov0 += ts - self.a_ms
            self.fl0 |= flags
            self.a_ms = ts
            self.a_wh += rem
        else:
            self._span(ts, rem, covered, flags)
        e = self.a_wh
        if self.n0:
            self.n0 += 1
            self.sum0 += w
            if w < self.lo0:
                self.lo0 = w
            elif w > self.hi0:
                self.hi0 = w
        else:
            self.n0 = 1
            self.sum0 = self.lo0 = self.hi0 = w
        self.l_ms = ts
        self.l_w = w
        self.l_wh = e
        self.l_m = m
        if c is not None:
            c_raw = self.c_raw
            if c_raw is None or flags & FLAG_COUNTER_RESET:
                self.c_line = e  # new counter base (first counter, reset, new meter)
            else:  # the line follows the counter, also when E is ahead of it (clamped)
                line = self.c_line + (c - c_raw)
                self.c_line = e if e - line <= 1e-9 * (1.0 + abs(e)) else line
            self.c_ms = ts
            self.c_raw = c
            self.c_m = m

    def anchor_at(self, e: int) -> None:
        """Close windows up to boundary ``e`` with ``E(e)`` interpolated towards the first
        pending reading, or held flat when none is pending."""
        if self.head < len(self.pend_ts):
            h = self.head
            ts = self.pend_ts[h]
            rem, covered, flags = segment_energy(
                ts, self.pend_w[h], self.pend_c[h], self.pend_m[h], self.l_ms, self.l_w,
                self.l_wh, self.a_wh, self.c_ms, self.c_raw, self.c_line, self.c_m,
                self.max_gap, self.max_rate,
            )  # fmt: skip
            part = rem * ((e - self.a_ms) / (ts - self.a_ms))
            self._span(e, part, covered, flags)
        else:
            self._span(e, 0.0, False, 0)

    # ----------------------------------------------------------------- windows
    def _start(self, ts: int, w: float, c: float | None, m: str) -> None:
        self.started = True
        small = self.small
        self.s0 = ts - ts % small
        self.e0 = self.s0 + small
        self.es0 = 0.0
        self.n0 = 1
        self.sum0 = self.lo0 = self.hi0 = w
        self.cov0 = 0
        self.fl0 = 0
        self.big = []
        for i in range(len(self.big_len)):
            s, en = self._bounds(i, ts)
            self.big.append(Agg(s, en, 0.0))
        self.a_ms = self.l_ms = ts
        self.a_wh = self.l_wh = 0.0
        self.l_w = w
        self.l_m = m
        if c is not None:
            self.c_ms = ts
            self.c_raw = c
            self.c_line = 0.0
            self.c_m = m

    def _span(self, b: int, rem: float, covered: bool, flags: int) -> None:
        """Spread ``rem`` Wh linearly over ``[a_ms, b]``, closing windows that end on the way."""
        a = self.a_ms
        ea = self.a_wh
        span = b - a
        x = a
        skip = rem == 0.0 and not covered
        while self.e0 <= b:
            e = self.e0
            ee = ea + rem * ((e - a) / span)
            if covered:
                self.cov0 += e - x
            self.fl0 |= flags
            self._close_small(e, ee)
            x = e
            if skip:
                s_new = b - b % self.small
                if s_new > e:
                    self._jump(s_new, ee)
                    x = s_new
        if b > x:
            if covered:
                self.cov0 += b - x
            self.fl0 |= flags
        self.a_ms = b
        self.a_wh = ea + rem

    def _close_small(self, e: int, ee: float) -> None:
        n0 = self.n0
        energy = ee - self.es0
        touched = n0 > 0 or self.cov0 > 0 or self.fl0 != 0 or energy != 0.0
        out = self.out
        if touched:
            out.append(
                (
                    self.name0,
                    self.s0,
                    e,
                    energy,
                    n0,
                    self.sum0,
                    self.lo0,
                    self.hi0,
                    self.cov0,
                    self.fl0,
                )
            )
        big = self.bigs()
        for i, g in enumerate(big):
            if touched:
                if n0:
                    if g.n:
                        g.sum += self.sum0
                        if self.lo0 < g.lo:
                            g.lo = self.lo0
                        if self.hi0 > g.hi:
                            g.hi = self.hi0
                        g.n += n0
                    else:
                        g.n = n0
                        g.sum = self.sum0
                        g.lo = self.lo0
                        g.hi = self.hi0
                g.cov += self.cov0
                g.flags |= self.fl0
            if g.end == e:
                self._close_big(i, g, ee)
        self.s0 = e
        self.e0 = e + self.small
        self.es0 = ee
        self.n0 = 0
        self.sum0 = self.lo0 = self.hi0 = 0.0
        self.cov0 = 0
        self.fl0 = 0

    def _close_big(self, i: int, g: Agg, ee: float) -> None:
        energy = ee - g.es
        if g.n > 0 or g.cov > 0 or g.flags != 0 or energy != 0.0:
            self.out.append(
                (self.big_names[i], g.start, g.end, energy, g.n, g.sum, g.lo, g.hi, g.cov, g.flags)
            )
        s, en = self._bounds(i, g.end)
        self.bigs()[i] = Agg(s, en, ee)

    def _jump(self, s_new: int, ee: float) -> None:
        """Skip empty smallest windows (flat ``E``, no data) up to the one starting at s_new."""
        big = self.bigs()
        for i, g in enumerate(big):
            if g.end <= s_new:
                self._close_big(i, g, ee)
                s, en = self._bounds(i, s_new)
                big[i] = Agg(s, en, ee)
        self.s0 = s_new
        self.e0 = s_new + self.small
        self.es0 = ee

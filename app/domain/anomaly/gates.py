"""Duration gates: open after a condition has held ``min_on``, resolve after it has stopped
holding for ``clear`` (hysteresis in time), so alerts do not flap.

Two forms: :func:`gate_point` for one evaluation (hysteresis in value too: ``trig`` opens,
``hold`` keeps open), and :func:`gate_runs` for a whole batch of per-reading booleans, walked
run by run so a quiet batch costs O(1) Python work.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from app.domain.anomaly.state import NO_TIME

NONE: Final = 0
OPEN: Final = 1
RESOLVE: Final = 2


def gate_point(
    on: int, off: int, is_open: bool, t: int, trig: bool, hold: bool, min_on: int, clear: int
) -> tuple[int, int, int, int]:
    """One evaluation at time ``t``. Returns (on, off, action, when).

    ``when`` is the opening time (condition onset) for OPEN and the time the condition ended
    for RESOLVE.
    """
    if is_open:
        if hold:
            return on, NO_TIME, NONE, 0
        if off == NO_TIME:
            off = t
        if t - off >= clear:
            return NO_TIME, NO_TIME, RESOLVE, off
        return on, off, NONE, 0
    if trig:
        if on == NO_TIME:
            on = t
        if t - on >= min_on:
            return on, NO_TIME, OPEN, on
        return on, NO_TIME, NONE, 0
    if on != NO_TIME:
        if off == NO_TIME:
            off = t
        if t - off >= clear:
            return NO_TIME, NO_TIME, NONE, 0
    return on, off, NONE, 0


def gate_runs(
    on: int,
    off: int,
    is_open: bool,
    t: npt.NDArray[np.int64],
    mask: npt.NDArray[np.bool_],
    min_on: int,
    clear: int,
    reset: int | None = None,
) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Feed a batch (``t`` non-decreasing). Returns (on, off, events) with events
    ``(action, when, detected_at, index)``; ``index`` is the reading that confirmed it.

    A pending (not yet open) condition is forgotten after ``reset`` (default ``clear``) of not
    holding; an open one resolves after ``clear``."""
    if reset is None:
        reset = clear
    events: list[tuple[int, int, int, int]] = []
    n = int(t.shape[0])
    if n == 0 or (on == NO_TIME and not is_open and not bool(mask.any())):
        return on, off, events
    change = (np.flatnonzero(mask[1:] != mask[:-1]) + 1).tolist()
    starts = [0, *change]
    ends = [*change, n]
    for s, e in zip(starts, ends, strict=True):
        t_first, t_last = int(t[s]), int(t[e - 1])
        if mask[s]:
            if on == NO_TIME:
                on = t_first
            off = NO_TIME
            if not is_open and t_last - on >= min_on:
                k = s + int(np.searchsorted(t[s:e], on + min_on))
                events.append((OPEN, on, int(t[k]), k))
                is_open = True
        elif on != NO_TIME:
            if off == NO_TIME:
                off = t_first
            if t_last - off >= (clear if is_open else reset):
                if is_open:
                    k = s + int(np.searchsorted(t[s:e], off + clear))
                    events.append((RESOLVE, off, int(t[k]), k))
                    is_open = False
                on = off = NO_TIME
    return on, off, events

"""Duration gates: open after a condition has held ``min_on``, resolve after it has stopped
holding for ``clear`` (hysteresis in time), so alerts do not flap.

Two forms: :func:`gate_point` for one bucket evaluation (hysteresis in value too: ``trig``
opens, ``hold`` keeps open), and :func:`gate_step` for one reading (:func:`gate_runs` walks a
whole batch of them).
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


def gate_step(
    on: int, off: int, is_open: bool, t: int, hit: bool, min_on: int, clear: int, reset: int
) -> tuple[int, int, int, int]:
    """One reading at time ``t`` (``hit``: the condition holds). Returns (on, off, action,
    when): ``when`` is the onset for OPEN and the time the condition stopped for RESOLVE.

    A pending (not yet open) condition is forgotten after ``reset`` of not holding; an open
    one resolves after ``clear``. Callers skip the call while the gate is idle (closed,
    nothing pending and ``hit`` false): it would change nothing."""
    if hit:
        if on == NO_TIME:
            on = t
        if not is_open and t - on >= min_on:
            return on, NO_TIME, OPEN, on
        return on, NO_TIME, NONE, 0
    if on != NO_TIME:
        if off == NO_TIME:
            off = t
        if t - off >= (clear if is_open else reset):
            return NO_TIME, NO_TIME, (RESOLVE if is_open else NONE), off
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
    """Feed a batch (``t`` non-decreasing) through :func:`gate_step`. Returns (on, off,
    events) with events ``(action, when, detected_at, index)``; ``index`` is the reading that
    confirmed it. ``reset`` defaults to ``clear``."""
    if reset is None:
        reset = clear
    events: list[tuple[int, int, int, int]] = []
    for k, (tk, hit) in enumerate(zip(t.tolist(), mask.tolist(), strict=True)):
        if not hit and on == NO_TIME:
            continue
        on, off, action, when = gate_step(on, off, is_open, tk, hit, min_on, clear, reset)
        if action != NONE:
            events.append((action, when, tk, k))
            is_open = action == OPEN
    return on, off, events

"""NILM as the agent runs it: readings buffered into chunks, per-appliance energy per window.

``feed(state, readings, params, window_ms, chunk_ms)`` appends a household's readings to a
small buffer; whenever the buffer spans ``chunk_ms`` (or a window boundary is reached) the
buffer goes through :func:`app.domain.nilm.engine.step` at once (numpy works on chunks, not on
single samples), and the chunk's energy breakdown is added to the open window. When a reading
falls in a later window, the open window is returned as closed: measured + estimated +
residual sums to the household's total energy of that window.

Chunks never straddle a window boundary, so per-window energy is exact. Everything is in the
returned state (buffer included), so a restart resumes exactly.

Resolution: the detector's steady-state rule is tuned on the 6-8 s data of real homes (a
steady level is a few samples spanning at least ``min_steady_ms``). Faster meters (1 Hz) are
averaged into ``sample_ms`` bins (6 s, aligned on the epoch) before detection, so one
configuration serves every meter; a bin's mean power times its duration keeps its energy.
Slower meters pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from app.domain.nilm.engine import step
from app.domain.nilm.model import ApplianceEvent, EnergyBreakdown, NilmParams, NilmState
from app.domain.reading import Reading

__all__ = ["NilmStream", "WindowEnergy", "feed"]


class WindowEnergy(msgspec.Struct, frozen=True):
    """Appliance breakdown of one household over one window (``size``)."""

    household_id: str
    size: str
    start_ms: int
    end_ms: int
    total_wh: float
    measured_wh: dict[str, float]
    estimated_wh: dict[str, float]
    residual_wh: float


class NilmStream(msgspec.Struct, kw_only=True):
    household_id: str
    nilm: NilmState = msgspec.field(default_factory=NilmState)
    buf_ts: list[int] = msgspec.field(default_factory=list)
    buf_w: list[float] = msgspec.field(default_factory=list)
    buf_ch: dict[str, list[float]] = msgspec.field(default_factory=dict)
    win_start: int = -1
    total_wh: float = 0.0
    measured_wh: dict[str, float] = msgspec.field(default_factory=dict)
    estimated_wh: dict[str, float] = msgspec.field(default_factory=dict)
    residual_wh: float = 0.0


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(NilmStream)


def _copy(s: NilmStream) -> NilmStream:
    return _DEC.decode(_ENC.encode(s))


def _add(into: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        into[k] = into.get(k, 0.0) + v


def _bins(ts: list[int], values: list[float], sample_ms: int,
          upto: int) -> tuple[list[int], list[float], int]:
    """Mean of ``values`` per ``sample_ms`` bin for samples before ``upto`` (bin start as the
    time). Returns the bins and how many samples they used."""
    out_t: list[int] = []
    out_v: list[float] = []
    i, n = 0, len(ts)
    while i < n and ts[i] < upto:
        b = ts[i] - ts[i] % sample_ms
        j, acc = i, 0.0
        while j < n and ts[j] < upto and ts[j] - ts[j] % sample_ms == b:
            acc += values[j]
            j += 1
        out_t.append(b)
        out_v.append(acc / (j - i))
        i = j
    return out_t, out_v, i


def _run_chunk(s: NilmStream, params: NilmParams, events: list[ApplianceEvent],
               sample_ms: int, *, final: bool) -> None:
    """Run the buffered samples through NILM. Unless ``final`` (window closing), the last,
    possibly incomplete bin stays in the buffer."""
    if not s.buf_ts:
        return
    n = len(s.buf_ts)
    fast = n > 1 and (s.buf_ts[-1] - s.buf_ts[0]) / (n - 1) < sample_ms * 0.75
    if fast:
        last = s.buf_ts[-1]
        upto = last + 1 if final else last - last % sample_ms
        ts, w, used = _bins(s.buf_ts, s.buf_w, sample_ms, upto)
        chans = {k: _bins(s.buf_ts, v, sample_ms, upto)[1] for k, v in s.buf_ch.items()
                 if len(v) == n}
    else:
        ts, w, used = list(s.buf_ts), list(s.buf_w), n
        chans = {k: list(v) for k, v in s.buf_ch.items() if len(v) == n}
    if not ts:
        return
    s.nilm, evs, br = step(s.nilm, ts, w, params, chans or None, s.household_id)
    events.extend(evs)
    _accumulate(s, br)
    s.buf_ts, s.buf_w = s.buf_ts[used:], s.buf_w[used:]
    s.buf_ch = {k: v[used:] for k, v in s.buf_ch.items() if len(v) == n and used < n}


def _accumulate(s: NilmStream, br: EnergyBreakdown) -> None:
    s.total_wh += br.total_wh
    _add(s.measured_wh, br.measured_wh)
    _add(s.estimated_wh, br.estimated_wh)
    s.residual_wh += br.residual_wh


def _close(s: NilmStream, size: str, window_ms: int) -> WindowEnergy:
    w = WindowEnergy(s.household_id, size, s.win_start, s.win_start + window_ms, s.total_wh,
                     dict(s.measured_wh), dict(s.estimated_wh), s.residual_wh)
    s.total_wh, s.residual_wh = 0.0, 0.0
    s.measured_wh, s.estimated_wh = {}, {}
    return w


def feed(state: NilmStream | None, household_id: str, readings: Sequence[Reading],
         params: NilmParams, *, window_ms: int = 900_000, size: str = "15m",
         chunk_ms: int = 60_000, sample_ms: int = 6_000, owned: bool = False,
         ) -> tuple[NilmStream, list[ApplianceEvent], list[WindowEnergy]]:
    """Feed one household's readings (sorted by time; older than the buffer are ignored).

    The input state is not modified unless ``owned`` (the caller hands the state over and
    keeps only the returned one: the agent does, which saves a copy per call)."""
    s = state if state is not None and owned else None
    if s is None:
        s = NilmStream(household_id=household_id) if state is None else _copy(state)
    events: list[ApplianceEvent] = []
    closed: list[WindowEnergy] = []
    last = s.buf_ts[-1] if s.buf_ts else s.nilm.det.last_ts
    for r in readings:
        ts = r.ts_ms
        if ts <= last:
            continue  # late or duplicate: NILM works on the live, ordered signal
        last = ts
        w0 = ts - ts % window_ms
        if s.win_start < 0:
            s.win_start = w0
        elif w0 != s.win_start:
            _run_chunk(s, params, events, sample_ms, final=True)
            closed.append(_close(s, size, window_ms))
            s.win_start = w0
        s.buf_ts.append(ts)
        s.buf_w.append(r.power_w)
        if r.channels_w:
            n = len(s.buf_ts)
            for name, p in r.channels_w.items():
                col = s.buf_ch.setdefault(name, [])
                col.extend([0.0] * (n - 1 - len(col)))
                col.append(p)
        if ts - s.buf_ts[0] >= chunk_ms:
            _run_chunk(s, params, events, sample_ms, final=False)
    return s, events, closed

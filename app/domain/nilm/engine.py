"""The online NILM step: one chunk of one household's samples in, state/events/energy out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from app.domain.nilm.breakdown import build, energy_wh, interval_ms
from app.domain.nilm.detector import detect_edges
from app.domain.nilm.model import (
    ApplianceEvent,
    EnergyBreakdown,
    NilmParams,
    NilmState,
)
from app.domain.nilm.pairing import apply_edges
from app.domain.nilm.signatures import normalize_name

_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(NilmState)


def encode_state(state: NilmState) -> bytes:
    return _ENC.encode(state)


def decode_state(data: bytes) -> NilmState:
    return _DEC.decode(data)


def _teach(edges_ts: list[int], edges_dp: list[float], t: npt.NDArray[np.int64],
           channels: Mapping[str, npt.NDArray[np.float64]], p: NilmParams) -> dict[int, str]:
    """Label each edge with the sub-metered appliance whose power stepped by a similar ΔP."""
    out: dict[int, str] = {}
    k = p.level_samples
    for ts, dp in zip(edges_ts, edges_dp, strict=True):
        i = int(np.searchsorted(t, ts))
        if i < 1 or i >= t.size:
            continue
        best, best_err = "", 0.0
        for name, c in channels.items():
            before = float(np.mean(c[max(0, i - k): i]))
            after = float(np.mean(c[i: i + k]))
            err = abs((after - before) - dp)
            if err <= max(p.noise_abs_w, 0.35 * abs(dp)) and (not best or err < best_err):
                best, best_err = name, err
        if best:
            out[ts] = normalize_name(best)
    return out


def step(state: NilmState | None, ts_ms: Sequence[int] | npt.NDArray[np.int64],
         power_w: Sequence[float] | npt.NDArray[np.float64], params: NilmParams,
         channels: Mapping[str, Sequence[float] | npt.NDArray[np.float64]] | None = None,
         household_id: str = "",
         ) -> tuple[NilmState, list[ApplianceEvent], EnergyBreakdown]:
    """Process one time-ordered chunk of a household's aggregate power (any chunk size).

    ``channels`` (optional) holds sub-meter power aligned with ``ts_ms``, by channel name: the
    channels become measured energy and teach labels to this household's clusters.
    Returns the new state (the input is not modified), the appliance events, and the energy
    breakdown of the chunk, whose parts sum to the chunk's total.
    """
    st = NilmState() if state is None else _DEC.decode(_ENC.encode(state))
    t = np.asarray(ts_ms, dtype=np.int64)
    x = np.asarray(power_w, dtype=np.float64)
    last_ts = st.det.last_ts
    if t.size == 0:
        return st, [], build(last_ts, last_ts, 0.0, {}, [])
    dt = interval_ms(t, last_ts, params.max_gap_ms)
    start_ms = last_ts if last_ts >= 0 else int(t[0])
    end_ms = int(t[-1])
    total = energy_wh(x, dt)
    chans = {k: np.asarray(v, dtype=np.float64) for k, v in (channels or {}).items()}
    measured: dict[str, float] = {}
    for name, c in chans.items():
        if c.shape != x.shape:
            raise ValueError(f"channel {name!r} is not aligned with power_w")
        key = normalize_name(name)
        measured[key] = measured.get(key, 0.0) + energy_wh(np.maximum(c, 0.0), dt)

    det, edges = detect_edges(st.det, t, x, params)
    st.det = det
    teacher = (_teach([e.ts_ms for e in edges], [e.delta_w for e in edges], t, chans, params)
               if chans else None)
    before = [(o.appliance, o.power_w, o.on_ts) for o in st.open_loads]
    events = apply_edges(st, edges, household_id, params, teacher, det.safe_ts)

    # Energy intervals: loads open at the start, loads closed (off events) in this chunk,
    # loads still open at the end.
    loads: list[tuple[str, float, int, int]] = []
    closed_on: set[int] = set()
    for ev in events:
        if ev.state == "off" and ev.duration_ms is not None:
            on = ev.ts_ms - ev.duration_ms
            closed_on.add(on)
            loads.append((ev.appliance, -ev.delta_w, on, ev.ts_ms))
    open_now = {o.on_ts for o in st.open_loads}
    for o in st.open_loads:
        loads.append((o.appliance, o.power_w, o.on_ts, end_ms + 1))
    for name, pw, on in before:
        if on not in closed_on and on not in open_now:
            loads.append((name, pw, on, start_ms))  # dropped unpaired: no energy this chunk
    return st, events, build(start_ms, end_ms, total, measured, loads)

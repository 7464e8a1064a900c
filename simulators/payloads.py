"""Serialise simulated readings as the wire payloads of docs/CONTRACTS.md, and break some.

- :func:`json_payloads`: raw JSON readings (topic ``meter.raw.json``) from a chunk, with the
  bulk work (rounding, RFC 3339 stamps) done by numpy and one ``orjson.dumps`` per reading.
- :func:`tic_payloads`: Linky TIC envelopes (topic ``meter.raw.tic``) whose ``frame`` is a
  historique or standard frame built by :mod:`app.domain.tic` (checksums per Enedis-NOI-CPT_54E).
- :class:`MessageFaults`: malformed payloads and duplicates at a given rate, with ground truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from simulators.household import Chunk
from simulators.population import HouseholdSpec
from simulators.tic_frames import TicFrameWriter

FIRMWARES = ("1.4.2", "1.5.0", "2.0.1")


def iso_ms(ts_ms: np.ndarray) -> list[str]:
    """RFC 3339 UTC stamps with milliseconds and ``Z`` for int64 epoch-ms values (vectorised)."""
    return [s + "Z" for s in np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms")]


def _selection(chunk: Chunk, idx: np.ndarray | None) -> np.ndarray:
    sel = np.arange(len(chunk)) if idx is None else np.asarray(idx, dtype=np.int64)
    return sel[chunk.present[sel]]


def json_payloads(chunk: Chunk, idx: np.ndarray | None = None,
                  ts_offset_ms: int = 0) -> list[tuple[int, int, bytes]]:
    """``(sample index, ts_ms, payload)`` of the readings the node sends (offline ones skipped).

    ``idx`` picks samples (decimation); ``ts_offset_ms`` shifts event times (sub-second phase).
    """
    spec = chunk.spec
    sel = _selection(chunk, idx)
    if len(sel) == 0:
        return []
    ts_ms = chunk.ts_ms[sel] + ts_offset_ms
    ts = iso_ms(ts_ms)
    power = chunk.power_w[sel].tolist()
    energy = np.round(chunk.energy_wh[sel], 2).tolist()
    head = {"v": 1, "device_id": spec.device_id, "meter_id": spec.meter_id,
            "household_id": spec.household_id}
    fw = FIRMWARES[spec.seed % len(FIRMWARES)]
    cols: list[tuple[str, list[float]]] = []
    if spec.voltage:
        cols = [("voltage_v", chunk.voltage_v[sel].tolist()),
                ("current_a", chunk.current_a[sel].tolist()),
                ("apparent_va", chunk.apparent_va[sel].tolist())]
    chans = [(name, arr[sel].tolist()) for name, arr in chunk.channels.items()]
    dumps = orjson.dumps
    out: list[tuple[int, int, bytes]] = []
    ts_list = ts_ms.tolist()
    for k, i in enumerate(sel.tolist()):
        d: dict[str, Any] = {**head, "ts": ts[k], "power_w": power[k], "energy_wh": energy[k]}
        for name, values in cols:
            d[name] = values[k]
        if chans:
            d["channels"] = {name: values[k] for name, values in chans}
        d["fw"] = fw
        out.append((i, ts_list[k], dumps(d)))
    return out


# --- TIC ----------------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def _writer(spec: HouseholdSpec) -> TicFrameWriter:
    return TicFrameWriter(spec)


def tic_payloads(chunk: Chunk, idx: np.ndarray | None = None,
                 ts_offset_ms: int = 0) -> list[tuple[int, int, bytes]]:
    """``(sample index, ts_ms, envelope)`` for a TIC household (see :func:`json_payloads`)."""
    spec = chunk.spec
    sel = _selection(chunk, idx)
    if len(sel) == 0:
        return []
    ts_arr = chunk.ts_ms[sel] + ts_offset_ms
    ts_ms = ts_arr.tolist()
    ts = iso_ms(ts_arr)
    frames = _writer(spec).frames(chunk, sel, ts_arr)
    dumps = orjson.dumps
    return [
        (i, ts_ms[k], dumps({"v": 1, "device_id": spec.device_id, "ts": ts[k], "frame": frames[k]}))
        for k, i in enumerate(sel.tolist())
    ]


def chunk_payloads(chunk: Chunk, idx: np.ndarray | None = None,
                   ts_offset_ms: int = 0) -> list[tuple[int, int, bytes]]:
    """JSON or TIC payloads, whichever the household's meter sends."""
    if chunk.spec.tic_mode is None:
        return json_payloads(chunk, idx, ts_offset_ms)
    return tic_payloads(chunk, idx, ts_offset_ms)


# --- message faults -----------------------------------------------------------------------------

JSON_MALFORMATIONS = ("truncated", "not_json", "missing_power", "wrong_type", "naive_ts",
                      "nan_power")
TIC_MALFORMATIONS = ("truncated", "not_json", "bad_checksum", "cut_frame")


def malform(payload: bytes, tic: bool, variant: str) -> bytes:
    """A broken version of ``payload`` (a valid JSON reading or TIC envelope)."""
    if variant == "truncated":
        return payload[: max(1, len(payload) // 2)]
    if variant == "not_json":
        return b"\x00\xffgarbage" + payload[:8]
    d = orjson.loads(payload)
    if variant == "missing_power":
        d.pop("power_w", None)
    elif variant == "wrong_type":
        d["power_w"] = str(d["power_w"])
    elif variant == "naive_ts":
        d["ts"] = d["ts"].rstrip("Z")
    elif variant == "nan_power":
        return orjson.dumps({**d, "power_w": 0.5}).replace(b'"power_w":0.5', b'"power_w":NaN')
    elif variant == "bad_checksum":
        frame: str = d["frame"]
        j = frame.index("\r")  # the first group's checksum sits just before its CR
        bad = chr(((ord(frame[j - 1]) - 0x20 + 1) & 0x3F) + 0x20)
        d["frame"] = frame[: j - 1] + bad + frame[j:]
    elif variant == "cut_frame":
        frame = d["frame"]
        d["frame"] = frame[: len(frame) // 2]
    else:
        raise ValueError(f"unknown malformation {variant!r}")
    return orjson.dumps(d)


class MessageFaults:
    """Turns a small share of payloads into malformed ones or duplicates, and records it.

    ``rate`` is the probability that a payload is affected (half malformed, half duplicated).
    """

    def __init__(self, rate: float, seed: int = 0, keep_truth: bool = True) -> None:
        self.rate = rate
        self.rng = np.random.default_rng([seed, 0xBAD])
        self.counts: Counter[str] = Counter()
        self.keep_truth = keep_truth
        self.truth: list[dict[str, Any]] = []
        self._draws = np.empty(0)
        self._pos = 0

    def _u(self) -> float:
        if self._pos >= len(self._draws):
            self._draws = self.rng.random(65_536)
            self._pos = 0
        self._pos += 1
        return float(self._draws[self._pos - 1])

    def apply(self, spec: HouseholdSpec, ts_ms: int, payload: bytes) -> Sequence[bytes]:
        """The payload(s) to send instead of ``payload``."""
        u = self._u()
        if u >= self.rate:
            return (payload,)
        tic = spec.tic_mode is not None
        if u < self.rate / 2:
            variants = TIC_MALFORMATIONS if tic else JSON_MALFORMATIONS
            variant = variants[int(self._u() * len(variants))]
            self._record("malformed", spec, ts_ms, variant)
            return (malform(payload, tic, variant),)
        self._record("duplicate", spec, ts_ms, None)
        return (payload, payload)

    def _record(self, fault: str, spec: HouseholdSpec, ts_ms: int, variant: str | None) -> None:
        self.counts[fault] += 1
        if variant:
            self.counts[f"{fault}.{variant}"] += 1
        if self.keep_truth:
            rec: dict[str, Any] = {"kind": "message_fault", "fault": fault,
                                   "household_id": spec.household_id,
                                   "meter_id": spec.meter_id, "ts_ms": ts_ms}
            if variant:
                rec["variant"] = variant
            self.truth.append(rec)

"""Replay real REFIT homes (or any CSV of the same shape) as meters publishing raw JSON.

    python -m simulators.refit_replay --speed 60
    python -m simulators.refit_replay --data DIR --houses 2 5 --speed 0 --sink file --out r.jsonl

Input: ``refit_houseNN_*.csv`` files (or ``--csv FILE``...) with ``timestamp_s`` (Unix seconds,
UTC), ``aggregate_watts`` and one ``<appliance>_watts`` column per sub-metered appliance. Each
home becomes a meter (``refit-hh-NN`` / ``refit-m-NN`` / ``refit-node-NN``) publishing one JSON
reading per row to ``settings.topic_raw_json`` (key = meter id) with ``power_w`` = the
aggregate, ``channels`` = the appliance columns, and ``energy_wh`` = a counter integrating the
aggregate power (each sample's power held over the interval since the previous sample).

Timing (``--speed S``; ``0`` = as fast as possible): row ``i`` is sent at
``W0 + (t_i - t_first) / S``. Event times (``--time live``, default) keep the real intervals
and are placed so the last row is stamped when it is sent: ``ts_i = W_end - (t_last - t_i)``.
At ``S = 1`` that is a live feed; faster, it is an in-order backfill of the last day that
catches up with the present (never in the future, never older than the data span).
``--time original`` keeps the recorded timestamps. ``--truth FILE`` writes the REFIT
activations of the replayed homes as appliance on/off edges on the replayed time line.

Data: REFIT Electrical Load Measurements (CC BY 4.0). D. Murray, L. Stankovic, V. Stankovic,
"An electrical load measurements dataset of United Kingdom households from a two-year
longitudinal study", Scientific Data 4:160122 (2017), doi:10.1038/sdata.2016.122.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import heapq
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from app.domain.registry import MeterInfo
from app.settings import get_settings
from simulators.payloads import iso_ms
from simulators.sinks import Sink

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "refit"
UK_MAX_POWER_W = 23_000.0
"""A UK home's 100 A service fuse at 230 V."""


@dataclass(frozen=True)
class ReplayHome:
    name: str
    """``02`` for ``refit_house02_*.csv``; the file stem otherwise."""
    household_id: str
    meter_id: str
    device_id: str
    ts_s: np.ndarray
    power_w: np.ndarray
    channels: dict[str, np.ndarray]

    @property
    def energy_wh(self) -> np.ndarray:
        """Counter integrating the power: each sample held over the interval before it."""
        dt = np.diff(self.ts_s, prepend=self.ts_s[0])
        out: np.ndarray = 1_000_000.0 + np.cumsum(np.maximum(self.power_w, 0.0) * dt) / 3600.0
        return out


def load_home(path: Path) -> ReplayHome:
    """One CSV as a home (rows sorted by time, duplicate timestamps dropped)."""
    with path.open(newline="") as fh:
        header = next(csv.reader(fh))
    if "timestamp_s" not in header or "aggregate_watts" not in header:
        raise ValueError(f"{path}: needs timestamp_s and aggregate_watts columns")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    cols = {name: data[:, i] for i, name in enumerate(header)}
    ts = cols["timestamp_s"].astype(np.int64)
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    keep = np.concatenate(([True], np.diff(ts) > 0))
    m = re.search(r"house(\d+)", path.stem)
    name = m.group(1).zfill(2) if m else path.stem
    channels = {
        c.removesuffix("_watts"): np.nan_to_num(cols[c][order][keep])
        for c in header if c.endswith("_watts") and c != "aggregate_watts"
    }
    return ReplayHome(name, f"refit-hh-{name}", f"refit-m-{name}", f"refit-node-{name}",
                      ts[keep], np.nan_to_num(cols["aggregate_watts"][order][keep]), channels)


def find_homes(data: Path, houses: Sequence[int] | None = None) -> list[Path]:
    paths = sorted(data.glob("refit_house*.csv"))
    if houses:
        wanted = {f"{h:02d}" for h in houses}
        paths = [p for p in paths if (m := re.search(r"house(\d+)", p.stem)) and
                 m.group(1).zfill(2) in wanted]
    return paths


def registry(homes: Sequence[ReplayHome]) -> dict[str, MeterInfo]:
    """Registry entries for the replayed meters (UK homes, no export)."""
    return {h.meter_id: MeterInfo(h.household_id, UK_MAX_POWER_W, False, "Europe/London")
            for h in homes}


def payloads(home: ReplayHome, offset_ms: int) -> Iterator[tuple[int, int, bytes]]:
    """``(original ts_s, event ts_ms, JSON payload)`` per row; event = original*1000 + offset."""
    ts_ms = home.ts_s * 1000 + offset_ms
    stamps = iso_ms(ts_ms)
    power = np.round(home.power_w, 1).tolist()
    energy = np.round(home.energy_wh, 3).tolist()
    chans = [(k, np.round(v, 1).tolist()) for k, v in home.channels.items()]
    head = {"v": 1, "device_id": home.device_id, "meter_id": home.meter_id,
            "household_id": home.household_id}
    for i, (t, ms) in enumerate(zip(home.ts_s.tolist(), ts_ms.tolist(), strict=True)):
        d = {**head, "ts": stamps[i], "power_w": power[i], "energy_wh": energy[i],
             "channels": {k: v[i] for k, v in chans}, "fw": "refit-replay"}
        yield t, ms, orjson.dumps(d)


def truth_edges(data: Path, homes: Sequence[ReplayHome], offset_ms: int) -> list[dict[str, object]]:
    """REFIT activations of ``homes`` as on/off edges shifted onto the replayed time line."""
    path = next(iter(sorted(data.glob("refit_*_activations.csv"))), None)
    if path is None:
        return []
    by_name = {h.name: h for h in homes}
    out: list[dict[str, object]] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            home = by_name.get(row["house"].zfill(2))
            if home is None:
                continue
            for state, col in (("on", "start_s"), ("off", "end_s")):
                out.append({"kind": "appliance", "household_id": home.household_id,
                            "meter_id": home.meter_id, "appliance": row["appliance"],
                            "state": state, "ts_ms": int(row[col]) * 1000 + offset_ms,
                            "power_w": float(row["mean_w"]), "peak_w": float(row["peak_w"]),
                            "source": "refit"})
    out.sort(key=lambda e: int(str(e["ts_ms"])))
    return out


def _keyed(home: ReplayHome, offset_ms: int) -> Iterator[tuple[int, int, bytes, bytes]]:
    key = home.meter_id.encode()
    for t, ms, payload in payloads(home, offset_ms):
        yield t, ms, payload, key


async def replay(homes: Sequence[ReplayHome], sink: Sink, topic: str, *, speed: float = 1.0,
                 time_mode: str = "live", max_messages: int | None = None,
                 wall: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> dict[str, object]:
    """Send every row of ``homes`` in time order, paced by ``speed``; returns a summary."""
    if not homes:
        raise ValueError("no homes to replay")
    t_first = min(int(h.ts_s[0]) for h in homes)
    t_last = max(int(h.ts_s[-1]) for h in homes)
    span = t_last - t_first
    w0 = time.time() if wall is None else wall
    if time_mode == "original":
        offset_ms = 0
    else:
        w_end = w0 + (span / speed if speed > 0 else 0.0)
        offset_ms = round((w_end - t_last) * 1000)
    mono = clock
    m0 = mono()
    streams = [_keyed(h, offset_ms) for h in homes]
    sent = 0
    await sink.start()
    try:
        for t, _ms, payload, key in heapq.merge(*streams, key=lambda r: r[0]):
            if max_messages is not None and sent >= max_messages:
                break
            if speed > 0:
                delay = (t - t_first) / speed - (mono() - m0)
                if delay > 0:
                    await asyncio.sleep(delay)
            elif sent % 1000 == 999:
                await asyncio.sleep(0)
            await sink.send(topic, key, payload)
            sent += 1
        await sink.flush()
    finally:
        await sink.stop()
    return {"homes": [h.household_id for h in homes], "sent": sink.sent, "acked": sink.acked,
            "errors": sink.errors, "offset_ms": offset_ms, "elapsed_s": round(mono() - m0, 3)}


def main(argv: list[str] | None = None) -> int:
    from simulators.loadgen import make_sink

    ap = argparse.ArgumentParser(prog="python -m simulators.refit_replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--csv", type=Path, nargs="*", default=None, help="explicit CSV files")
    ap.add_argument("--houses", type=int, nargs="*", default=None, help="e.g. 2 5 17")
    ap.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = max speed")
    ap.add_argument("--time", choices=("live", "original"), default="live", dest="time_mode")
    ap.add_argument("--max-messages", type=int, default=None)
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--sink", choices=("kafka", "null", "file"), default="kafka")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    paths = args.csv or find_homes(args.data, args.houses)
    if not paths:
        ap.error(f"no refit_house*.csv under {args.data}")
    homes = [load_home(p) for p in paths]
    settings = get_settings()
    sink = make_sink(args.sink, out=args.out)
    summary = asyncio.run(replay(homes, sink, settings.topic_raw_json, speed=args.speed,
                                 time_mode=args.time_mode, max_messages=args.max_messages))
    if args.truth is not None:
        edges = truth_edges(args.data, homes, int(str(summary["offset_ms"])))
        args.truth.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in edges))
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the anomaly detectors over a CSV of one household's power.

``python -m bench.anomaly_replay --csv FILE [--json]``

Columns: ``timestamp_s`` (Unix seconds, UTC), ``aggregate_watts``, optional ``voltage_v``; other
columns are ignored (REFIT files have one per appliance), rows may be missing and values empty.
The reading interval is inferred (median spacing) and silences longer than
``max(offline_after_ms, 4 x interval)`` count as the meter being offline.

With ``--json`` one JSON line per alert opened or resolved:
``{"type", "status", "opened_at", "resolved_at", "severity", "evidence", ...}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from app.domain.anomaly import AlertRecord, AnomalyParams, step
from app.domain.anomaly.state import initial_state
from app.domain.reading import Reading
from app.domain.registry import MeterInfo

BATCH_MS = 3_600_000
"""Readings are fed to ``step`` in one-hour batches, as a stream would deliver them."""


@dataclass
class Series:
    name: str
    ts_ms: npt.NDArray[np.int64]
    power_w: npt.NDArray[np.float64]
    voltage_v: npt.NDArray[np.float64] | None


def _num(s: str) -> float:
    s = s.strip()
    if not s:
        return math.nan
    try:
        return float(s)
    except ValueError:
        return math.nan


def load_csv(path: str | Path) -> Series:
    """Small CSV loader: tolerant of extra columns, empty values and unsorted rows."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        try:
            it, ip = header.index("timestamp_s"), header.index("aggregate_watts")
        except ValueError as exc:
            raise ValueError(f"{path}: needs timestamp_s and aggregate_watts columns") from exc
        iv = header.index("voltage_v") if "voltage_v" in header else -1
        ts: list[float] = []
        pw: list[float] = []
        vv: list[float] = []
        for row in reader:
            if len(row) <= max(it, ip):
                continue
            ts.append(_num(row[it]))
            pw.append(_num(row[ip]))
            if iv >= 0:
                vv.append(_num(row[iv]) if len(row) > iv else math.nan)
    t = np.asarray(ts)
    p = np.asarray(pw)
    ok = ~np.isnan(t) & ~np.isnan(p)
    order = np.argsort(t[ok], kind="stable")
    ts_ms = np.round(t[ok][order] * 1000.0).astype(np.int64)
    volt = np.asarray(vv)[ok][order] if iv >= 0 else None
    # duplicates: keep the first reading of a timestamp
    keep = np.concatenate(([True], np.diff(ts_ms) > 0))
    return Series(
        Path(path).stem, ts_ms[keep], p[ok][order][keep], None if volt is None else volt[keep]
    )


def infer_interval_ms(ts_ms: npt.NDArray[np.int64]) -> int:
    if ts_ms.size < 2:
        return 60_000
    return max(1, int(np.median(np.diff(ts_ms))))


def params_for(series: Series, params: AnomalyParams | None = None) -> AnomalyParams:
    base = params or AnomalyParams()
    interval = infer_interval_ms(series.ts_ms)
    return msgspec.structs.replace(
        base, offline_after_ms=max(base.offline_after_ms, 4 * interval)
    )


def replay(
    series: Series,
    params: AnomalyParams | None = None,
    info: MeterInfo | None = None,
) -> Iterator[AlertRecord]:
    """Yield every alert record the detectors emit over the series."""
    pa = params_for(series, params)
    info = info or MeterInfo(series.name, 15_000.0, False, "UTC")
    state = initial_state(info.household_id, series.name, info)
    ts = series.ts_ms.tolist()
    pw = series.power_w.tolist()
    vv = series.voltage_v.tolist() if series.voltage_v is not None else [math.nan] * len(ts)
    if not ts:
        return
    keys = series.ts_ms // BATCH_MS
    brk = (np.flatnonzero(keys[1:] != keys[:-1]) + 1).tolist()
    hid, mid = info.household_id, series.name
    for s, e in zip([0, *brk], [*brk, len(ts)], strict=True):
        batch = [
            Reading(hid, mid, ts[i], pw[i], None, "", None if vv[i] != vv[i] else vv[i])
            for i in range(s, e)
        ]
        state, alerts = step(state, batch, pa, info)
        yield from alerts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Replay a household power CSV through the detectors")
    ap.add_argument("--csv", required=True, type=Path)
    ap.add_argument("--json", action="store_true", help="one JSON line per alert record")
    ap.add_argument("--max-power-w", type=float, default=15_000.0, help="connection limit (W)")
    ap.add_argument("--exports", action="store_true", help="the meter may export (solar)")
    ap.add_argument("--timezone", default="UTC", help="IANA zone for the hour-of-week profile")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    series = load_csv(args.csv)
    info = MeterInfo(series.name, args.max_power_w, args.exports, args.timezone)
    enc = msgspec.json.Encoder()
    n = 0
    for rec in replay(series, None, info):
        n += 1
        if args.json:
            sys.stdout.write(enc.encode(rec).decode() + "\n")
        else:
            ev = rec.evidence
            print(
                f"{rec.status:8} {rec.type:17} {rec.severity:8} opened_at={rec.opened_at} "
                f"resolved_at={rec.resolved_at} observed={ev.observed:.1f} "
                f"baseline={ev.baseline:.1f} threshold={ev.threshold:.1f} {ev.unit} "
                f"duration={ev.duration_ms / 60_000:.0f} min"
            )
    if not args.json:
        interval = infer_interval_ms(series.ts_ms) / 1000.0
        print(
            f"{series.ts_ms.size} readings, interval {interval:g} s, {n} alert records, "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

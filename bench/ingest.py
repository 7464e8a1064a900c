"""Ingestion speed: ``ingest_batch`` against ``orjson.loads`` on the same payloads.

Figures (see docs/CONTRACTS.md, "Bench modules"):

``ingest_vs_orjson``
    JSON records, one reading each (the common case). ``value`` = readings/s through
    :func:`app.domain.ingest.ingest_batch` (decode + validate + dedup + state + Reading, on a
    :class:`~app.domain.ingest.MeterStore` kept across batches, plus one checkpoint's
    ``take_changed`` at the end of each run), ``baseline`` = readings/s of
    ``[orjson.loads(v) for v in batch]`` per batch, ``ratio`` = **cost ratio**
    ``ingest_time / orjson_time`` (lower is better). Target: ``ratio <= 1.5``.
``ingest_vs_orjson_discard``
    The same ingest time against a loop that drops each ``orjson.loads`` result at once (the
    baseline before): ``ratio`` against that, also in the note of ``ingest_vs_orjson``.
``ingest_vs_orjson_array``
    As ``ingest_vs_orjson`` with store-and-forward records holding 10 readings each.
``ingest_tic_frames``
    TIC envelopes (half historique, half standard): ``value`` = frames/s through ingest,
    ``baseline`` = frames/s of ``orjson.loads`` of the envelopes, kept per batch, ``ratio``
    as above.

Why the baseline keeps a batch's results: ingestion keeps its readings for the whole batch
(they are sent after it), as any consumer of decoded values does. A loop that discards each
decoded dict at once is flattering to orjson: CPython reuses the freed dict and its entries
from free lists, and nothing survives long enough to cost the garbage collector, which makes
``orjson.loads`` look about 1.4x faster than when 500 results are alive together. The ratio
against that loop is still reported (``ingest_vs_orjson_discard`` and the notes), so figures
measured before the change remain comparable.

The ingest loop runs compiled with mypyc when the build is current (``scripts/build_native.py``,
run by ``make``; ``app.domain.native``), and the note of ``ingest_vs_orjson`` says which ran.
Measured on the 2-core machine: compiled 1.35-1.42x (discard loop 1.84-1.98x), plain Python
2.0-2.2x (2.7-3.2x).

The sides run in the same process, interleaved repetition by repetition (rotating which goes
first), on records split in batches of 500 as an agent would take them; each figure is the
median over repetitions. Run: ``.venv/bin/python -m bench.ingest [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import time

import orjson

from app.domain import native
from app.domain.ingest import IngestLimits, MeterStore, RawRecord, ingest_batch
from app.domain.registry import MeterInfo
from app.domain.tic import build_frame_historique, build_frame_standard

T0_MS = 1_795_662_000_000  # 2026-11-26T03:00:00Z
BATCH = 500
LIMITS = IngestLimits()


def _iso(ts_ms: int) -> str:
    s, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ms:03d}Z"


def _registry(meters: int) -> dict[str, MeterInfo]:
    return {
        f"m-{i:06d}": MeterInfo(f"hh-{i:06d}", 12_000.0, exports=i % 5 == 0) for i in range(meters)
    }


def _phase_ms(meter: int) -> int:
    """Each node samples at its own millisecond phase, as real nodes do."""
    return (meter * 7919) % 1000


def _json_reading(i: int, meters: int, step_ms: int) -> dict[str, object]:
    m = i % meters
    ts = T0_MS + (i // meters) * step_ms + _phase_ms(m)
    return {
        "v": 1,
        "device_id": f"node-{m:06d}",
        "meter_id": f"m-{m:06d}",
        "household_id": f"hh-{m:06d}",
        "ts": _iso(ts),
        "power_w": 523.4 + (i % 97),
        "energy_wh": 1_234_567.0 + i // meters,
        "voltage_v": 231.2,
        "current_a": 2.31,
        "apparent_va": 540.0,
        "channels": {"fridge": 80.0, "kettle": 0.0},
        "fw": "1.4.2",
    }


def json_records(n: int, meters: int, per_record: int = 1) -> list[RawRecord]:
    """``n`` readings on ``meters`` meters (1 Hz each), ``per_record`` readings per record."""
    out: list[RawRecord] = []
    if per_record == 1:
        for i in range(n):
            body = orjson.dumps(_json_reading(i, meters, 1000))
            received = T0_MS + (i // meters) * 1000 + 1050
            out.append(RawRecord(body, "meter.raw.json", 0, i, received))
        return out
    # store-and-forward: each record holds consecutive readings of one meter
    k = 0
    for m in range(meters):
        for start in range(0, n // meters - per_record + 1, per_record):
            items = [
                _json_reading(m + (start + j) * meters, meters, 1000) for j in range(per_record)
            ]
            received = T0_MS + (start + per_record) * 1000 + 1050
            out.append(RawRecord(orjson.dumps(items), "meter.raw.json", 0, k, received))
            k += 1
    return out


def tic_records(n: int, meters: int) -> list[RawRecord]:
    out: list[RawRecord] = []
    for i in range(n):
        m = i % meters
        meter_id = f"{m:012d}"
        papp = f"{500 + i % 3000:05d}"
        if m % 2:
            frame = build_frame_historique(
                {
                    "ADCO": meter_id,
                    "OPTARIF": "HC..",
                    "ISOUSC": "45",
                    "HCHC": f"{12_345_678 + i // meters:09d}",
                    "HCHP": f"{23_456_789:09d}",
                    "PTEC": "HP..",
                    "IINST": "003",
                    "IMAX": "090",
                    "PAPP": papp,
                    "HHPHC": "A",
                    "MOTDETAT": "000000",
                }
            )
        else:
            groups: dict[str, str | tuple[str, str]] = {
                "ADSC": meter_id,
                "VTIC": "02",
                "DATE": ("H261126040000", ""),
                "NGTF": "      TEMPO     ",
                "LTARF": "    HP  BLEU    ",
                "EAST": f"{35_802_467 + i // meters:09d}",
                "EASF01": f"{12_345_678 + i // meters:09d}",
                "EASF02": f"{23_456_789:09d}",
                "EASF03": "000000000",
                "EASF04": "000000000",
                "IRMS1": "003",
                "URMS1": "232",
                "PREF": "09",
                "SINSTS": papp,
                "SMAXSN": ("H261126031522", "03218"),
                "STGE": "003A0001",
                "MSG1": "PAS DE          MESSAGE         ",
                "RELAIS": "000",
            }
            frame = build_frame_standard(groups)
        ts = T0_MS + (i // meters) * 2000 + _phase_ms(m)
        body = orjson.dumps({"v": 1, "device_id": f"node-{m}", "ts": _iso(ts), "frame": frame})
        out.append(RawRecord(body, "meter.raw.tic", 0, i, ts + 50))
    return out


def tic_registry(meters: int) -> dict[str, MeterInfo]:
    return {f"{i:012d}": MeterInfo(f"hh-{i:06d}", 12_000.0, exports=False) for i in range(meters)}


def _time_ingest(records: list[RawRecord], registry: dict[str, MeterInfo]) -> tuple[float, int]:
    """A fresh store, every batch, then one checkpoint's ``take_changed`` (its cost counts)."""
    store = MeterStore()
    readings = 0
    t = time.perf_counter()
    for b in range(0, len(records), BATCH):
        readings += len(ingest_batch(records[b : b + BATCH], registry, store, LIMITS).readings)
    store.take_changed(LIMITS.dedup_memory)
    return time.perf_counter() - t, readings


def _time_orjson_kept(records: list[RawRecord]) -> float:
    """The baseline: each batch's decoded values are kept until the batch is done."""
    loads = orjson.loads
    t = time.perf_counter()
    for b in range(0, len(records), BATCH):
        decoded = [loads(rec.value) for rec in records[b : b + BATCH]]
    del decoded
    return time.perf_counter() - t


def _time_orjson_discard(records: list[RawRecord]) -> float:
    """Each decoded value dropped at once (freelist reuse, no GC pressure): flattering."""
    loads = orjson.loads
    t = time.perf_counter()
    for b in range(0, len(records), BATCH):
        for rec in records[b : b + BATCH]:
            loads(rec.value)
    return time.perf_counter() - t


def _compare(
    records: list[RawRecord],
    registry: dict[str, MeterInfo],
    readings: int,
    reps: int,
    unit: str,
    note: str,
) -> tuple[dict[str, float | str], dict[str, float | str]]:
    """The figure against the kept-results baseline, and the same against the discard loop."""
    ratios: list[float] = []
    discard_ratios: list[float] = []
    ingest_rates: list[float] = []
    kept_rates: list[float] = []
    discard_rates: list[float] = []
    sides = ("ingest", "kept", "discard")
    for rep in range(reps + 1):  # first repetition warms up and is discarded
        # rotate which side goes first so drift of a shared machine hits every side
        t: dict[str, float] = {}
        for side in sides[rep % 3 :] + sides[: rep % 3]:
            if side == "ingest":
                t[side], got = _time_ingest(records, registry)
                if got != readings:
                    raise AssertionError(f"bench data not all valid: {got} of {readings}")
            elif side == "kept":
                t[side] = _time_orjson_kept(records)
            else:
                t[side] = _time_orjson_discard(records)
        if rep:
            ratios.append(t["ingest"] / t["kept"])
            discard_ratios.append(t["ingest"] / t["discard"])
            ingest_rates.append(readings / t["ingest"])
            kept_rates.append(readings / t["kept"])
            discard_rates.append(readings / t["discard"])
    value = statistics.median(ingest_rates)
    discard_ratio = statistics.median(discard_ratios)
    figure: dict[str, float | str] = {
        "value": value,
        "baseline": statistics.median(kept_rates),
        "ratio": statistics.median(ratios),
        "unit": unit,
        "note": f"{note}; against the discard loop: ratio {discard_ratio:.2f}",
    }
    discard: dict[str, float | str] = {
        "value": value,
        "baseline": statistics.median(discard_rates),
        "ratio": discard_ratio,
        "unit": unit,
        "note": "as ingest_vs_orjson, baseline = orjson.loads results discarded one by one "
        "(flattering: freelist reuse, no GC pressure)",
    }
    return figure, discard


def run(quick: bool = False) -> dict[str, dict[str, float | str]]:
    n = 10_000 if quick else 40_000
    reps = 5 if quick else 9
    meters = 1_000
    registry = _registry(meters)
    singles = json_records(n, meters)
    arrays = json_records(n, meters, per_record=10)
    tic = tic_records(n // 4, meters)
    single, single_discard = _compare(
        singles,
        registry,
        n,
        reps,
        "readings/s",
        "ratio = ingest cost / orjson.loads cost per reading (target <= 1.5), results of a "
        f"batch kept; {n} single-reading JSON records (~{len(singles[0].value)} B), "
        f"{meters} meters; ingest loop "
        + ("compiled with mypyc" if native.compiled() else "plain Python (no current mypyc build)"),
    )
    array, _ = _compare(
        arrays,
        registry,
        sum(len(orjson.loads(r.value)) for r in arrays),
        reps,
        "readings/s",
        "as ingest_vs_orjson, store-and-forward records of 10 readings",
    )
    frames, _ = _compare(
        tic,
        tic_registry(meters),
        len(tic),
        reps,
        "frames/s",
        "TIC envelopes (half historique, half standard; every checksum verified); "
        "ratio = ingest cost / orjson.loads cost per envelope, results of a batch kept",
    )
    return {
        "ingest_vs_orjson": single,
        "ingest_vs_orjson_discard": single_discard,
        "ingest_vs_orjson_array": array,
        "ingest_tic_frames": frames,
    }


def main() -> None:
    quick = "--quick" in sys.argv
    figures = run(quick=quick)
    print(f"python -m bench.ingest{' --quick' if quick else ''}: same process, interleaved, median")
    print(
        f"{'figure':<24} {'ingest/s':>10} {'orjson/s':>10} {'ingest us':>10} {'orjson us':>10} "
        f"{'ratio':>6}  unit"
    )
    for name, f in figures.items():
        value, baseline = float(f["value"]), float(f["baseline"])
        print(
            f"{name:<24} {value:>10,.0f} {baseline:>10,.0f} {1e6 / value:>10.2f} "
            f"{1e6 / baseline:>10.2f} {f['ratio']:>6.2f}  {f['unit']}"
        )
    print(
        "ratio = ingest time / orjson.loads time on the same bytes, a batch's results kept "
        "(target <= 1.5 for JSON)"
    )
    for name, f in figures.items():
        print(f"  {name}: {f['note']}")


if __name__ == "__main__":
    main()

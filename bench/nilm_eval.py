"""Replay REFIT homes through the online NILM ``step`` and score edge detection.

Scoring (README of the data set, read literally; see docs/nilm.md):
- labelled edges: start_s and end_s of every activation of a scored appliance (kettle,
  toaster, microwave, washing machine / washer-dryer, tumble dryer, dishwasher,
  fridge / freezer / fridge-freezer) whose ``mean_w`` >= 70 W;
- detected edges: the time of every on/off ApplianceEvent that ``step`` emits, whatever its
  label or confidence (any |ΔP| above the detector threshold);
- a detected edge is a true positive when it is matched one-to-one to a labelled edge at most
  30 s away (maximum matching; on a line, greedy earliest-label matching is optimal).

The detector only sees the aggregate: sub-meter channels are the ground truth here, so they
are not passed to ``step`` (that would score the teacher, not NILM). Samples are fed in
15-minute chunks, as the agent would per window.

Data: REFIT (CC BY 4.0), Murray, Stankovic & Stankovic, Scientific Data 4:160122 (2017),
doi:10.1038/sdata.2016.122.

``python -m bench.nilm_eval [--data DIR] [--json]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from app.domain.nilm import NilmParams, NilmState, normalize_name, step
from app.domain.nilm.engine import encode_state
from bench.refit import House, house_files, load_activations, load_house, resolve_data_dir

SCORED = ("kettle", "toaster", "microwave", "washing_machine", "tumble_dryer", "dishwasher",
          "fridge_freezer")
MIN_MEAN_W = 70.0
TOL_MS = 30_000
CHUNK_MS = 900_000

# README reference (NILMTK find_steady_states): labelled, detected, precision, recall, F1.
REFERENCE: dict[int, tuple[int, int, float, float, float]] = {
    2: (68, 305, 0.19, 0.84, 0.31), 4: (94, 205, 0.43, 0.95, 0.60),
    5: (130, 137, 0.56, 0.59, 0.57), 9: (84, 128, 0.21, 0.32, 0.26),
    17: (114, 206, 0.37, 0.67, 0.48),
}


def match_edges(detected_ms: list[int], labelled_ms: list[int], tol_ms: int = TOL_MS
                ) -> list[tuple[int, int]]:
    """Maximum one-to-one matching of detected to labelled times within ``tol_ms``.

    Returns (detected index, labelled index) pairs. Greedy over time-sorted detections, each
    taking the earliest still-free label within tolerance, is optimal for equal-width windows.
    """
    d_order = sorted(range(len(detected_ms)), key=detected_ms.__getitem__)
    l_order = sorted(range(len(labelled_ms)), key=labelled_ms.__getitem__)
    pairs: list[tuple[int, int]] = []
    j = 0
    used = [False] * len(l_order)
    for di in d_order:
        d = detected_ms[di]
        while j < len(l_order) and (used[j] or labelled_ms[l_order[j]] < d - tol_ms):
            j += 1
        if j < len(l_order) and labelled_ms[l_order[j]] <= d + tol_ms:
            used[j] = True
            pairs.append((di, l_order[j]))
            j += 1
    return pairs


def prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3),
            "tp": tp, "fp": fp, "fn": fn}


def replay(h: House, params: NilmParams, chunk_ms: int = CHUNK_MS) -> dict[str, Any]:
    """Feed a house through ``step`` in time-aligned chunks; events, energy, state size."""
    win = h.ts_ms // chunk_ms
    cuts = np.flatnonzero(np.diff(win)) + 1
    bounds = [0, *cuts.tolist(), int(h.ts_ms.size)]
    state: NilmState | None = None
    events = []
    est: dict[str, list[float]] = defaultdict(list)
    true: dict[str, list[float]] = defaultdict(list)
    max_bytes = 0
    for a, b in itertools.pairwise(bounds):
        state, ev, energy = step(state, h.ts_ms[a:b], h.aggregate_w[a:b], params,
                                 household_id=f"refit-{h.house}")
        events.extend(ev)
        max_bytes = max(max_bytes, len(encode_state(state)))
        # True per-window energy of the sub-metered scored appliances (same intervals).
        dt = np.clip(np.diff(h.ts_ms[max(a - 1, 0):b], prepend=h.ts_ms[max(a - 1, 0)]),
                     0, params.max_gap_ms)[(1 if a > 0 else 0):]
        tw: dict[str, float] = defaultdict(float)
        for name, c in h.channels_w.items():
            key = normalize_name(name)
            if key in SCORED:
                tw[key] += float(np.dot(np.maximum(c[a:b], 0.0), dt) / 3.6e6)
        for key in SCORED:
            if key in tw:
                true[key].append(tw[key])
                est[key].append(energy.estimated_wh.get(key, 0.0))
    return {"events": events, "est": est, "true": true, "state_bytes": max_bytes}


def evaluate(data_dir: Path, houses: list[int] | None = None,
             params: NilmParams | None = None) -> dict[str, Any]:
    params = params or NilmParams()
    files = house_files(data_dir)
    acts = load_activations(data_dir)
    homes: dict[str, Any] = {}
    tot = [0, 0, 0]
    app_tot: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    e_ok = e_true = 0.0
    for hid, path in sorted(files.items()):
        if houses and hid not in houses:
            continue
        h = load_house(path)
        labels: list[int] = []
        label_app: list[str] = []
        for a in acts:
            app = normalize_name(a.appliance)
            if a.house == hid and app in SCORED and a.mean_w >= MIN_MEAN_W:
                labels += [a.start_s * 1000, a.end_s * 1000]
                label_app += [app, app]
        r = replay(h, params)
        det = [e.ts_ms for e in r["events"]]
        pairs = match_edges(det, labels)
        tp = len(pairs)
        res: dict[str, Any] = prf(tp, len(det) - tp, len(labels) - tp)
        hit = {li for _, li in pairs}
        per_app: dict[str, dict[str, float | int]] = {}
        for app in sorted(set(label_app)):
            idx = [i for i, x in enumerate(label_app) if x == app]
            n_hit = sum(1 for i in idx if i in hit)
            per_app[app] = {"labelled": len(idx), "recall": round(n_hit / len(idx), 3)}
            app_tot[app][0] += len(idx)
            app_tot[app][1] += n_hit
        res["per_appliance_recall"] = per_app
        ok = sum(min(e, t) for k in r["true"] for e, t in zip(r["est"][k], r["true"][k],
                                                              strict=True))
        tr = sum(sum(v) for v in r["true"].values())
        res["energy_correctly_assigned"] = round(ok / tr, 3) if tr else None
        e_ok += ok
        e_true += tr
        res["state_bytes_max"] = r["state_bytes"]
        ref = REFERENCE.get(hid)
        if ref:
            res["reference_f1"] = ref[4]
            res["beats_reference"] = bool(res["f1"] > ref[4])
        homes[f"house{hid:02d}"] = res
        tot[0] += tp
        tot[1] += len(det) - tp
        tot[2] += len(labels) - tp
    pooled: dict[str, Any] = prf(*tot)
    pooled["per_appliance_recall"] = {
        k: {"labelled": v[0], "recall": round(v[1] / v[0], 3)} for k, v in sorted(app_tot.items())
    }
    pooled["energy_correctly_assigned"] = round(e_ok / e_true, 3) if e_true else None
    ref_tp = sum(round(v[3] * v[0]) for k, v in REFERENCE.items() if f"house{k:02d}" in homes)
    ref_det = sum(v[1] for k, v in REFERENCE.items() if f"house{k:02d}" in homes)
    ref_lab = sum(v[0] for k, v in REFERENCE.items() if f"house{k:02d}" in homes)
    if ref_det:
        pooled["reference_f1"] = prf(ref_tp, ref_det - ref_tp, ref_lab - ref_tp)["f1"]
    return {"data": str(data_dir), "tolerance_s": TOL_MS // 1000, "chunk_s": CHUNK_MS // 1000,
            "homes": homes, "pooled": pooled}


def run(quick: bool = False) -> dict[str, dict[str, Any]]:
    """Bench contract: F1 per home and pooled vs the README's reference detector."""
    data_dir = resolve_data_dir()
    if not house_files(data_dir):
        return {}
    res = evaluate(data_dir, houses=[2, 5] if quick else None)
    out: dict[str, dict[str, Any]] = {}
    for name, r in [*res["homes"].items(), ("pooled", res["pooled"])]:
        base = float(r.get("reference_f1") or 0.0)
        out[f"nilm_f1_{name}"] = {
            "value": r["f1"], "baseline": base,
            "ratio": round(r["f1"] / base, 3) if base else 0.0, "unit": "F1",
            "note": f"P {r['precision']} R {r['recall']} tp {r['tp']} fp {r['fp']} fn {r['fn']};"
                    " baseline = NILMTK Hart reference (README)",
        }
    return out


def _table(res: dict[str, Any]) -> str:
    lines = [f"{'home':8} {'P':>6} {'R':>6} {'F1':>6} {'ref F1':>7} {'tp':>4} {'fp':>4} "
             f"{'fn':>4} {'energy ok':>9}"]
    for name, r in [*res["homes"].items(), ("pooled", res["pooled"])]:
        lines.append(f"{name:8} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} "
                     f"{r.get('reference_f1', float('nan')):7.2f} {r['tp']:4d} {r['fp']:4d} "
                     f"{r['fn']:4d} {r['energy_correctly_assigned'] or 0:9.3f}")
    lines.append("per-appliance recall (pooled): " + ", ".join(
        f"{k} {v['recall']:.2f} (n={v['labelled']})"
        for k, v in res["pooled"]["per_appliance_recall"].items()))
    return "\n".join(lines)


def markdown_table(res: dict[str, Any]) -> str:
    """The evaluation as markdown, for bench/RESULTS.md."""
    pooled = res["pooled"]
    lines = [
        "REFIT homes (CC BY 4.0: Murray, Stankovic & Stankovic, Scientific Data 4:160122, "
        "2017) replayed through the agents' `step` with one configuration (`NilmParams()`), "
        f"scored by the data set README's rules (start and end edges of scored appliances "
        f"drawing >= {MIN_MEAN_W:.0f} W, +-{res['tolerance_s']} s, one-to-one). Targets: F1 "
        "above the reference on every home, pooled F1 >= 0.6. State bytes: the largest "
        "msgpack-encoded `NilmState` of the home during its replay. Details: docs/nilm.md.",
        "",
        "| home | precision | recall | F1 | reference F1 | beats reference | tp | fp | fn "
        "| energy correctly assigned | state bytes (max) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in [*res["homes"].items(), ("pooled", pooled)]:
        ref = r.get("reference_f1")
        beats = "yes" if ref is not None and r["f1"] > ref else ("no" if ref is not None else "-")
        energy = r.get("energy_correctly_assigned")
        lines.append(
            f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | **{r['f1']:.3f}** | "
            f"{'-' if ref is None else f'{ref:.2f}'} | {beats} | {r['tp']} | {r['fp']} | "
            f"{r['fn']} | {'-' if energy is None else f'{energy:.2f}'} | "
            f"{r.get('state_bytes_max', '-')} |")
    lines += ["", "Per-appliance recall (pooled): " + ", ".join(
        f"{k} {v['recall']:.2f} (n={v['labelled']})"
        for k, v in pooled["per_appliance_recall"].items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", help="folder of refit_houseNN_*.csv + an activations csv "
                    "(default: $WATTFLOW_REFIT_DIR or <repo>/../shared/data/refit)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--record", action="store_true",
                    help="also write the table as the nilm_eval section of bench/RESULTS.md")
    args = ap.parse_args(argv)
    data_dir = resolve_data_dir(args.data)
    if not house_files(data_dir):
        print(f"no refit_houseNN_*.csv in {data_dir}", file=sys.stderr)
        if args.json:
            print(json.dumps({"data": str(data_dir), "homes": {}, "pooled": None}))
        return 0
    t0 = time.perf_counter()
    res = evaluate(data_dir)
    print(json.dumps(res) if args.json else _table(res))
    if args.record:
        from bench.harness import REPO, record_section

        record_section(REPO / "bench" / "RESULTS.md", "nilm_eval",
                       "NILM on real homes: edge precision, recall, F1 (issue 7)",
                       markdown_table(res), "python -m bench.nilm_eval" + (
                           f" --data {args.data}" if args.data else ""),
                       time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

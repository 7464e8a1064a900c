"""Tiny sample producer to feed a local pipeline.

    python -m simulators.sample --households 20 --seconds 30

Runs the load generator (:mod:`simulators.loadgen`) for a few households at 1 Hz in real time,
to the raw topics of the settings (JSON meters and Linky TIC meters), with a couple of signal
faults so that alerts show up, and prints a short summary. ``--truth FILE`` writes the ground
truth (appliance edges, faults) as JSONL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.settings import get_settings
from simulators.loadgen import LoadgenConfig, make_sink, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulators.sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", type=float, default=24.0, metavar="PER_DAY",
                    help="signal faults per household and day (default 24: a few per run)")
    ap.add_argument("--truth", type=Path, default=None)
    ap.add_argument("--sink", choices=("kafka", "null", "file"), default="kafka")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    settings = get_settings()
    cfg = LoadgenConfig(
        households=args.households, rate_hz=1.0, duration_s=args.seconds, seed=args.seed,
        signal_faults_per_day=args.faults, truth_path=args.truth, progress=False,
        topic_json=settings.topic_raw_json, topic_tic=settings.topic_raw_tic,
    )
    sink = make_sink(args.sink, out=args.out)
    report = asyncio.run(run(cfg, sink))
    produce = report.sections["produce"]
    config = report.sections["config"]
    sys.stdout.write(
        f"sent {produce['messages_sent']} readings of {config['households']} households "
        f"({config['json_meters']} JSON, {config['tic_historique'] + config['tic_standard']} TIC) "
        f"to {settings.kafka_servers if args.sink == 'kafka' else args.sink} in "
        f"{produce['elapsed_s']:.1f} s; produce errors: {produce['produce_errors']}\n")
    faults = report.sections.get("faults", {}).get("signal_faults")
    if faults:
        sys.stdout.write(f"injected faults: {faults}\n")
    return 1 if produce["produce_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

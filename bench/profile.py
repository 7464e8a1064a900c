"""Where a worker's CPU goes: one isolated pipeline run with the worker under cProfile.

    python -m bench.profile [--quick] [--top 25]

Prefills a raw topic like :mod:`bench.pipeline`, runs one ``-L uvloop`` worker through
``python -m bench.profile worker ...`` (the Faust CLI inside ``cProfile``, stats written at
exit), waits until every reading is stored, stops it, and prints the own-time ranking of
functions and the share per package (faust/mode, aiokafka, app/agents, msgspec...).
cProfile slows pure-Python code (about 1.5-2x), so read shares, not absolute rates. Only the
main thread (the event loop) is profiled; the metrics HTTP thread is not.
"""

from __future__ import annotations

import atexit
import cProfile
import os
import pstats
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

PROFILE_ENV = "WATTFLOW_BENCH_PROFILE_OUT"


def _worker_main(argv: list[str]) -> int:
    """The Faust CLI under cProfile; stats go to $WATTFLOW_BENCH_PROFILE_OUT at exit."""
    from faust.cli.faust import cli

    prof = cProfile.Profile()
    out = os.environ[PROFILE_ENV]

    def dump() -> None:
        prof.disable()
        prof.dump_stats(out)

    atexit.register(dump)
    sys.argv = ["faust", *argv]
    prof.enable()
    try:
        cli()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def package_of(filename: str) -> str:
    """Coarse owner of a profiled function, from its file path."""
    f = filename.replace("\\", "/")
    for key, label in (("/faust/", "faust"), ("/mode/", "mode"), ("/aiokafka/", "aiokafka"),
                       ("/rocksdict/", "rocksdict"), ("/prometheus_client/", "prometheus"),
                       ("/influxdb_client/", "influxdb_client"), ("/aiohttp/", "aiohttp"),
                       ("/agents/", "agents"), ("/app/domain/", "app.domain"),
                       ("/app/", "app"), ("/asyncio/", "asyncio"), ("/venusian/", "venusian")):
        if key in f:
            return label
    if f.startswith("<") or f == "~":
        return "builtins/C"
    return "other"


def shares(stats: pstats.Stats) -> dict[str, float]:
    """Own time per package, as a fraction of the total."""
    per: dict[str, float] = defaultdict(float)
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in raw.items():
        per[package_of(filename)] += tt
    total = sum(per.values()) or 1.0
    return dict(sorted(((k, v / total) for k, v in per.items()), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker-cli"]:
        return _worker_main(args[1:])
    quick = "--quick" in args
    top = int(args[args.index("--top") + 1]) if "--top" in args else 25
    from bench import harness, pipeline

    run_id = harness.new_run_id()
    raw, pf = pipeline.prepare(quick, run_id)
    out = Path(tempfile.mkdtemp(prefix="wfbench-prof-")) / "worker.prof"
    iso = harness.Isolation.for_run(run_id, "prof")
    w = harness.Worker(iso, name="prof", extra_env={PROFILE_ENV: str(out)},
                       command=[harness.PYTHON, "-m", "bench.profile", "worker-cli"])
    try:
        iso.setup()
        w.start()
        w.wait_ready()
        prog = harness.wait_processed([w], pf.readings, timeout=300)
        print(f"{pf.readings:,} readings, {prog.cpu_s('influx') or prog.cpu_s()} CPU-s under "
              f"cProfile")
    finally:
        w.stop()
        iso.teardown()
        raw.teardown(raw_too=True)
    stats = pstats.Stats(str(out))
    print("own time by package:")
    for k, v in shares(stats).items():
        print(f"  {k:<16} {v:6.1%}")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

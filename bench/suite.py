"""The benchmark suite: every figure of issue 8, side by side with its baseline, in one run.

    python -m bench [--quick] [--only NAME[,NAME]] [--out DIR]

Writes ``DIR/RESULTS.md`` and ``DIR/results.json`` (default: ``bench/``). ``--quick`` is sized
to finish within five minutes on a 2-core machine with the local stack up. Figure names,
what each measures and how: docs/bench.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import REPO, git_state, log
from bench.report import (
    keep_sections,
    missing,
    render_markdown,
    render_table,
    results_document,
    to_json_bytes,
)

FIGURES = ("consume_ceiling", "ingest_vs_orjson", "pipeline_vs_consume", "changelog_per_reading",
           "influx_sink_vs_bare", "nilm_vs_loop", "latency", "uvloop_vs_asyncio", "scaling")
"""The figures of issue 8, in the order of the issue (modules add extra keys)."""

EXTRAS = ("stages", "windows_apply", "anomaly_step_rate")
"""Further steps of the suite: each stage alone through a worker (issues 3, 4, 6, 7), and the
pure windows / anomaly cores per call size."""

PIPELINE_FIGURES = {"pipeline_vs_consume", "changelog_per_reading", "uvloop_vs_asyncio",
                    "scaling"}
UNITS = {"consume_ceiling": "readings/CPU-s", "ingest_vs_orjson": "readings/s",
         "pipeline_vs_consume": "readings/CPU-s", "changelog_per_reading": "changelog msgs/reading",
         "influx_sink_vs_bare": "points/s", "nilm_vs_loop": "samples/s", "latency": "s",
         "uvloop_vs_asyncio": "readings/CPU-s", "scaling": "readings/wall-s"}


def parse_only(text: str | None) -> list[str]:
    """``--only a,b`` -> validated figure names (all figures when empty)."""
    if not text:
        return [*FIGURES, *EXTRAS]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FIGURES and n not in EXTRAS]
    if unknown:
        raise SystemExit(f"unknown figure(s) {', '.join(unknown)}; known: "
                         f"{', '.join((*FIGURES, *EXTRAS))}")
    return names


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": _loadavg()}


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def agent_modules() -> list[str]:
    """The agent modules in the tree (what a worker loads changes as agents are added)."""
    return sorted(p.stem for p in (REPO / "agents").glob("*.py") if p.stem != "__init__")


def _previous_max_rate(out_dir: Path) -> float | None:
    import orjson

    try:
        doc = orjson.loads((out_dir / "results.json").read_bytes())
        v = doc.get("pipeline_wall", {}).get("value")
        return float(v) if v else None
    except (OSError, ValueError):
        return None


class Suite:
    def __init__(self, quick: bool, only: Sequence[str], out_dir: Path) -> None:
        self.quick = quick
        self.only = list(only)
        self.out_dir = out_dir
        self.figures: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        self.steps: dict[str, float] = {}

    def _step(self, name: str, fn: Callable[[], dict[str, dict[str, Any]]],
              covers: Sequence[str]) -> None:
        log(f"--- {name}")
        t = time.monotonic()
        try:
            got = fn()
            self.figures.update(got)
            for f in covers:
                if f not in got:
                    self.figures[f] = missing(UNITS.get(f, ""), f"{name} returned no {f}",
                                              "failed")
        except Exception as e:  # noqa: BLE001 - one failed step must not lose the others
            msg = f"{type(e).__name__}: {e}"
            self.errors[name] = msg[:2000]
            log(f"{name} failed: {msg[:500]}")
            traceback.print_exc(file=sys.stderr)
            for f in covers:
                self.figures.setdefault(f, missing(UNITS.get(f, ""), f"failed: {msg[:300]}",
                                                   "failed"))
        self.steps[name] = round(time.monotonic() - t, 1)

    def run(self) -> dict[str, dict[str, Any]]:
        want = set(self.only)
        q = self.quick
        if "ingest_vs_orjson" in want:
            from bench import ingest

            self._step("ingest", lambda: ingest.run(q), ["ingest_vs_orjson"])
        if "nilm_vs_loop" in want:
            from bench import nilm_speed

            self._step("nilm_speed", lambda: nilm_speed.run(q), ["nilm_vs_loop"])
        if "influx_sink_vs_bare" in want:
            if importlib.util.find_spec("bench.influx_sink") is None:
                self.figures["influx_sink_vs_bare"] = missing(
                    "points/s", "missing: bench/influx_sink.py does not exist yet")
            else:
                from bench import influx_sink

                self._step("influx_sink", lambda: influx_sink.run(q), ["influx_sink_vs_bare"])
        pipe = want & PIPELINE_FIGURES
        if pipe:
            from bench import pipeline

            self._step("pipeline", lambda: pipeline.run(q, only=pipe),
                       ["consume_ceiling", *sorted(pipe)])
        elif "consume_ceiling" in want:
            from bench import consume

            self._step("consume", lambda: consume.run(q), ["consume_ceiling"])
        if "latency" in want:
            from bench import latency

            rate = self.figures.get("pipeline_wall", {}).get("value")
            if not rate:
                rate = _previous_max_rate(self.out_dir)
                if rate:
                    log(f"latency: max rate {rate:,.0f}/s from the previous results.json")
            self._step("latency", lambda: latency.run(q, max_rate=rate), ["latency"])
            self._live_changelog()
        if "windows_apply" in want:
            from bench import windows

            self._step("windows_apply", lambda: windows.run(q), ["windows_apply"])
        if "anomaly_step_rate" in want:
            from bench import anomaly_speed

            self._step("anomaly_speed", lambda: anomaly_speed.run(q), ["anomaly_step_rate"])
        if "stages" in want:
            from bench import stages

            self._step("stages", lambda: stages.run(q),
                       ["ingest_stage_vs_consume", "windows_vs_consume",
                        "nilm_stage_vs_consume", "anomaly_stage_vs_consume"])
        return self.ordered()

    def _live_changelog(self) -> None:
        fig = self.figures.get("changelog_per_reading")
        levels = self.figures.get("latency", {}).get("detail", {}).get("levels", {})
        live = levels.get(50, {}).get("changelog_per_reading_live")
        if fig and live is not None and fig.get("status", "ok") == "ok":
            fig["note"] += f"; live at 50 % load (1 Hz, paced): {live:.3f}/reading"
            fig.setdefault("detail", {})["live_50pct"] = live

    def ordered(self) -> dict[str, dict[str, Any]]:
        out = {f: self.figures[f] for f in FIGURES if f in self.figures}
        out.update({k: v for k, v in self.figures.items() if k not in out})
        return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 5 min on 2 cores)")
    ap.add_argument("--only", default=None, metavar="NAME[,NAME]",
                    help=f"subset of: {', '.join(FIGURES)}")
    ap.add_argument("--cleanup", action="store_true",
                    help="only delete every wfbench-* topic and wfbench_* InfluxDB database "
                         "left by earlier bench runs (run when no bench is running)")
    ap.add_argument("--out", type=Path, default=REPO / "bench",
                    help="directory for RESULTS.md and results.json (default: bench/)")
    args = ap.parse_args(argv)
    if args.cleanup:
        from bench.harness import cleanup

        print(cleanup(run_ids=()))
        return 0
    only = parse_only(args.only)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    mach = machine()
    from bench.harness import code_fingerprint

    code_start = code_fingerprint()
    suite = Suite(args.quick, only, args.out)
    try:
        figures = suite.run()
    finally:
        from bench.harness import cleanup

        left = cleanup()
        if left["topics"] or left["databases"]:
            log(f"cleanup removed leftovers: {left['topics']} {left['databases']}")
        if left["failed"]:
            suite.errors["cleanup"] = "; ".join(left["failed"])
    mach["loadavg_end"] = _loadavg()
    meta = {
        "command": " ".join(["python -m bench", *argv_list]),
        "date_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": mach, "git": git_state(), "agents": agent_modules(),
        "code_fingerprint": {"start": code_start, "end": code_fingerprint()},
        "quick": args.quick,
        "only": only,
        "duration_s": round(time.monotonic() - t0, 1), "steps_s": suite.steps,
        "errors": suite.errors,
    }
    doc = results_document(figures, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_bytes(to_json_bytes(doc))
    md = args.out / "RESULTS.md"
    md.write_text(keep_sections(render_markdown(doc), md.read_text() if md.exists() else ""))
    print(render_table({k: v for k, v in doc.items() if k != "_meta"}))
    log(f"wrote {args.out / 'RESULTS.md'} and results.json in {meta['duration_s']} s")
    return 1 if suite.errors else 0

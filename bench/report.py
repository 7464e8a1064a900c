"""Rendering of bench figures: a plain table for the terminal, bench/RESULTS.md, and the shape
of bench/results.json. Pure (no I/O beyond what the caller writes); unit tested.

A figure is ``{"value", "baseline", "ratio", "unit", "note"}`` (docs/CONTRACTS.md) plus
optional ``status`` (``ok`` by default, ``missing``, ``failed``, ``not_measured``) and
``detail`` (anything JSON-encodable).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

FIGURE_KEYS = ("value", "baseline", "ratio", "unit", "note")
STATUSES = ("ok", "missing", "failed", "not_measured")


def fmt(x: Any) -> str:
    """A number for a table: thousands separators for big ones, 3 significant digits else."""
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 0.01 or ax == 0:
        return f"{x:.3f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x)
    return f"{x:.3g}"


def normalize(name: str, fig: Mapping[str, Any]) -> dict[str, Any]:
    """A figure with every contract key present and a known status."""
    out = {k: fig.get(k) for k in FIGURE_KEYS}
    out["unit"] = out["unit"] or ""
    out["note"] = out["note"] or ""
    status = fig.get("status", "ok")
    if status not in STATUSES:
        raise ValueError(f"figure {name}: unknown status {status!r}")
    if status == "ok" and not all(isinstance(fig.get(k), int | float)
                                  for k in ("value", "baseline", "ratio")):
        status = "failed"
    out["status"] = status
    for k, v in fig.items():
        if k not in out:
            out[k] = v
    return out


def missing(unit: str, note: str, status: str = "missing") -> dict[str, Any]:
    return {"value": None, "baseline": None, "ratio": None, "unit": unit, "note": note,
            "status": status}


def results_document(figures: Mapping[str, Mapping[str, Any]], meta: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """bench/results.json: ``_meta`` plus one key per figure, in the given order."""
    doc: dict[str, Any] = {"_meta": dict(meta)}
    for name, fig in figures.items():
        doc[name] = normalize(name, fig)
    return doc


def _json_safe(x: Any) -> Any:
    """NaN/inf become None (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def to_json_bytes(doc: Mapping[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(_json_safe(doc), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) \
        + b"\n"


def render_table(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain-text table, one row per figure, notes underneath."""
    rows = [("figure", "value", "baseline", "ratio", "unit", "status")]
    for name, f in figures.items():
        g = normalize(name, f)
        rows.append((name, fmt(g["value"]), fmt(g["baseline"]), fmt(g["ratio"]), g["unit"],
                     g["status"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in (0, 4, 5) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, f in figures.items():
        if f.get("note"):
            lines.append(f"  {name}: {f['note']}")
    return "\n".join(lines)


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _code_line(meta: Mapping[str, Any]) -> list[str]:
    fp = meta.get("code_fingerprint") or {}
    if not fp or fp.get("start") == fp.get("end"):
        return []
    return [f"- WARNING: the code under agents/ and app/ changed during the run "
            f"({fp.get('start')} -> {fp.get('end')}); each run's fingerprint is in results.json"]


def render_markdown(doc: Mapping[str, Any]) -> str:
    """bench/RESULTS.md from a results document."""
    meta = doc.get("_meta", {})
    figs = {k: v for k, v in doc.items() if k != "_meta"}
    machine = meta.get("machine", {})
    out = [
        "# wattflow benchmark results",
        "",
        f"- command: `{meta.get('command', '?')}`",
        f"- date (UTC): {meta.get('date_utc', '?')}",
        f"- machine: {machine.get('cores', '?')} cores ({machine.get('cpu_model', '?')}), "
        f"Python {machine.get('python', '?')}, load average at start/end "
        f"{machine.get('loadavg_start', '?')} / {machine.get('loadavg_end', '?')}",
        f"- code: {meta.get('git', '?')}; agents: {', '.join(meta.get('agents', [])) or '?'}",
        *_code_line(meta),
        f"- mode: {'quick' if meta.get('quick') else 'full'}, suite wall time "
        f"{fmt(meta.get('duration_s'))} s",
        "",
        "Every figure is measured side by side with its baseline in this run. Ratio = value / "
        "baseline unless the note says otherwise. How each is measured: docs/bench.md.",
        "",
        "| figure | value | baseline | ratio | unit | status | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, f in figs.items():
        out.append(f"| {name} | {fmt(f.get('value'))} | {fmt(f.get('baseline'))} | "
                   f"{fmt(f.get('ratio'))} | {_md_cell(f.get('unit', ''))} | "
                   f"{f.get('status', 'ok')} | {_md_cell(f.get('note', ''))} |")
    lat = figs.get("latency", {}).get("detail", {}).get("levels")
    if lat:
        out += ["", "## Latency by load level (1-minute windows)", "",
                "| load | households (1 Hz) | achieved msg/s | windows | beyond end p50 / p99 "
                "| beyond close p50 / p99 | reading->window p50 / p99 (max) | reading->emit "
                "p50 / p99 | backlog at end | event-loop lag max | worker CPU/wall | machine "
                "CPU busy | changelog/reading |",
                "|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|"]
        for pct, v in lat.items():
            emit = v.get("reading_to_emit", {})
            out.append(
                f"| {pct} % | {v['households']} | {fmt(v.get('achieved_rate'))} | "
                f"{v['windows']} | {fmt(v['beyond_end']['p50'])} / {fmt(v['beyond_end']['p99'])}"
                f" s | {fmt(v['beyond_close']['p50'])} / {fmt(v['beyond_close']['p99'])} s | "
                f"{fmt(v['reading_to_window']['p50'])} / {fmt(v['reading_to_window']['p99'])} "
                f"({fmt(v['reading_to_window']['max'])}) s | {fmt(emit.get('p50'))} / "
                f"{fmt(emit.get('p99'))} s | {fmt(v.get('backlog_at_end'))} | "
                f"{fmt(v.get('event_loop_lag_max_s'))} s | {fmt(v.get('worker_cpu_per_wall'))} | "
                f"{fmt(v.get('machine_cpu_busy'))} | {fmt(v.get('changelog_per_reading_live'))} |")
    runs = []
    for key, label in (("uvloop_vs_asyncio", ("uvloop", "aio")), ("scaling", ("two",))):
        det = figs.get(key, {}).get("detail", {})
        runs += [(lb, det[lb]) for lb in label if lb in det]
    if not runs and "pipeline_vs_consume" in figs:
        det = figs["pipeline_vs_consume"].get("detail", {})
        if "run" in det:
            runs = [("uvloop", det["run"])]
    if runs:
        out += ["", "## Pipeline runs", "",
                "| run | workers | loop | readings | wall s | worker CPU s | readings/CPU-s | "
                "readings/wall-s | CPU/wall | machine CPU busy | startup s | InfluxDB paused s | "
                "dead-lettered |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, r in runs:
            out.append(f"| {label} | {r['workers']} | {r['loop']} | {fmt(r['readings'])} | "
                       f"{fmt(r['wall_s'])} | {fmt(r['cpu_s'])} | {fmt(r['per_cpu_s'])} | "
                       f"{fmt(r['per_wall_s'])} | {fmt(r['cpu_per_wall'])} | "
                       f"{fmt(r.get('machine_cpu_busy'))} | "
                       f"{fmt(r['startup_s'])} | {fmt(r['influx_paused_s'])} | "
                       f"{fmt(r['dead_lettered'])} |")
    errors = meta.get("errors") or {}
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- `{k}`: {_md_cell(v)}" for k, v in errors.items()]
    return "\n".join(out) + "\n"


# --- sections written by other commands --------------------------------------------------------
# RESULTS.md holds the suite's figures and, below them, sections that other commands write
# (the accuracy evaluations take minutes and run on their own). Each section sits between two
# markers; the suite keeps them when it rewrites the file, and a command replaces only its own.

_BEGIN = "<!-- begin {name} -->"
_END = "<!-- end {name} -->"
_SECTION_RE = re.compile(r"<!-- begin (?P<name>[\w.-]+) -->\n.*?<!-- end (?P=name) -->\n?",
                         re.DOTALL)


def sections(text: str) -> dict[str, str]:
    """The marked sections of a RESULTS.md text, by name, in file order (markers included)."""
    return {m["name"]: m[0] if m[0].endswith("\n") else m[0] + "\n"
            for m in _SECTION_RE.finditer(text)}


def section_block(name: str, title: str, meta: Mapping[str, Any], body: str) -> str:
    """A marked section: its title, how it was produced, then ``body`` (markdown)."""
    lines = [_BEGIN.format(name=name), f"## {title}", "",
             f"- command: `{meta.get('command', '?')}`",
             f"- date (UTC): {meta.get('date_utc', '?')}",
             f"- code: {meta.get('git', '?')}"]
    if meta.get("wall_s") is not None:
        lines.append(f"- wall time: {fmt(meta['wall_s'])} s")
    lines += ["", body.rstrip("\n"), _END.format(name=name)]
    return "\n".join(lines) + "\n"


def with_section(text: str, name: str, block: str) -> str:
    """``text`` with section ``name`` replaced by ``block``, or ``block`` appended."""
    old = sections(text).get(name)
    if old is not None:
        return text.replace(old, block, 1)
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + block


def keep_sections(new_text: str, old_text: str) -> str:
    """The suite's freshly rendered ``new_text`` followed by the sections of ``old_text``."""
    out = new_text
    for name, block in sections(old_text).items():
        out = with_section(out, name, block)
    return out

"""Rendering of bench results: the results.json shape, the tables, --only parsing."""

from __future__ import annotations

import math

import orjson
import pytest

from bench.harness import Prefill, Progress
from bench.pipeline import PipelineRun, figures, median_run
from bench.report import (
    FIGURE_KEYS,
    fmt,
    missing,
    normalize,
    render_markdown,
    render_table,
    results_document,
    to_json_bytes,
)
from bench.suite import EXTRAS, FIGURES, parse_only

META = {"command": "python -m bench --quick", "date_utc": "2026-11-26T03:40:00+00:00",
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "python": "3.11.9"}, "quick": True,
        "duration_s": 271.3, "git": "0b0d166", "errors": {}}


def _fig(value: float, baseline: float, unit: str = "readings/s") -> dict[str, object]:
    return {"value": value, "baseline": baseline, "ratio": value / baseline, "unit": unit,
            "note": "n"}


@pytest.mark.parametrize(
    ("x", "expected"),
    [(None, "-"), (352604.3, "352,604"), (45.67, "45.7"), (1.5, "1.5"), (0.4166, "0.417"),
     (0.0012345, "0.00123"), (0, "0"), (math.nan, "nan"), ("missing", "missing"),
     (True, "True"), (12, "12.0")],
)
def test_fmt(x: object, expected: str) -> None:
    assert fmt(x) == expected


def test_results_document_has_meta_and_one_key_per_figure_with_contract_keys() -> None:
    figs = {name: _fig(2.0, 1.0) for name in FIGURES}
    figs["influx_sink_vs_bare"] = missing("points/s", "missing: no module")
    figs["extra_key"] = {**_fig(3.0, 1.5), "detail": {"a": [1, 2]}}
    doc = results_document(figs, META)
    assert next(iter(doc)) == "_meta"
    assert set(FIGURES) <= set(doc)
    for name in FIGURES:
        assert set(FIGURE_KEYS) <= set(doc[name])
        assert doc[name]["status"] in ("ok", "missing")
    assert doc["influx_sink_vs_bare"]["status"] == "missing"
    assert doc["influx_sink_vs_bare"]["value"] is None
    assert doc["extra_key"]["detail"] == {"a": [1, 2]}
    assert doc["_meta"]["date_utc"].endswith("+00:00")


def test_json_bytes_turn_nan_into_null() -> None:
    doc = results_document({"x": {**_fig(1.0, 2.0), "ratio": math.nan,
                                  "detail": {"p99": math.inf}}}, META)
    back = orjson.loads(to_json_bytes(doc))
    assert back["x"]["ratio"] is None
    assert back["x"]["detail"]["p99"] is None


@pytest.mark.parametrize(
    ("fig", "status"),
    [(_fig(1.0, 1.0), "ok"), ({"value": None, "unit": "s", "note": ""}, "failed"),
     ({"value": None, "unit": "s", "note": "", "status": "not_measured"}, "not_measured")],
)
def test_normalize_status(fig: dict[str, object], status: str) -> None:
    assert normalize("f", fig)["status"] == status


def test_normalize_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        normalize("f", {"status": "great"})


def test_render_table_rows_and_notes() -> None:
    text = render_table({"consume_ceiling": _fig(350_000.0, 1_200_000.0, "readings/CPU-s"),
                         "influx_sink_vs_bare": missing("points/s", "missing: x")})
    lines = text.splitlines()
    assert lines[0].split() == ["figure", "value", "baseline", "ratio", "unit", "status"]
    assert "350,000" in lines[2] and "1,200,000" in lines[2] and "0.292" in lines[2]
    assert lines[3].split()[:4] == ["influx_sink_vs_bare", "-", "-", "-"]
    assert any(line.strip().startswith("influx_sink_vs_bare: missing") for line in lines)


def test_render_markdown_has_header_machine_date_and_a_row_per_figure() -> None:
    figs = {name: _fig(2.0, 1.0) for name in FIGURES}
    figs["latency"]["detail"] = {"levels": {50: {
        "households": 3000, "achieved_rate": 3000.0, "windows": 2999,
        "beyond_end": {"p50": 31.5, "p99": 31.7, "max": 31.8},
        "beyond_close": {"p50": 1.5, "p99": 1.7, "max": 1.8},
        "reading_to_window": {"p50": 0.8, "p99": 1.2, "max": 1.3},
        "loadgen_behind_p99_s": 0.01, "worker_cpu_per_wall": 0.4,
        "changelog_per_reading_live": 0.42}}}
    md = render_markdown(results_document(figs, META))
    assert "python -m bench --quick" in md
    assert "2026-11-26T03:40:00+00:00" in md
    assert "2 cores" in md
    for name in FIGURES:
        assert f"| {name} |" in md
    assert "| 50 % | 3000 |" in md


def _run(stage: str, workers: int, readings: int, wall: float, cpu: float) -> PipelineRun:
    prog = Progress(readings, readings, readings, readings, t_first=100.0, t_windows=100 + wall,
                    t_influx=100 + wall, cpu_first=1.0, cpu_windows=1 + cpu, cpu_influx=1 + cpu,
                    samples={})
    return PipelineRun(stage, "uvloop" if stage != "aio" else "aio", workers, readings,
                       readings, 0.0, prog, 3.0, readings * 0.1, readings // 10, 0.0, 10.0)


def test_pipeline_figures_from_runs() -> None:
    ceiling = {**_fig(300_000.0, 1_000_000.0, "readings/CPU-s"),
               "detail": {"per_wall_s": 250_000.0}}
    pf = Prefill("t", 60_000, 2000, 30, 1, 0, 1.0, 1.0)
    uv = _run("uvloop", 1, 60_000, wall=10.0, cpu=6.0)
    aio = _run("aio", 1, 60_000, wall=12.0, cpu=8.0)
    two = _run("two", 2, 60_000, wall=8.0, cpu=9.0)
    figs = figures(ceiling, uv, aio, two, pf)
    assert figs["pipeline_vs_consume"]["value"] == pytest.approx(10_000.0)
    assert figs["pipeline_vs_consume"]["ratio"] == pytest.approx(10_000 / 300_000)
    assert figs["pipeline_wall"]["value"] == pytest.approx(6_000.0)
    assert figs["changelog_per_reading"]["value"] == pytest.approx(0.1)
    assert figs["changelog_per_reading"]["baseline"] == 1.0
    assert figs["uvloop_vs_asyncio"]["ratio"] == pytest.approx(10_000 / 7_500)
    assert figs["scaling"]["ratio"] == pytest.approx(7_500 / 6_000)
    orjson.loads(to_json_bytes(results_document(figs, META)))  # JSON-encodable


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, [*FIGURES, *EXTRAS]), ("", [*FIGURES, *EXTRAS]), ("latency", ["latency"]),
     ("scaling, nilm_vs_loop", ["scaling", "nilm_vs_loop"]), ("stages", ["stages"])],
)
def test_parse_only(text: str | None, expected: list[str]) -> None:
    assert parse_only(text) == expected


def test_parse_only_rejects_unknown() -> None:
    with pytest.raises(SystemExit, match="unknown figure"):
        parse_only("latency,speed")


@pytest.mark.parametrize(("cpus", "expected_cpu"), [([6.0], 6.0), ([5.0, 7.0, 6.0], 6.0),
                                                     ([5.0, 8.0], 8.0)])
def test_median_run_by_readings_per_cpu_second(cpus: list[float], expected_cpu: float) -> None:
    runs = [_run("uvloop", 1, 60_000, wall=10.0, cpu=c) for c in cpus]
    assert median_run(runs).cpu_s == pytest.approx(expected_cpu)


def test_sections_are_replaced_by_name_and_kept_by_the_suite() -> None:
    from bench.report import keep_sections, section_block, sections, with_section

    meta = {"command": "python -m bench.nilm_eval", "date_utc": "2026-11-26T08:00:00+00:00",
            "git": "abc1234", "wall_s": 1.25}
    nilm = section_block("nilm_eval", "NILM", meta, "| home | F1 |\n|---|---|\n| 2 | 0.47 |\n")
    anomaly = section_block("anomaly_eval", "Anomaly", {**meta, "wall_s": None}, "table A")
    text = with_section(with_section("# results\n\nsuite table\n", "nilm_eval", nilm),
                        "anomaly_eval", anomaly)
    assert list(sections(text)) == ["nilm_eval", "anomaly_eval"]
    assert text.startswith("# results\n\nsuite table\n\n<!-- begin nilm_eval -->\n## NILM\n")
    assert "- command: `python -m bench.nilm_eval`" in text and "- wall time: 1.25 s" in text
    assert "wall time" not in sections(text)["anomaly_eval"]
    # a new run of one command replaces its own section only, in place
    newer = section_block("nilm_eval", "NILM", meta, "| home | F1 |\n|---|---|\n| 2 | 0.52 |\n")
    text2 = with_section(text, "nilm_eval", newer)
    assert "0.52" in text2 and "0.47" not in text2 and "table A" in text2
    assert list(sections(text2)) == ["nilm_eval", "anomaly_eval"]
    # the suite rewrites its part and keeps both sections after it
    text3 = keep_sections("# results\n\nnew suite table\n", text2)
    assert "new suite table" in text3 and "\nsuite table" not in text3
    assert sections(text3) == sections(text2)
    assert keep_sections("# only\n", "no sections here\n") == "# only\n"

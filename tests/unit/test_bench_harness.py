"""Pure helpers of the bench harness: /proc CPU accounting, metrics parsing, isolation names,
the load driver's clock and the latency arithmetic. No broker needed."""

from __future__ import annotations

import math

import pytest

from app.settings import Settings
from bench.drive import ShiftedWall, aligned_past_start
from bench.harness import (
    PREFIX,
    Isolation,
    aligned_start_s,
    code_fingerprint,
    metric_sum,
    parse_machine_stat,
    parse_metrics,
    parse_proc_stat,
    percentile,
)
from bench.latency import Schedule, level_note, window_latency

# /proc/<pid>/stat of a process whose command name holds a space and a parenthesis
STAT = ("4242 (faust (w 0)) S 1 4242 4242 0 -1 4194560 51234 0 12 0 "
        "1234 567 8 9 20 0 7 0 90000 1050000000 40000 18446744073709551615 1 1 0 0 0 0 0 "
        "16781312 16386 0 0 0 17 1 0 0 0 0 0")


@pytest.mark.parametrize(
    ("text", "clk", "expected"),
    [
        (STAT, 100, (1234 + 567) / 100),
        (STAT, 1000, (1234 + 567) / 1000),
        ("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0", 100, 0.0),
        ("7 (a)b) R 1 7 7 0 -1 0 0 0 0 0 250 50 99 99 20 0 1 0 1 0 0", 100, 3.0),
    ],
)
def test_parse_proc_stat_counts_utime_and_stime_only(text: str, clk: int,
                                                      expected: float) -> None:
    assert parse_proc_stat(text, clk) == pytest.approx(expected)


METRICS = """\
# HELP wattflow_raw_records_total Raw records consumed
# TYPE wattflow_raw_records_total counter
wattflow_raw_records_total{source="json"} 47040.0
wattflow_raw_records_total{source="tic"} 12.0
wattflow_raw_records_created{source="json"} 1.7956e+09
wattflow_readings_windowed_total 47040.0
wattflow_table_writes_total{table="meter-state"} 3136.0
wattflow_table_writes_total{table="window-state"} 3000.0
wattflow_influx_points_written_total{measurement="reading"} 47040.0
wattflow_influx_points_written_total{measurement="channel_power"} 54990.0
wattflow_processing_seconds_bucket{le="0.5",stage="ingest"} 3.0
wattflow_odd{msg="a \\"quoted\\" , value"} 1.5
garbage line without value
"""


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("wattflow_raw_records_total", {}, 47052.0),
        ("wattflow_raw_records_total", {"source": "json"}, 47040.0),
        ("wattflow_raw_records_created", {}, 0.0),
        ("wattflow_readings_windowed_total", {}, 47040.0),
        ("wattflow_table_writes_total", {}, 6136.0),
        ("wattflow_influx_points_written_total", {"measurement": "reading"}, 47040.0),
        ("wattflow_processing_seconds_bucket", {"stage": "ingest", "le": "0.5"}, 3.0),
        ("wattflow_odd", {"msg": 'a \\"quoted\\" , value'}, 1.5),
        ("absent_total", {}, 0.0),
    ],
)
def test_parse_metrics_and_sum(name: str, labels: dict[str, str], expected: float) -> None:
    assert metric_sum(parse_metrics(METRICS), name, **labels) == expected


def test_parse_metrics_skips_comments_and_created() -> None:
    names = {n for n, _ in parse_metrics(METRICS)}
    assert not any(n.endswith("_created") for n in names)
    assert "garbage" not in names


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, math.nan), ([3.0], 99, 3.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
     (list(range(101)), 99, 99.0), ([5.0, 1.0], 100, 5.0), ([5.0, 1.0], 0, 1.0)],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    got = percentile(values, q)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_isolation_names_every_topic_under_the_run_prefix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    iso = Isolation("abc123", "uvloop", f"{PREFIX}abc123.raw.json", f"{PREFIX}abc123.raw.tic",
                    datadir=tmp_path)
    env = iso.env()
    topics = [v for k, v in env.items() if k.startswith("WATTFLOW_TOPIC_")]
    fields = [n for n in Settings.model_fields if n.startswith("topic_")]
    assert len(topics) == len(fields) >= 8  # every topic setting, new ones included
    assert all(t.startswith(f"{PREFIX}abc123") for t in topics)
    assert env["WATTFLOW_APP_ID"] == f"{PREFIX}abc123-uvloop"
    assert env["WATTFLOW_INFLUX_DB"] == "wfbench_abc123_uvloop"
    # the stage's own topics (and Faust's changelogs "<app id>-<table>-changelog") share the
    # stage prefix, so teardown by prefix removes them and never the shared raw topics
    stage_topics = [t for t in topics if t.startswith(iso.prefix)]
    assert len(stage_topics) == len(fields) - 2  # all but the two raw topics
    assert env["WATTFLOW_TOPIC_ALERTS"] == f"{PREFIX}abc123-uvloop.alerts"
    s = iso.settings()
    assert s.app_id == env["WATTFLOW_APP_ID"]
    assert s.window_topic("1m") == f"{PREFIX}abc123-uvloop.windows.1m"


def test_isolation_env_drops_inherited_wattflow_vars(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("WATTFLOW_APP_ID", "wattflow")
    monkeypatch.setenv("WATTFLOW_TOPIC_ALERTS", "alerts")
    iso = Isolation("r1", "s1", f"{PREFIX}r1.raw.json", f"{PREFIX}r1.raw.tic", datadir=tmp_path)
    env = iso.env()
    assert env["WATTFLOW_APP_ID"].startswith(PREFIX)
    assert env["WATTFLOW_TOPIC_ALERTS"].startswith(PREFIX)


@pytest.mark.parametrize("now", [1_795_664_000.0, 1_795_664_059.9, 1_795_664_031.5])
@pytest.mark.parametrize("seconds", [30, 45, 90])
def test_aligned_start_is_before_a_boundary_and_in_the_past(now: float, seconds: int) -> None:
    start = aligned_start_s(now, seconds, lead_s=5)
    assert (start + 5) % 60 == 0
    assert start + seconds <= now
    assert start + seconds > now - 60 - seconds - 5


@pytest.mark.parametrize("now", [1_795_664_000.0, 1_795_664_002.5, 1_795_664_059.0])
def test_aligned_past_start(now: float) -> None:
    start = aligned_past_start(now, lead_s=3)
    assert (start + 3) % 60 == 0
    assert now - 62 <= start <= now - 2


def test_shifted_wall_anchors_on_first_call() -> None:
    t = [1000.0]
    wall = ShiftedWall(940.0, real=lambda: t[0])
    assert wall.shift_s is None
    assert wall() == 940.0
    assert wall.shift_s == -60.0
    t[0] = 1002.5
    assert wall() == 942.5


SCHED = Schedule(start_s=1_795_663_917, shift_ms=-40_000.0, households=1000, interval_s=1,
                 periods=36)
END = 1_795_663_920_000  # start + 3 s: a minute boundary


@pytest.mark.parametrize(
    ("hid", "recv_offset_ms", "expected"),
    [
        # household 0 (phase 0): closing reading at end + grace exactly, sent at that wall time
        ("hh-000000", 30_500, {"beyond_end": 30.5, "beyond_close": 0.5,
                               "reading_to_window": 0.5}),
        # household 500 (phase 500 ms): first reading >= end + 30 s is at end + 30.5 s
        ("hh-000500", 31_000, {"beyond_end": 31.0, "beyond_close": 1.0,
                               "reading_to_window": 0.5}),
        ("hh-000999", 31_200, {"beyond_end": 31.2, "beyond_close": 1.2,
                               "reading_to_window": 0.201}),
    ],
)
def test_window_latency(hid: str, recv_offset_ms: float, expected: dict[str, float]) -> None:
    recv = SCHED.wall_ms(END) + recv_offset_ms
    got = window_latency(hid, END, recv, SCHED, 30_000)
    assert got is not None
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("hid", ["hh-001000", "refit-hh-x", "nohyphen"])
def test_window_latency_ignores_foreign_households(hid: str) -> None:
    assert window_latency(hid, END, 0.0, SCHED, 30_000) is None


def test_window_latency_none_when_closing_reading_never_sent() -> None:
    late_end = END + 60_000  # would close at +93 s, the run has 36 periods
    assert window_latency("hh-000001", late_end, 0.0, SCHED, 30_000) is None


PROC_STAT = """\
cpu  1000 50 300 8000 100 0 20 0 0 0
cpu0 500 25 150 4000 50 0 10 0 0 0
intr 12345
"""


def test_parse_machine_stat_busy_excludes_idle_and_iowait() -> None:
    busy, total = parse_machine_stat(PROC_STAT)
    assert total == 1000 + 50 + 300 + 8000 + 100 + 20
    assert busy == 1000 + 50 + 300 + 20


def test_parse_machine_stat_needs_the_aggregate_line() -> None:
    with pytest.raises(ValueError, match="no aggregate"):
        parse_machine_stat("cpu0 1 2 3 4 5 6 7 8\n")


def test_level_note_reports_a_lower_bound_when_no_window_arrived() -> None:
    v = {"windows": 0, "beyond_close_lower_bound_s": 4.25, "backlog_at_end": 11873,
         "event_loop_lag_max_s": 1.47}
    note = level_note(50, v)
    assert "no 1-minute window arrived within 4.2 s" in note or "within 4.3 s" in note
    assert "11873" in note


def test_level_note_with_windows() -> None:
    s = {"p50": 1.0, "p99": 2.0, "max": 2.5, "n": 10}
    note = level_note(20, {"windows": 10, "beyond_close": s, "reading_to_window": s,
                           "beyond_end": s})
    assert note.startswith("20%: beyond close p50/p99 1.00/2.00 s")


def test_code_fingerprint_changes_with_agent_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "agents").mkdir()
    (tmp_path / "app").mkdir()
    (tmp_path / "agents" / "ingest.py").write_text("A = 1\n")
    (tmp_path / "app" / "main.py").write_text("B = 1\n")
    before = code_fingerprint(tmp_path)
    assert before == code_fingerprint(tmp_path)
    (tmp_path / "agents" / "ingest.py").write_text("A = 2\n")
    assert code_fingerprint(tmp_path) != before

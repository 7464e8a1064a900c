"""The Prometheus rules: promtool accepts them, they behave on synthetic series (promtool's
rule unit tests), and the local Prometheus has loaded them."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from app.settings import get_settings

from .conftest import REPO

pytestmark = pytest.mark.integration
RULES = REPO / "config" / "prometheus" / "rules.yml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found (Debian package prometheus, installed by app.stack)")
    return path


def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def _firing(name: str, at: str, fires: bool) -> dict:  # type: ignore[type-arg]
    return {"expr": f'count(ALERTS{{alertname="{name}",alertstate="firing"}})', "eval_time": at,
            "exp_samples": [{"labels": "{}", "value": 1}] if fires else []}


def _lag(values: str) -> dict[str, str]:
    return {"series": 'wattflow_consumer_lag_messages{job="wattflow",instance="w:9464",'
                      'topic="meter.raw.json",partition="0"}', "values": values}


def _counter(name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{job="wattflow",instance="w:9464"{extra}}}', "values": values}


CASES = [
    # lag rising by 2000 messages a minute for 15 minutes: fires; drains to zero: silent
    ([_lag("0+2000x15")], [_firing("WattflowConsumerLagGrowing", "14m", True),
                           {"expr": "wattflow:consumer_lag:sum", "eval_time": "3m",
                            "exp_samples": [{"labels": 'wattflow:consumer_lag:sum{job="wattflow"}',
                                             "value": 6000}]}]),
    # the checkpoint saw-tooth (up to 50k uncommitted, then 0 at each commit) never fires
    ([_lag("0 50000 0 60000 0 50000 0 60000 0 50000 0 60000 0 50000 0 60000")],
     [_firing("WattflowConsumerLagGrowing", "15m", False)]),
    # 2 % of 1000 raw records/s dead-lettered for 20 min: fires after 5 + 10 min
    ([_counter("wattflow_raw_records_total", "0+60000x25", source="json"),
      _counter("wattflow_readings_invalid_total", "0+1200x25", reason="out_of_range")],
     [_firing("WattflowDeadLetterRateHigh", "8m", False),
      _firing("WattflowDeadLetterRateHigh", "20m", True),
      {"expr": "round(wattflow:deadletter_ratio:rate5m * 1000)", "eval_time": "10m",
       "exp_samples": [{"labels": '{job="wattflow"}', "value": 20}]}]),
    # 0.5 %: below the threshold
    ([_counter("wattflow_raw_records_total", "0+60000x25", source="json"),
      _counter("wattflow_readings_invalid_total", "0+300x25", reason="out_of_range")],
     [_firing("WattflowDeadLetterRateHigh", "20m", False)]),
    # InfluxDB writes retried every minute for 6 min (an outage): fires; none: silent
    ([_counter("wattflow_influx_retries_total", "0+6x8")],
     [_firing("WattflowInfluxWritesPaused", "5m", True)]),
    ([_counter("wattflow_influx_retries_total", "0x8")],
     [_firing("WattflowInfluxWritesPaused", "7m", False)]),
    # event loop blocked 2 s at every sample: fires; 0.2 s: silent
    ([_counter("wattflow_event_loop_lag_seconds", "2x8")],
     [_firing("WattflowEventLoopLagHigh", "5m", True)]),
    ([_counter("wattflow_event_loop_lag_seconds", "0.2x8")],
     [_firing("WattflowEventLoopLagHigh", "7m", False)]),
    # a scrape target down
    ([{"series": 'up{job="wattflow",instance="w:9464"}', "values": "0x5"}],
     [_firing("WattflowWorkerDown", "3m", True)]),
]


def test_rules_behave_on_synthetic_series(tmp_path: Path) -> None:
    doc = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": exprs}
                     for series, exprs in CASES]}
    path = tmp_path / "rules_test.yml"  # JSON is YAML
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    out = subprocess.run([_promtool(), "test", "rules", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _api(path: str, method: str = "GET") -> dict:  # type: ignore[type-arg]
    s = get_settings()
    req = urllib.request.Request(f"http://{s.host}:{s.prometheus_port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read()
    return orjson.loads(body) if body.strip() else {}  # type: ignore[no-any-return]


def _loaded() -> dict[str, str]:
    groups = _api("/api/v1/rules")["data"]["groups"]
    return {r["name"]: r["health"] for g in groups if g["file"] == str(RULES)
            for r in g["rules"]}


def test_prometheus_loaded_the_rules(local_stack: None) -> None:
    wanted = set(re.findall(r"^\s*- (?:alert|record): (\S+)$", RULES.read_text(), re.M))
    assert len(wanted) >= 10
    loaded = _loaded()
    if set(loaded) != wanted:  # the file changed since Prometheus started: reload it
        _api("/-/reload", method="POST")
        deadline = time.monotonic() + 30
        while set(loaded) != wanted and time.monotonic() < deadline:
            time.sleep(0.5)
            loaded = _loaded()
    assert set(loaded) == wanted
    deadline = time.monotonic() + 30  # every rule evaluated without error
    while any(h != "ok" for h in loaded.values()) and time.monotonic() < deadline:
        time.sleep(1)
        loaded = _loaded()
    assert all(h == "ok" for h in loaded.values()), loaded

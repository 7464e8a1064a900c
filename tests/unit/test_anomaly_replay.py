import json

import numpy as np

from bench.anomaly_replay import infer_interval_ms, load_csv, main, replay
from simulators.anomalies import population

T0_S = 1_767_571_200


def _write(path, rows, header="timestamp_s,aggregate_watts,kettle_watts,voltage_v"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_loader_tolerates_extra_columns_empty_values_and_disorder(tmp_path):
    rows = [f"{T0_S + 900 * i},{400 + i % 5},0,231.0" for i in range(10)]
    rows[3] = f"{T0_S + 2700},,0,"  # empty power: the row is dropped
    rows.reverse()
    s = load_csv(_write(tmp_path / "h.csv", rows))
    assert s.ts_ms.size == 9
    assert bool(np.all(np.diff(s.ts_ms) > 0))
    assert infer_interval_ms(s.ts_ms) == 900_000
    assert s.voltage_v is not None and float(s.voltage_v[0]) == 231.0


def test_fifteen_minute_file_with_a_silence_is_offline_once(tmp_path, capsys):
    rows = [f"{T0_S + 900 * i},{400 + i % 5}" for i in range(200) if not 50 <= i < 62]
    path = _write(tmp_path / "h.csv", rows, "timestamp_s,aggregate_watts")
    assert main(["--csv", str(path), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    kinds = [(x["type"], x["status"]) for x in lines]
    assert kinds == [("offline", "open"), ("offline", "resolved")]
    assert lines[0]["opened_at"] == (T0_S + 900 * 49) * 1000
    assert lines[1]["resolved_at"] == (T0_S + 900 * 62) * 1000
    assert lines[0]["evidence"]["threshold"] == 4 * 900_000  # 4 x the inferred interval


def test_months_of_one_minute_data_replay_quickly(tmp_path):
    n = 60 * 1440  # a full year (525 600 rows) takes ~6 s; see docs/anomaly.md
    ts = T0_S + 60 * np.arange(n)
    p = 300 + 200 * np.sin(2 * np.pi * np.arange(n) / 1440) + (np.arange(n) % 7)  # daily cycle
    np.savetxt(tmp_path / "y.csv", np.column_stack([ts, p]), delimiter=",", fmt=["%d", "%.1f"],
               header="timestamp_s,aggregate_watts", comments="")  # fmt: skip
    s = load_csv(tmp_path / "y.csv")
    assert s.ts_ms.size == n
    assert list(replay(s)) == []  # a smooth, plausible year raises nothing


def test_simulator_is_deterministic_and_labelled():
    a = population(seed=3, n_per_type=1, n_clean=1, days=16, warmup_days=14)
    b = population(seed=3, n_per_type=1, n_clean=1, days=16, warmup_days=14)
    assert len(a) == 10
    assert [h.labels for h in a] == [h.labels for h in b]
    assert all(np.array_equal(x.power_w, y.power_w) for x, y in zip(a, b, strict=True))
    assert {lb.type for h in a for lb in h.labels} == {
        "spike", "over_consumption", "low_consumption", "base_load_rise", "offline",
        "frozen_value", "counter_backwards", "clock_skew", "voltage",
    }  # fmt: skip
    assert a[-1].labels == []

"""Household simulator, population, payloads, TIC frames, faults and REFIT replay (no broker)."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import orjson
import pytest

from app.domain.payloads import JsonReadingV1, TicEnvelopeV1
from app.domain.registry import MeterInfo
from app.domain.tic import (
    TicError,
    build_frame_historique,
    build_frame_standard,
    measures,
    parse_frame,
)
from simulators.faults import Fault, plan_faults
from simulators.household import HouseholdSimulator
from simulators.payloads import (
    JSON_MALFORMATIONS,
    TIC_MALFORMATIONS,
    MessageFaults,
    chunk_payloads,
    malform,
)
from simulators.population import ARCHETYPES, HouseholdSpec, make_population, registry
from simulators.refit_replay import DEFAULT_DATA, find_homes, load_home, payloads, truth_edges
from simulators.tic_frames import historique_groups, horodates, standard_groups

WINTER = 1_768_953_600  # 2026-01-21 00:00 UTC
SUMMER = 1_782_000_000  # 2026-06-21 00:00 UTC
JSON_DEC = msgspec.json.Decoder(JsonReadingV1)


def ts_ms_of(ts: object) -> int:
    """Epoch ms of a decoded ``ts`` (str or datetime); it must carry an offset."""
    dt = ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts))
    assert dt.tzinfo is not None, f"naive timestamp {ts!r}"
    return round(dt.timestamp() * 1000)


def json_reading_ok(raw: bytes) -> bool:
    try:
        r = JSON_DEC.decode(raw)
        ts_ms_of(r.ts)
    except (msgspec.DecodeError, AssertionError, ValueError):
        return False
    return r.power_w == r.power_w  # NaN is not a reading
TIC_DEC = msgspec.json.Decoder(TicEnvelopeV1)


@pytest.fixture(scope="module")
def population() -> list[HouseholdSpec]:
    return make_population(120, seed=7)


def spec_where(population: list[HouseholdSpec], **want: object) -> HouseholdSpec:
    for s in population:
        if all(getattr(s, k) == v for k, v in want.items()):
            return s
    raise LookupError(want)


# --- population ---------------------------------------------------------------------------------


def test_population_is_deterministic_and_prefix_stable(population: list[HouseholdSpec]) -> None:
    assert make_population(120, seed=7) == population
    assert make_population(10, seed=7) == population[:10]
    assert make_population(10, seed=8) != population[:10]


def test_population_ids_and_fields(population: list[HouseholdSpec]) -> None:
    assert population[0].household_id == "hh-000001"
    assert population[0].device_id == "node-000001"
    assert len({s.meter_id for s in population}) == len(population)
    for s in population:
        assert s.archetype in ARCHETYPES
        assert s.max_power_w in (3000.0, 6000.0, 9000.0, 12000.0)
        assert s.tic_mode in (None, "historique", "standard")
        if s.tic_mode is None:
            assert re.fullmatch(r"m-\d{6}", s.meter_id)
        else:
            assert re.fullmatch(r"\d{12}", s.meter_id)  # ADCO / ADSC
            assert s.channels == ()
        assert s.exports == (s.solar_kwp > 0)
    modes = {s.tic_mode for s in population}
    assert modes == {None, "historique", "standard"}
    assert any(s.exports for s in population)
    assert sum(s.timezone == "Europe/Paris" for s in population) > 0.7 * len(population)


def test_registry_matches_population(population: list[HouseholdSpec]) -> None:
    reg = registry(population)
    assert len(reg) == len(population)
    s = population[3]
    assert reg[s.meter_id] == MeterInfo(s.household_id, s.max_power_w, s.exports, s.timezone)


# --- household simulator ------------------------------------------------------------------------


def test_counter_is_the_integral_of_reported_import_power(
        population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, exports=False, tariff="HC")
    sim = HouseholdSimulator(spec)
    a = sim.render(WINTER, 600)
    b = sim.render(WINTER + 600, 600)
    energy = np.concatenate([a.energy_wh, b.energy_wh])
    power = np.concatenate([a.power_w, b.power_w])
    np.testing.assert_allclose(np.diff(energy), np.maximum(power[1:], 0) / 3600, atol=1e-9)
    for c in (a, b):
        np.testing.assert_allclose(c.index_wh["HCHC"] + c.index_wh["HCHP"], c.energy_wh,
                                   rtol=0, atol=1e-6)
        inc_hc = np.diff(c.index_wh["HCHC"])
        assert np.all(inc_hc[~c.offpeak[1:]] == 0)
    assert np.all(np.diff(a.ts_ms) == 1000)
    with pytest.raises(ValueError, match="consecutive"):
        sim.render(WINTER, 10)


def test_chunk_size_does_not_change_the_readings(population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, archetype="family_electric")
    whole = HouseholdSimulator(spec).render(WINTER + 6 * 3600, 3600)
    sim = HouseholdSimulator(spec)
    parts = [sim.render(WINTER + 6 * 3600 + k * 60, 60) for k in range(60)]
    np.testing.assert_array_equal(whole.power_w, np.concatenate([p.power_w for p in parts]))
    np.testing.assert_allclose(whole.energy_wh, np.concatenate([p.energy_wh for p in parts]))
    events_whole = [(e["appliance"], e["state"], e["ts_ms"]) for e in whole.events]
    events_parts = [(e["appliance"], e["state"], e["ts_ms"]) for p in parts for e in p.events]
    assert events_whole == events_parts


def test_day_is_plausible_and_deterministic(population: list[HouseholdSpec]) -> None:
    for spec in population[:12]:
        c = HouseholdSimulator(spec).render(WINTER, 86_400)
        again = HouseholdSimulator(spec).render(WINTER, 86_400)
        np.testing.assert_array_equal(c.power_w, again.power_w)
        assert c.power_w.max() <= spec.max_power_w  # load shedding keeps under the contract
        kwh = (c.energy_wh[-1] - c.energy_wh[0]) / 1000
        assert 1.0 < kwh < 130.0, (spec.archetype, kwh)
        assert c.voltage_v.min() > 200 and c.voltage_v.max() < 245
        on = [e for e in c.events if e["kind"] == "appliance" and e["state"] == "on"]
        assert any(e["appliance"] == "fridge" for e in on)
        if spec.kind.heating == "electric":
            assert any(e["appliance"] == "electric_heater" for e in on)


def test_programmes_have_phases_and_paired_edges(population: list[HouseholdSpec]) -> None:
    for spec in population:
        sim = HouseholdSimulator(spec)
        c = sim.render(WINTER, 86_400)
        wm = [e for e in c.events if e.get("appliance") == "washing_machine"]
        if len(wm) == 2:
            break
    else:
        pytest.fail("no washing machine run in the population")
    on, off = wm
    assert on["state"] == "on" and off["state"] == "off"
    assert on["activation_id"] == off["activation_id"]
    assert on["programme"].startswith("wash_")
    assert off["ts_ms"] - on["ts_ms"] > 45 * 60_000
    assert on["peak_w"] >= 1800  # the heating phase
    act = next(a for d in list(sim._plans) for a in sim.activations(d)
               if a.act_id == on["activation_id"])
    buf = np.zeros(act.end_s - act.start_s)
    act.render_into(buf, act.start_s)
    assert len(act.phases) >= 5
    assert buf.max() >= 1800 and np.median(buf) < 400


def test_solar_household_exports_in_summer(population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, exports=True, timezone="Europe/Paris")
    c = HouseholdSimulator(spec).render(SUMMER + 9 * 3600, 4 * 3600)
    assert c.power_w.min() < 0
    assert c.export_wh[-1] > c.export_wh[0]
    np.testing.assert_allclose(np.diff(c.export_wh), np.maximum(-c.power_w[1:], 0) / 3600,
                               atol=1e-9)


# --- faults -------------------------------------------------------------------------------------


def _faulty(spec: HouseholdSpec, kind: str, start: int, dur: int,
            **params: object) -> HouseholdSimulator:
    f = Fault(kind, spec.household_id, spec.meter_id, start * 1000, (start + dur) * 1000,
              dict(params))
    return HouseholdSimulator(spec, [f])


@pytest.mark.parametrize("kind", ["spike", "offline", "frozen", "clock_skew", "counter_reset",
                                  "over_consumption"])
def test_signal_faults(population: list[HouseholdSpec], kind: str) -> None:
    spec = spec_where(population, exports=False, archetype="family_electric")
    clean = HouseholdSimulator(spec).render(WINTER, 300)
    params: dict[str, object] = {"spike": {"power_w": 90_000.0}, "clock_skew": {"skew_s": 3600},
                                 "over_consumption": {"extra_w": 2000.0}}.get(kind, {})
    c = _faulty(spec, kind, WINTER + 100, 50, **params).render(WINTER, 300)
    inside = slice(100, 150)
    assert any(e.get("fault") == kind for e in c.events)
    np.testing.assert_array_equal(c.power_w[:100], clean.power_w[:100])
    if kind == "spike":
        assert np.all(c.power_w[inside] == 90_000.0)
        np.testing.assert_array_equal(c.energy_wh, clean.energy_wh)  # a glitch, not energy
    elif kind == "offline":
        assert not c.present[inside].any() and c.present[:100].all() and c.present[150:].all()
    elif kind == "frozen":
        assert np.all(c.power_w[inside] == clean.power_w[99])
        assert np.all(c.energy_wh[inside] == clean.energy_wh[99])
        np.testing.assert_array_equal(c.power_w[150:], clean.power_w[150:])
    elif kind == "clock_skew":
        np.testing.assert_array_equal(c.ts_ms[inside] - clean.ts_ms[inside], 3_600_000)
        np.testing.assert_array_equal(c.ts_ms[150:], clean.ts_ms[150:])
    elif kind == "counter_reset":
        assert c.energy_wh[100] < 5.0 and c.energy_wh[99] > 1e5
        np.testing.assert_allclose(np.diff(c.energy_wh[100:]),
                                   np.maximum(c.power_w[101:], 0) / 3600, atol=1e-9)
    else:
        assert np.all(c.power_w[inside] > clean.power_w[inside] + 1500)
        assert c.energy_wh[-1] - clean.energy_wh[-1] == pytest.approx(2000 * 50 / 3600, rel=0.05)


def test_counter_reset_persists_across_chunks(population: list[HouseholdSpec]) -> None:
    spec = population[0]
    sim = _faulty(spec, "counter_reset", WINTER + 30, 1)
    a = sim.render(WINTER, 60)
    b = sim.render(WINTER + 60, 60)
    assert b.energy_wh[0] == pytest.approx(a.energy_wh[-1] + max(b.power_w[0], 0) / 3600)
    assert b.energy_wh[-1] < 100


def test_plan_faults_is_seeded_and_non_overlapping(population: list[HouseholdSpec]) -> None:
    spec = population[0]
    a = plan_faults(spec, WINTER, WINTER + 30 * 86_400, np.random.default_rng(1), per_day=2)
    b = plan_faults(spec, WINTER, WINTER + 30 * 86_400, np.random.default_rng(1), per_day=2)
    assert a == b and 30 <= len(a) <= 90
    assert all(x.end_ms <= y.start_ms for x, y in itertools.pairwise(a))
    assert {f.kind for f in a} >= {"offline", "spike", "frozen"}
    assert a[0].truth()["kind"] == "fault"


# --- payloads and TIC ---------------------------------------------------------------------------


def test_json_payloads_follow_the_contract(population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, tic_mode=None, voltage=True)
    spec_ch = next(s for s in population if s.tic_mode is None and s.channels)
    for s in (spec, spec_ch):
        c = HouseholdSimulator(s).render(WINTER, 20)
        out = chunk_payloads(c, ts_offset_ms=250)
        assert [i for i, _, _ in out] == list(range(20))
        for i, ts, raw in out:
            r = JSON_DEC.decode(raw)
            assert r.meter_id == s.meter_id and r.household_id == s.household_id
            assert ts_ms_of(r.ts) == ts == (WINTER + i) * 1000 + 250
            assert r.power_w == c.power_w[i]
            assert r.energy_wh == pytest.approx(c.energy_wh[i], abs=0.006)
        if s.channels:
            assert set(orjson.loads(out[0][2])["channels"]) == set(s.channels)
        else:
            assert r.voltage_v is not None and r.current_a is not None


def test_offline_readings_are_not_sent(population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, tic_mode=None)
    c = _faulty(spec, "offline", WINTER + 5, 5).render(WINTER, 20)
    assert [i for i, _, _ in chunk_payloads(c)] == [*range(5), *range(10, 20)]


@pytest.mark.parametrize("mode", ["historique", "standard"])
def test_tic_frames_match_reference_and_parse(population: list[HouseholdSpec], mode: str) -> None:
    specs = [s for s in population if s.tic_mode == mode][:6]
    assert specs
    for s in specs:
        c = HouseholdSimulator(s).render(SUMMER + 12 * 3600, 30)
        hd = horodates(c.ts_ms, s.timezone)
        for i, _ts, raw in chunk_payloads(c):
            env = TIC_DEC.decode(raw)
            ref = (build_frame_historique(historique_groups(s, c, i)) if mode == "historique"
                   else build_frame_standard(standard_groups(s, c, i, hd[i])))
            assert env.frame == ref
            m = measures(parse_frame(env.frame))
            assert m.meter_id == s.meter_id
            assert m.energy_wh == pytest.approx(c.energy_wh[i], abs=2.0)
            if mode == "standard":
                assert parse_frame(env.frame).horodates["DATE"] == hd[i]
    if mode == "standard" and specs[0].timezone == "Europe/Paris":
        assert hd[0].startswith("E")  # summer time


def test_horodate_winter_and_summer() -> None:
    ts = np.array([WINTER * 1000, SUMMER * 1000], dtype=np.int64)
    assert horodates(ts, "Europe/Paris") == ["H260121010000", "E260621020000"]


def _clock_skew_payloads(spec: HouseholdSpec, skew_s: int) -> tuple[list[tuple[int, int, bytes]],
                                                                     list[Fault]]:
    """A clock-skew fault planned for ``spec`` and four 60 s chunks rendered across it."""
    fault = plan_faults(spec, WINTER + 30, WINTER + 31, np.random.default_rng(5), per_day=1e7,
                        kinds=("clock_skew",))
    assert [f.kind for f in fault] == ["clock_skew"]
    # the planned duration (>= 10 min) is cut at the planning window; keep 60 s, our skew
    f = Fault("clock_skew", spec.household_id, spec.meter_id, fault[0].start_ms,
              fault[0].start_ms + 60_000, {"skew_s": skew_s})
    sim = HouseholdSimulator(spec, [f])
    out = []
    for k in range(4):
        c = sim.render(WINTER + 60 * k, 60)
        out += [(i + 60 * k, ts, raw) for i, ts, raw in chunk_payloads(c, ts_offset_ms=250)]
    return out, [f]


@pytest.mark.parametrize("skew_s", [-3600, -120, 45, 300, 3600])
def test_clock_skew_on_a_standard_tic_meter(population: list[HouseholdSpec], skew_s: int) -> None:
    """The skewed node clock makes event times jump inside a chunk; frames still render."""
    spec = spec_where(population, tic_mode="standard")
    out, (f,) = _clock_skew_payloads(spec, skew_s)
    assert [i for i, _, _ in out] == list(range(240))
    for i, ts, raw in out:
        env = TIC_DEC.decode(raw)
        skewed = f.start_ms <= (WINTER + i) * 1000 < f.end_ms
        assert ts == ts_ms_of(env.ts) == (WINTER + i) * 1000 + 250 + (skew_s * 1000 if skewed
                                                                      else 0)
        frame = parse_frame(env.frame)  # every checksum verified
        assert frame.horodates["DATE"] == horodates(np.array([ts]), spec.timezone)[0]
        assert measures(frame).meter_id == spec.meter_id
    again, _ = _clock_skew_payloads(spec, skew_s)
    assert again == out  # deterministic


def test_horodates_of_unsorted_stamps_across_a_dst_change() -> None:
    change = 1_774_746_000  # 2026-03-29T01:00:00Z: Paris goes from +01:00 to +02:00
    ts = np.array([change + 5, change - 5, change - 3600, change, change - 1, change + 3600],
                  dtype=np.int64) * 1000
    one_by_one = [horodates(ts[k : k + 1], "Europe/Paris")[0] for k in range(len(ts))]
    assert horodates(ts, "Europe/Paris") == one_by_one == [
        "E260329030005", "H260329015955", "H260329010000", "E260329030000", "H260329015959",
        "E260329040000"]


@pytest.mark.parametrize("variant", JSON_MALFORMATIONS)
def test_json_malformations_are_rejected(population: list[HouseholdSpec], variant: str) -> None:
    spec = spec_where(population, tic_mode=None)
    raw = chunk_payloads(HouseholdSimulator(spec).render(WINTER, 1))[0][2]
    assert json_reading_ok(raw)
    assert not json_reading_ok(malform(raw, False, variant))


@pytest.mark.parametrize("variant", TIC_MALFORMATIONS)
def test_tic_malformations_are_rejected(population: list[HouseholdSpec], variant: str) -> None:
    spec = spec_where(population, tic_mode="standard")
    raw = chunk_payloads(HouseholdSimulator(spec).render(WINTER, 1))[0][2]
    bad = malform(raw, True, variant)
    with pytest.raises((msgspec.DecodeError, TicError)):
        parse_frame(TIC_DEC.decode(bad).frame)


def test_message_faults_rate_and_truth(population: list[HouseholdSpec]) -> None:
    spec = spec_where(population, tic_mode=None)
    mf = MessageFaults(rate=0.1, seed=3)
    raw = chunk_payloads(HouseholdSimulator(spec).render(WINTER, 1))[0][2]
    outs = [mf.apply(spec, 1000 * k, raw) for k in range(5000)]
    dup = sum(len(o) == 2 for o in outs)
    bad = sum(o[0] != raw for o in outs)
    assert dup == mf.counts["duplicate"] and bad == mf.counts["malformed"]
    assert 150 < dup < 350 and 150 < bad < 350
    assert len(mf.truth) == dup + bad
    assert {t["fault"] for t in mf.truth} == {"duplicate", "malformed"}


# --- REFIT replay -------------------------------------------------------------------------------

needs_refit = pytest.mark.skipif(not DEFAULT_DATA.is_dir(), reason="REFIT data not present")


@needs_refit
def test_refit_home_counter_and_payloads() -> None:
    paths = find_homes(DEFAULT_DATA, [5])
    assert len(paths) == 1
    home = load_home(paths[0])
    assert home.meter_id == "refit-m-05" and "kettle" in home.channels
    e = home.energy_wh
    dt = np.diff(home.ts_s)
    np.testing.assert_allclose(np.diff(e), home.power_w[1:] * dt / 3600)
    first = next(payloads(home, offset_ms=1_000))
    d = JSON_DEC.decode(first[2])
    assert first[1] == int(home.ts_s[0]) * 1000 + 1_000 == ts_ms_of(d.ts)
    assert d.channels is not None and set(d.channels) == set(home.channels)
    edges = truth_edges(DEFAULT_DATA, [home], offset_ms=0)
    assert edges and all(ev["household_id"] == "refit-hh-05" for ev in edges)
    assert sum(ev["state"] == "on" for ev in edges) == sum(ev["state"] == "off" for ev in edges)


def test_csv_of_the_same_shape(tmp_path: Path) -> None:
    p = tmp_path / "my_home.csv"
    p.write_text("timestamp_s,aggregate_watts,kettle_watts\n10,100,0\n16,2100,2000\n8,90,0\n")
    home = load_home(p)
    assert home.name == "my_home" and home.ts_s.tolist() == [8, 10, 16]
    np.testing.assert_allclose(home.energy_wh - 1e6, [0, 100 * 2 / 3600, 100 * 2 / 3600 +
                                                      2100 * 6 / 3600])

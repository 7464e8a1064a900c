"""Line-protocol builders: app.domain.lineproto."""

from __future__ import annotations

import math

import pytest

from app.domain import lineproto as lp
from app.domain.anomaly.alerts import AlertRecord, Evidence
from app.domain.nilm.model import ApplianceEvent, EnergyBreakdown
from app.domain.reading import Reading
from app.domain.windows import ClosedWindow

TS = 1_795_660_153_335


def make_reading(**kw: object) -> Reading:
    base: dict[str, object] = {"household_id": "hh-000123", "meter_id": "m-000123",
                               "ts_ms": TS, "power_w": 523.4}
    base.update(kw)
    return Reading(**base)  # type: ignore[arg-type]


def make_window(**kw: object) -> ClosedWindow:
    base: dict[str, object] = dict(
        household_id="hh-1", size="15m", start_ms=TS - TS % 900_000,
        end_ms=TS - TS % 900_000 + 900_000, energy_wh=120.5, mean_power_w=482.0,
        min_power_w=80.0, max_power_w=2100.0, readings=900, coverage=1.0, gap=False,
        counter_reset=False, estimated=False)
    base.update(kw)
    return ClosedWindow(**base)  # type: ignore[arg-type]


# --- escaping, checked against influxdb-client's Point ------------------------------------------
NAMES = ["plain", "with space", "comma,here", "eq=sign", "back\\slash", "new\nline",
         "tab\tchar", "quote\"d", "é-ünï-çødé", "a, =b"]


@pytest.mark.parametrize("value", NAMES)
def test_tag_and_measurement_escaping_matches_point(value: str) -> None:
    influxdb_client = pytest.importorskip("influxdb_client")
    point = (influxdb_client.Point(value).tag("household", value).tag(value, "x")
             .field(value, 1.5).field("s", value)
             .time(TS, influxdb_client.WritePrecision.MS))
    ours = lp.line(value, {"household": value, value: "x"}, {value: 1.5, "s": value}, TS)
    theirs = point.to_line_protocol()
    # Point sorts fields, ours keep the given order: same characters, same series key
    assert sorted(ours) == sorted(theirs)
    assert ours[:ours.index(" 1.5") if " 1.5" in ours else 0] == \
        theirs[:theirs.index(" 1.5") if " 1.5" in theirs else 0]


def test_trailing_backslash_cannot_escape_the_separator() -> None:
    # line protocol cannot carry a trailing backslash: a space is appended (InfluxDB then
    # stores "ends "), as Point does for tag values - Point leaves an escaped comma elsewhere
    assert lp.line("ends\\", {"k\\": "v\\"}, {"f\\": 1.0}, 1) == \
        "ends\\ ,k\\ =v\\  f\\ =1.0 1"


@pytest.mark.parametrize(("value", "text"), [
    ('say "hi"', '"say \\"hi\\""'),
    ("C:\\path", '"C:\\\\path"'),
    ("", '""'),
    (True, "true"),
    (False, "false"),
    (3, "3i"),
    (-7, "-7i"),
    (2.5, "2.5"),
    (500.0, "500.0"),
    (1e20, "1e+20"),
])
def test_field_values(value: object, text: str) -> None:
    assert lp.line("m", {"t": "x"}, {"f": value}, 1) == f"m,t=x f={text} 1"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_unstorable_fields_are_left_out(bad: object) -> None:
    assert lp.line("m", {"t": "x"}, {"a": bad, "b": 1.0}, 1) == "m,t=x b=1.0 1"
    with pytest.raises(ValueError, match="no storable field"):
        lp.line("m", {"t": "x"}, {"a": bad}, 1)


def test_empty_tags_are_left_out_and_tags_sorted() -> None:
    assert lp.line("m", {"z": "1", "a": "2", "e": "", "n": None}, {"f": 1.0}, 5) == \
        "m,a=2,z=1 f=1.0 5"


# --- readings ----------------------------------------------------------------------------------
def test_reading_minimal() -> None:
    assert lp.reading(make_reading()) == (
        f"reading,household=hh-000123,meter=m-000123,source=json power_w=523.4 {TS}")


def test_reading_full() -> None:
    r = make_reading(energy_wh=1234567.0, voltage_v=231.2, current_a=2.31, apparent_va=540.0,
                     tariff="HP", indexes_wh={"HP": 1000.0, "HC": 234567.0}, source="tic")
    assert lp.reading(r) == (
        "reading,household=hh-000123,meter=m-000123,source=tic power_w=523.4,"
        "energy_wh=1234567.0,voltage_v=231.2,current_a=2.31,apparent_va=540.0,tariff=\"HP\","
        f"index_HC_wh=234567.0,index_HP_wh=1000.0 {TS}")


def test_reading_with_every_number_one_f_string_or_field_by_field_alike() -> None:
    full = make_reading(energy_wh=1234567.0, voltage_v=231.2, current_a=2.31, apparent_va=540.0)
    assert lp.reading(full) == (
        "reading,household=hh-000123,meter=m-000123,source=json power_w=523.4,"
        f"energy_wh=1234567.0,voltage_v=231.2,current_a=2.31,apparent_va=540.0 {TS}")
    # one number missing or not finite: the field-by-field path leaves just that one out
    for name, bad in (("voltage_v", None), ("current_a", math.nan), ("apparent_va", math.inf)):
        fields = {"energy_wh": 1234567.0, "voltage_v": 231.2, "current_a": 2.31,
                  "apparent_va": 540.0, name: bad}
        line = lp.reading(make_reading(**fields))
        assert f"{name}=" not in line and "power_w=523.4,energy_wh=1234567.0" in line


def test_reading_skips_non_finite_and_refuses_empty() -> None:
    assert lp.reading(make_reading(power_w=math.nan, energy_wh=5.0)).endswith(
        f" energy_wh=5.0 {TS}")
    with pytest.raises(ValueError, match="no storable field"):
        lp.reading(make_reading(power_w=math.inf))
    with pytest.raises(ValueError, match="household"):
        lp.reading(make_reading(household_id=""))


def test_reading_escapes_ids() -> None:
    line = lp.reading(make_reading(household_id="hh 1,x=y", meter_id="m\\"))
    assert line.startswith("reading,household=hh\\ 1\\,x\\=y,meter=m\\ ,source=json ")


def test_channel_power() -> None:
    r = make_reading(channels_w={"kettle": 0.0, "fridge": 80.0, "bad": math.nan})
    assert lp.channel_power(r) == [
        f"channel_power,appliance=fridge,household=hh-000123,meter=m-000123 power_w=80.0 {TS}",
        f"channel_power,appliance=kettle,household=hh-000123,meter=m-000123 power_w=0.0 {TS}",
    ]
    assert lp.channel_power(make_reading()) == []


# --- windows -----------------------------------------------------------------------------------
def test_window_from_closed_window() -> None:
    w = make_window(gap=True, estimated=True, coverage=0.75)
    assert lp.window(w) == (
        f"power_15m,household=hh-1,size=15m energy_wh=120.5,mean_w=482.0,min_w=80.0,"
        f"max_w=2100.0,count=900i,coverage=0.75,end_ms={w.end_ms}i,gap=true,"
        f"counter_reset=false,estimated=true,flags=\"estimated,gap\" {w.start_ms}")


def test_window_from_mapping_with_short_names_and_flags_list() -> None:
    rec = {"household_id": "hh-1", "meter_id": "m-1", "size": "1m", "start_ms": 60_000,
           "end_ms": 120_000, "energy_wh": 1.5, "mean_w": 90.0, "min_w": None, "max_w": 100.0,
           "count": 60, "coverage": 1.0, "flags": ["counter_reset"]}
    assert lp.window(rec) == (
        "power_1m,household=hh-1,meter=m-1,size=1m energy_wh=1.5,mean_w=90.0,max_w=100.0,"
        "count=60i,coverage=1.0,end_ms=120000i,gap=false,counter_reset=true,estimated=false,"
        'flags="counter_reset" 60000')


@pytest.mark.parametrize("size", ["5m", "", "raw"])
def test_window_refuses_unknown_size(size: str) -> None:
    with pytest.raises(ValueError, match="window size"):
        lp.window(make_window(size=size))


@pytest.mark.parametrize(("size", "rp"), [("1m", "1m"), ("15m", "15m"), ("1h", "1h"),
                                          ("1d", "1d")])
def test_window_rp(size: str, rp: str) -> None:
    assert lp.window_rp(size) == rp


# --- NILM and alerts ---------------------------------------------------------------------------
def test_appliance_event() -> None:
    e = ApplianceEvent(household_id="hh-1", ts_ms=TS, appliance="kettle", state="off",
                       delta_w=-2000.0, confidence=0.9, cluster=3, duration_ms=120_000)
    assert lp.appliance_event(e) == (
        "appliance_event,appliance=kettle,household=hh-1,state=off delta_w=-2000.0,"
        f"confidence=0.9,cluster=3i,duration_ms=120000i {TS}")
    on = {"household_id": "hh-1", "ts_ms": TS, "appliance": "oven", "state": "on",
          "delta_w": 2500.0, "confidence": 1.0}
    assert lp.appliance_event(on) == (
        f"appliance_event,appliance=oven,household=hh-1,state=on delta_w=2500.0,"
        f"confidence=1.0 {TS}")


def test_appliance_energy() -> None:
    b = EnergyBreakdown(start_ms=0, end_ms=3_600_000, total_wh=1000.0,
                        measured_wh={"fridge": 80.0}, estimated_wh={"kettle": 150.0,
                                                                    "oven": 600.0},
                        residual_wh=170.0)
    assert lp.appliance_energy("hh-1", "1h", b) == [
        "appliance_energy,appliance=fridge,household=hh-1,kind=measured,size=1h "
        "energy_wh=80.0,end_ms=3600000i 0",
        "appliance_energy,appliance=kettle,household=hh-1,kind=estimated,size=1h "
        "energy_wh=150.0,end_ms=3600000i 0",
        "appliance_energy,appliance=oven,household=hh-1,kind=estimated,size=1h "
        "energy_wh=600.0,end_ms=3600000i 0",
        "appliance_energy,appliance=unidentified,household=hh-1,kind=residual,size=1h "
        "energy_wh=170.0,end_ms=3600000i 0",
    ]


def test_alert() -> None:
    a = AlertRecord(alert_id="abc", household_id="hh-1", meter_id="m-1", type="spike",
                    severity="warning", status="resolved", opened_at=TS, detected_at=TS + 5,
                    evidence=Evidence(observed=9000.0, baseline=500.0, threshold=6000.0,
                                      duration_ms=30_000, unit="W"),
                    resolved_at=TS + 60_000)
    assert lp.alert(a) == (
        "alert,household=hh-1,severity=warning,status=resolved,type=spike alert_id=\"abc\","
        "meter=\"m-1\",observed=9000.0,baseline=500.0,threshold=6000.0,unit=\"W\","
        f"duration_ms=30000i,detected_at={TS + 5}i,resolved_at={TS + 60_000}i {TS}")


# --- batches -----------------------------------------------------------------------------------
def test_line_batch_routes_by_retention_policy_and_collects_invalid() -> None:
    batch = lp.LineBatch()
    batch.add_reading(make_reading(channels_w={"fridge": 80.0}))
    batch.add_reading(make_reading(power_w=math.nan))  # nothing storable
    batch.add_window(make_window())
    batch.add_window(make_window(size="1d"))
    batch.add_window(make_window(size="7m"))
    batch.add_appliance_event({"household_id": "hh-1", "ts_ms": 1, "appliance": "oven",
                               "state": "on", "delta_w": 1.0, "confidence": 1.0})
    batch.add_alert({"household_id": "", "opened_at": 1})
    batch.add_appliance_energy("hh-1", "1h", {"start_ms": 0, "measured_wh": {"a": 1.0}})
    assert {rp: len(v) for rp, v in batch.by_rp.items()} == {
        "raw": 2, "15m": 1, "1d": 1, "events": 1, "1h": 1}
    assert len(batch) == 6
    assert len(batch.invalid) == 3
    assert [reason for _, reason in batch.invalid] == [
        "reading: no storable field",
        "unknown window size '7m' (expected one of ('1m', '15m', '1h', '1d'))",
        "record without household_id"]

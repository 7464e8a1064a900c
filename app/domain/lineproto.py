"""InfluxDB line protocol for wattflow's records (pure; timestamps in **ms**, write precision=ms).

One builder per record kind; each returns line-protocol text without a trailing newline and
raises ``ValueError`` when the record cannot make a valid point (no finite field, no household).
The retention policy a line goes to is part of the schema (see docs/influx.md):

=================  ======================  =========================================  =========
measurement        retention policy        tags                                       time
=================  ======================  =========================================  =========
reading            raw                     household, meter, source                   ts_ms
channel_power      raw                     household, meter, appliance                ts_ms
power_<size>       <size> (1m/15m/1h/1d)   household, size (+ meter when given)       start_ms
appliance_energy   <size>                  household, appliance, kind, size           start_ms
appliance_event    events                  household, appliance, state                ts_ms
alert              events                  household, type, status, severity          opened_at
=================  ======================  =========================================  =========

Records may be msgspec Structs, dataclasses or plain mappings: fields are read by name, and the
window builder accepts both the ``ClosedWindow`` names (``mean_power_w``, ``readings``, the
``gap``/``counter_reset``/``estimated`` booleans) and the short ones (``mean_w``, ``count``,
``flags`` list). Same series + same timestamp = same point, so a replay overwrites.

Escaping follows the line-protocol spec: commas and spaces in measurements; commas, equals
signs and spaces in tag keys, tag values and field keys (backslashes there are literal);
double quotes and backslashes in string field values. Newlines, tabs and carriage returns
in names become ``\\n``, ``\\t``, ``\\r`` (as influxdb-client's ``Point`` does) so one
record is always one line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

from app.domain.reading import Reading

__all__ = [
    "RP_EVENTS",
    "RP_RAW",
    "WINDOW_SIZES",
    "LineBatch",
    "alert",
    "appliance_energy",
    "appliance_event",
    "channel_power",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "line",
    "reading",
    "window",
    "window_rp",
]

RP_RAW: Final = "raw"
RP_EVENTS: Final = "events"
WINDOW_SIZES: Final[tuple[str, ...]] = ("1m", "15m", "1h", "1d")

_KEY = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=",
                      "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\t": "\\t", "\r": "\\r"})
_STR = str.maketrans({"\\": "\\\\", '"': '\\"'})
_SPECIAL_KEY = frozenset(", =\n\t\r")

_cache: dict[str, str] = {}
_CACHE_MAX = 200_000


def escape_key(s: str) -> str:
    """A tag key, tag value or field key, escaped (memoized: ids repeat on every point).

    Backslashes are literal in names (the spec escapes only ``,``, ``=`` and space). Line
    protocol cannot carry a *trailing* backslash (it would escape the separator): like
    influxdb-client's ``Point`` we append a space, so InfluxDB stores ``"id "`` for ``"id\\"``.
    """
    out = _cache.get(s)
    if out is None:
        out = s.translate(_KEY) if not _SPECIAL_KEY.isdisjoint(s) else s
        if out.endswith("\\"):
            out += " "
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[s] = out
    return out


def escape_measurement(s: str) -> str:
    out = s.translate(_MEAS)
    return out + " " if out.endswith("\\") else out


def escape_string(s: str) -> str:
    """A string field value, escaped (without the surrounding quotes)."""
    return s.translate(_STR)


def _fmt(value: object) -> str | None:
    """A field value in line protocol; None when it cannot be stored (None, NaN, inf)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.translate(_STR) + '"'
    raise ValueError(f"unsupported field value type {type(value).__name__}")


def line(measurement: str, tags: Mapping[str, str | None],
         fields: Mapping[str, object], ts_ms: int) -> str:
    """A generic point. Empty/None tags and unstorable fields are left out."""
    parts = [escape_measurement(measurement)]
    for k in sorted(tags):
        tv = tags[k]
        if tv:
            parts.append(f",{escape_key(k)}={escape_key(tv)}")
    fs = []
    for k, fv in fields.items():
        text = _fmt(fv)
        if text is not None:
            fs.append(f"{escape_key(k)}={text}")
    if not fs:
        raise ValueError(f"{measurement}: no storable field")
    return f"{''.join(parts)} {','.join(fs)} {int(ts_ms)}"


_MISSING: Final = object()


def _get(rec: object, *names: str, default: Any = None) -> Any:
    if isinstance(rec, Mapping):
        for n in names:
            if n in rec:
                return rec[n]
        return default
    for n in names:
        got: Any = getattr(rec, n, _MISSING)
        if got is not _MISSING:
            return got
    return default


def _num(v: object) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    f = float(v)  # type: ignore[arg-type]
    return f if math.isfinite(f) else None


def _household(rec: object) -> str:
    hh = _get(rec, "household_id", "household")
    if not hh:
        raise ValueError("record without household_id")
    return str(hh)


# --- readings ----------------------------------------------------------------------------------
_heads: dict[tuple[str, str, str], str] = {}


def _reading_head(household_id: str, meter_id: str, source: str) -> str:
    key = (household_id, meter_id, source)
    head = _heads.get(key)
    if head is None:
        head = (f"reading,household={escape_key(household_id)},meter={escape_key(meter_id)}"
                f",source={escape_key(source)} " if meter_id else
                f"reading,household={escape_key(household_id)},source={escape_key(source)} ")
        if len(_heads) >= _CACHE_MAX:
            _heads.clear()
        _heads[key] = head
    return head


def reading(r: Reading) -> str:
    """The ``reading`` point of a normalized reading (RP ``raw``)."""
    if not r.household_id:
        raise ValueError("record without household_id")
    head = _reading_head(r.household_id, r.meter_id, r.source)
    p, e, v, c, a = r.power_w, r.energy_wh, r.voltage_v, r.current_a, r.apparent_va
    if (  # the common JSON reading: every number present and finite, one f-string
        e is not None and v is not None and c is not None and a is not None
        and p - p == 0.0 and e - e == 0.0 and v - v == 0.0 and c - c == 0.0 and a - a == 0.0
        and not r.tariff and not r.indexes_wh
    ):
        return (f"{head}power_w={p!r},energy_wh={e!r},voltage_v={v!r},current_a={c!r},"
                f"apparent_va={a!r} {r.ts_ms}")
    fs: list[str] = []
    if p - p == 0.0:  # finite (NaN and infinities give NaN)
        fs.append(f"power_w={p!r}")
    v = r.energy_wh
    if v is not None and v - v == 0.0:
        fs.append(f"energy_wh={v!r}")
    v = r.voltage_v
    if v is not None and v - v == 0.0:
        fs.append(f"voltage_v={v!r}")
    v = r.current_a
    if v is not None and v - v == 0.0:
        fs.append(f"current_a={v!r}")
    v = r.apparent_va
    if v is not None and v - v == 0.0:
        fs.append(f"apparent_va={v!r}")
    if r.tariff:
        fs.append(f'tariff="{r.tariff.translate(_STR)}"')
    if r.indexes_wh:
        for label, wh in sorted(r.indexes_wh.items()):
            if math.isfinite(wh):
                fs.append(f"index_{escape_key(label)}_wh={float(wh)!r}")
    if not fs:
        raise ValueError("reading: no storable field")
    return f"{head}{','.join(fs)} {r.ts_ms}"


def _channel_head(household_id: str, meter_id: str, name: str) -> str:
    key = (household_id, meter_id, name)
    head = _channel_heads.get(key)
    if head is None:
        meter = f",meter={escape_key(meter_id)}" if meter_id else ""
        head = (f"channel_power,appliance={escape_key(name)},household={escape_key(household_id)}"
                f"{meter} power_w=")
        if len(_channel_heads) >= _CACHE_MAX:
            _channel_heads.clear()
        _channel_heads[key] = head
    return head


_channel_heads: dict[tuple[str, str, str], str] = {}


def channel_power(r: Reading) -> list[str]:
    """One ``channel_power`` point per sub-metered channel of a reading (RP ``raw``)."""
    if not r.channels_w:
        return []
    hh, meter, ts = r.household_id, r.meter_id, r.ts_ms
    return [f"{_channel_head(hh, meter, name)}{float(w)!r} {ts}"
            for name, w in sorted(r.channels_w.items()) if w - w == 0.0]


# --- windows -----------------------------------------------------------------------------------
def window_rp(size: str) -> str:
    """Retention policy of a window size (its own name)."""
    if size not in WINDOW_SIZES:
        raise ValueError(f"unknown window size {size!r} (expected one of {WINDOW_SIZES})")
    return size


def window(w: object) -> str:
    """The ``power_<size>`` point of a closed window (RP ``<size>``), time = window start."""
    size = str(_get(w, "size", default=""))
    window_rp(size)
    flags_list = _get(w, "flags")
    if isinstance(flags_list, str):
        flags = {f for f in flags_list.split(",") if f}
    elif isinstance(flags_list, Iterable):
        flags = {str(f) for f in flags_list}
    else:
        flags = set()
    for name in ("gap", "counter_reset", "estimated"):
        if _get(w, name) is True:
            flags.add(name)
    count = _get(w, "count", "readings")
    end_ms = _get(w, "end_ms")
    fields: dict[str, object] = {
        "energy_wh": _num(_get(w, "energy_wh")),
        "mean_w": _num(_get(w, "mean_w", "mean_power_w")),
        "min_w": _num(_get(w, "min_w", "min_power_w")),
        "max_w": _num(_get(w, "max_w", "max_power_w")),
        "count": None if count is None else int(count),
        "coverage": _num(_get(w, "coverage")),
        "end_ms": None if end_ms is None else int(end_ms),
        "gap": "gap" in flags,
        "counter_reset": "counter_reset" in flags,
        "estimated": "estimated" in flags,
        "flags": ",".join(sorted(flags)),
    }
    tags = {"household": _household(w), "size": size, "meter": _get(w, "meter_id")}
    return line(f"power_{size}", tags, fields, int(_get(w, "start_ms")))


# --- NILM --------------------------------------------------------------------------------------
def appliance_event(e: object) -> str:
    """The ``appliance_event`` point of one appliance switching on/off (RP ``events``)."""
    duration = _get(e, "duration_ms")
    cluster = _get(e, "cluster")
    fields: dict[str, object] = {
        "delta_w": _num(_get(e, "delta_w")),
        "confidence": _num(_get(e, "confidence")),
        "cluster": None if cluster is None else int(cluster),
        "duration_ms": None if duration is None else int(duration),
    }
    tags = {"household": _household(e), "appliance": str(_get(e, "appliance", default="")),
            "state": str(_get(e, "state", default=""))}
    return line("appliance_event", tags, fields, int(_get(e, "ts_ms")))


def appliance_energy(household_id: str, size: str, breakdown: object) -> list[str]:
    """``appliance_energy`` points of an energy breakdown over one window (RP ``<size>``).

    ``breakdown`` has ``start_ms``, ``end_ms``, ``measured_wh`` and ``estimated_wh`` (appliance
    -> Wh) and ``residual_wh`` (stored as appliance ``unidentified``, kind ``residual``).
    """
    window_rp(size)
    if not household_id:
        raise ValueError("record without household_id")
    start = int(_get(breakdown, "start_ms"))
    end_ms = _get(breakdown, "end_ms")
    end = None if end_ms is None else int(end_ms)
    out: list[str] = []
    for kind, key in (("measured", "measured_wh"), ("estimated", "estimated_wh")):
        per: Mapping[str, float] = _get(breakdown, key) or {}
        for appliance, wh in sorted(per.items()):
            v = _num(wh)
            if v is not None:
                out.append(line("appliance_energy",
                                {"household": household_id, "appliance": appliance,
                                 "kind": kind, "size": size},
                                {"energy_wh": v, "end_ms": end}, start))
    residual = _num(_get(breakdown, "residual_wh"))
    if residual is not None:
        out.append(line("appliance_energy",
                        {"household": household_id, "appliance": "unidentified",
                         "kind": "residual", "size": size},
                        {"energy_wh": residual, "end_ms": end}, start))
    return out


# --- anomalies ---------------------------------------------------------------------------------
def alert(a: object) -> str:
    """The ``alert`` point of an alert opening or resolving (RP ``events``), time = opened_at.

    The open and the resolved record of one alert are two points (tag ``status``).
    """
    ev = _get(a, "evidence") or {}
    detected = _get(a, "detected_at")
    resolved = _get(a, "resolved_at")
    duration = _get(ev, "duration_ms")
    fields: dict[str, object] = {
        "alert_id": str(_get(a, "alert_id", default="")),
        "meter": _get(a, "meter_id") or None,
        "observed": _num(_get(ev, "observed")),
        "baseline": _num(_get(ev, "baseline")),
        "threshold": _num(_get(ev, "threshold")),
        "unit": _get(ev, "unit") or None,
        "duration_ms": None if duration is None else int(duration),
        "detected_at": None if detected is None else int(detected),
        "resolved_at": None if resolved is None else int(resolved),
    }
    tags = {"household": _household(a), "type": str(_get(a, "type", default="")),
            "status": str(_get(a, "status", default="")),
            "severity": str(_get(a, "severity", default=""))}
    return line("alert", tags, fields, int(_get(a, "opened_at")))


# --- batches -----------------------------------------------------------------------------------
_BAD = (ValueError, TypeError, KeyError, AttributeError)
"""What a builder raises on a record of the wrong shape."""


class LineBatch:
    """Lines grouped by retention policy, ready for ``InfluxSink.write(batch.by_rp)``.

    Records that cannot become a point are collected in ``invalid`` (record, reason) instead
    of raising, so the caller can dead-letter them.
    """

    __slots__ = ("by_rp", "invalid")

    def __init__(self) -> None:
        self.by_rp: dict[str, list[str]] = {}
        self.invalid: list[tuple[object, str]] = []

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_rp.values())

    def _add(self, rp: str, lines: list[str]) -> None:
        if lines:
            self.by_rp.setdefault(rp, []).extend(lines)

    def add_reading(self, r: Reading) -> None:
        try:
            self._add(RP_RAW, [reading(r), *channel_power(r)])
        except _BAD as e:
            self.invalid.append((r, str(e)))

    def add_window(self, w: object) -> None:
        try:
            self._add(str(_get(w, "size")), [window(w)])
        except _BAD as e:
            self.invalid.append((w, str(e)))

    def add_appliance_event(self, e: object) -> None:
        try:
            self._add(RP_EVENTS, [appliance_event(e)])
        except _BAD as err:
            self.invalid.append((e, str(err)))

    def add_appliance_energy(self, household_id: str, size: str, breakdown: object) -> None:
        try:
            self._add(window_rp(size), appliance_energy(household_id, size, breakdown))
        except _BAD as e:
            self.invalid.append((breakdown, str(e)))

    def add_alert(self, a: object) -> None:
        try:
            self._add(RP_EVENTS, [alert(a)])
        except _BAD as e:
            self.invalid.append((a, str(e)))

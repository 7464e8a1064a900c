"""The InfluxDB database and its retention policies, provisioned idempotently.

    from app.services.influx_schema import provision
    provision(get_settings())   # CREATE DATABASE, then CREATE or ALTER each retention policy

One retention policy per resolution (``raw``, ``1m``, ``15m``, ``1h``, ``1d``) plus ``events``
(appliance events, alerts); durations come from settings (``influx_retention_*``). ``raw`` is
the database's default policy. No continuous queries: the downsampled series are written by
the stream processor from its own windows. Measurements and tags: docs/influx.md.
"""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.parse
import urllib.request

import orjson

from app.domain.resolution import parse_duration_ms
from app.settings import Settings

__all__ = ["ProvisionError", "provision", "retention_policies", "shard_duration"]

DEFAULT_RP = "raw"

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms|us|µs|ns)")
_GO_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1, "us": 1e-3, "µs": 1e-3,
               "ns": 1e-6}


class ProvisionError(RuntimeError):
    """InfluxDB refused a provisioning statement (message names it)."""


def retention_policies(settings: Settings) -> dict[str, str]:
    """Retention policy name -> duration (InfluxQL), from settings."""
    return {
        "raw": settings.influx_retention_raw,
        "1m": settings.influx_retention_1m,
        "15m": settings.influx_retention_15m,
        "1h": settings.influx_retention_1h,
        "1d": settings.influx_retention_1d,
        "events": settings.influx_retention_events,
    }


def shard_duration(duration: str) -> str:
    """Shard group duration for a retention duration: short shards for short retention."""
    ms = parse_duration_ms(duration)
    day = 86_400_000
    if ms == 0:
        return "52w"
    if ms < 2 * day:
        return "1h"
    if ms <= 180 * day:
        return "1d"
    if ms <= 3 * 365 * day:
        return "4w"
    return "52w"


def _go_duration_ms(text: str) -> int:
    return round(sum(float(v) * _GO_UNIT_MS[u] for v, u in _GO_DURATION.findall(text)))


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _query(settings: Settings, q: str, *, db: str | None = None) -> list[dict[str, object]]:
    params = {"q": q}
    if db:
        params["db"] = db
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(f"{settings.influx_http_url}/query", data=data, method="POST")
    auth = f"{settings.influx_user}:{settings.influx_password.get_secret_value()}"
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=settings.influx_timeout_s) as resp:
            doc = orjson.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise ProvisionError(f"{q!r}: HTTP {e.code} {e.read()[:300]!r}") from e
    results: list[dict[str, object]] = doc.get("results", [])
    for r in results:
        if "error" in r:
            raise ProvisionError(f"{q!r}: {r['error']}")
    return results


def _existing(settings: Settings, db: str) -> dict[str, tuple[int, int, bool]]:
    res = _query(settings, f"SHOW RETENTION POLICIES ON {_ident(db)}")
    out: dict[str, tuple[int, int, bool]] = {}
    for series in res[0].get("series", []) or []:  # type: ignore[attr-defined]
        cols = series["columns"]
        for row in series.get("values", []):
            rec = dict(zip(cols, row, strict=False))
            out[rec["name"]] = (_go_duration_ms(rec["duration"]),
                                _go_duration_ms(rec["shardGroupDuration"]), bool(rec["default"]))
    return out


def provision(settings: Settings) -> list[str]:
    """Create the database and create/alter its retention policies; return what it changed.

    Idempotent: a second run changes nothing (returns only the harmless CREATE DATABASE).
    Blocking (stdlib HTTP): call it from the setup command, or ``asyncio.to_thread``.
    """
    db = settings.influx_db
    done = [f"CREATE DATABASE {_ident(db)}"]
    _query(settings, done[0])
    have = _existing(settings, db)
    for rp, duration in retention_policies(settings).items():
        want_ms = parse_duration_ms(duration)
        shard = shard_duration(duration)
        want = (want_ms, parse_duration_ms(shard), rp == DEFAULT_RP)
        dur = "INF" if want_ms == 0 else duration
        default = " DEFAULT" if rp == DEFAULT_RP else ""
        if rp not in have:
            stmt = (f"CREATE RETENTION POLICY {_ident(rp)} ON {_ident(db)} DURATION {dur} "
                    f"REPLICATION 1 SHARD DURATION {shard}{default}")
        elif have[rp] != want and (have[rp][:2] != want[:2] or want[2]):
            stmt = (f"ALTER RETENTION POLICY {_ident(rp)} ON {_ident(db)} DURATION {dur} "
                    f"SHARD DURATION {shard}{default}")
        else:
            continue
        _query(settings, stmt)
        done.append(stmt)
    return done


def drop_database(settings: Settings) -> None:
    """Drop ``settings.influx_db`` (tests and benchmarks on their own databases)."""
    _query(settings, f"DROP DATABASE {_ident(settings.influx_db)}")

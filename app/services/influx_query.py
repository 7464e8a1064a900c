"""Read side of InfluxDB for the API: power, energy, appliance breakdown, anomalies.

    async with InfluxQuery(settings) as q:
        series = await q.power_series("hh-000123", start_ms, end_ms)   # resolution by range

Every value that comes from a caller (household id, alert type, appliance, time bounds) is a
**bound parameter** of an InfluxQL statement (``/query`` with ``params`` JSON: ``$household``),
never pasted into the query text; only identifiers this module owns (database, retention
policy, measurement names) are formatted in, quoted. Times are epoch ms in and out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import msgspec
import orjson

from app.domain.lineproto import WINDOW_SIZES
from app.domain.resolution import DEFAULT_MAX_POINTS, Resolution, choose, resolutions
from app.services.influx_schema import retention_policies
from app.services.lifecycle import Lifecycle
from app.settings import Settings, get_settings

__all__ = [
    "ApplianceEnergy",
    "EnergyPoint",
    "InfluxQuery",
    "InfluxQueryError",
    "PowerPoint",
    "PowerSeries",
    "Series",
]


class InfluxQueryError(Exception):
    """A query failed. ``retriable``: InfluxDB was unreachable or answered 5xx."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class Series(msgspec.Struct, frozen=True):
    """One series of an InfluxQL answer (``time`` in epoch ms)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, v, strict=False)) for v in self.values]


class PowerPoint(msgspec.Struct, frozen=True, array_like=True):
    ts_ms: int
    mean_w: float | None
    min_w: float | None
    max_w: float | None
    energy_wh: float | None = None
    """Window energy (None for raw readings)."""


class PowerSeries(msgspec.Struct, frozen=True):
    household_id: str
    resolution: str
    """``raw``, ``1m``, ``15m``, ``1h`` or ``1d``."""
    step_ms: int
    points: list[PowerPoint]


class EnergyPoint(msgspec.Struct, frozen=True):
    start_ms: int
    end_ms: int | None
    energy_wh: float
    coverage: float | None


class ApplianceEnergy(msgspec.Struct, frozen=True):
    appliance: str
    kind: str
    """``measured`` (sub-meter), ``estimated`` (NILM) or ``residual`` (unidentified)."""
    energy_wh: float


APPLIANCE_ENERGY_SIZES: tuple[str, ...] = ("15m", "1h", "1d")
"""Window sizes the stream processor writes ``appliance_energy`` for."""


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class InfluxQuery(Lifecycle):
    """The query layer (a lifecycle object holding one HTTP session)."""

    def __init__(self, settings: Settings | None = None, *,
                 max_points: int = DEFAULT_MAX_POINTS) -> None:
        self.settings = settings or get_settings()
        self.database = self.settings.influx_db
        self.max_points = max_points
        self.resolutions: tuple[Resolution, ...] = resolutions(
            {k: v for k, v in retention_policies(self.settings).items() if k != "events"})
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            s = self.settings
            self._session = aiohttp.ClientSession(
                base_url=s.influx_http_url,
                headers={"Authorization": "Basic " + base64.b64encode(
                    f"{s.influx_user}:{s.influx_password.get_secret_value()}".encode()).decode()},
                timeout=aiohttp.ClientTimeout(total=s.influx_timeout_s))

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- the raw call ---------------------------------------------------------------------------
    async def query(self, q: str, params: Mapping[str, object]) -> list[Series]:
        """Run one InfluxQL statement with bound ``$params``; times come back in epoch ms."""
        if self._session is None:
            raise InfluxQueryError("InfluxQuery used before start()")
        form = {"db": self.database, "q": q, "epoch": "ms",
                "params": orjson.dumps(dict(params)).decode()}
        try:
            async with self._session.post("/query", data=form) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise InfluxQueryError(f"InfluxDB unreachable: {e}", retriable=True) from e
        if status != 200:
            raise InfluxQueryError(f"HTTP {status}: {body[:300]!r}", retriable=status >= 500)
        doc = orjson.loads(body)
        out: list[Series] = []
        for result in doc.get("results", []):
            if "error" in result:
                raise InfluxQueryError(str(result["error"]))
            for s in result.get("series", []):
                out.append(Series(s.get("name", ""), s.get("tags") or {}, s["columns"],
                                  s.get("values") or []))
        return out

    def _from(self, rp: str, measurement: str) -> str:
        return f"{_ident(self.database)}.{_ident(rp)}.{_ident(measurement)}"

    @staticmethod
    def _range(household_id: str, start_ms: int, end_ms: int) -> dict[str, object]:
        return {"household": household_id, "start": int(start_ms) * 1_000_000,
                "end": int(end_ms) * 1_000_000}

    _WHERE = '"household" = $household AND time >= $start AND time < $end'

    def resolution_for(self, start_ms: int, end_ms: int, now_ms: int | None = None,
                       max_points: int | None = None, *, among: Sequence[str] = ()
                       ) -> Resolution:
        """The resolution a range is read at (rule: app.domain.resolution), optionally
        among some resolution names only."""
        avail = [r for r in self.resolutions if not among or r.name in among]
        return choose(start_ms, end_ms, _now_ms() if now_ms is None else now_ms, avail,
                      max_points or self.max_points)

    # --- API queries ----------------------------------------------------------------------------
    async def power_series(self, household_id: str, start_ms: int, end_ms: int, *,
                           now_ms: int | None = None, max_points: int | None = None
                           ) -> PowerSeries:
        """Power of a household over ``[start_ms, end_ms)`` at the resolution the range calls
        for (raw readings for short ranges, window means/min/max beyond)."""
        res = self.resolution_for(start_ms, end_ms, now_ms, max_points)
        src = self._from(res.rp, res.measurement)
        params = self._range(household_id, start_ms, end_ms)
        points: list[PowerPoint] = []
        if res.name == "raw":
            q = f'SELECT "power_w" FROM {src} WHERE {self._WHERE}'
            for s in await self.query(q, params):
                points.extend(PowerPoint(t, p, p, p) for t, p in s.values)
        else:
            q = (f'SELECT "mean_w", "min_w", "max_w", "energy_wh" FROM {src} '
                 f"WHERE {self._WHERE}")
            for s in await self.query(q, params):
                points.extend(PowerPoint(t, mean, lo, hi, e) for t, mean, lo, hi, e in s.values)
        points.sort(key=lambda p: p.ts_ms)
        return PowerSeries(household_id, res.name, res.step_ms, points)

    async def energy(self, household_id: str, start_ms: int, end_ms: int,
                     period: str = "1d") -> list[EnergyPoint]:
        """Energy per period (a window size: 1m, 15m, 1h, 1d - the day is the household's
        local day) for the windows starting in ``[start_ms, end_ms)``."""
        if period not in WINDOW_SIZES:
            raise ValueError(f"period must be one of {WINDOW_SIZES}, not {period!r}")
        src = self._from(period, "power_" + period)
        q = f'SELECT "energy_wh", "end_ms", "coverage" FROM {src} WHERE {self._WHERE}'
        out = [EnergyPoint(t, end, e, cov)
               for s in await self.query(q, self._range(household_id, start_ms, end_ms))
               for t, e, end, cov in s.values if e is not None]
        out.sort(key=lambda p: p.start_ms)
        return out

    async def energy_total(self, household_id: str, start_ms: int, end_ms: int, *,
                           now_ms: int | None = None) -> float:
        """Energy of the windows starting in the range, at the resolution the range calls for."""
        res = self.resolution_for(start_ms, end_ms, now_ms, among=WINDOW_SIZES)
        q = (f'SELECT sum("energy_wh") FROM {self._from(res.rp, res.measurement)} '
             f"WHERE {self._WHERE}")
        series = await self.query(q, self._range(household_id, start_ms, end_ms))
        return float(series[0].values[0][1]) if series and series[0].values else 0.0

    async def appliance_breakdown(self, household_id: str, start_ms: int, end_ms: int, *,
                                  now_ms: int | None = None) -> list[ApplianceEnergy]:
        """Energy per appliance (sub-metered, NILM-estimated, unidentified) over the range,
        from the ``appliance_energy`` points of the 15m, 1h or 1d series (by range)."""
        res = self.resolution_for(start_ms, end_ms, now_ms, among=APPLIANCE_ENERGY_SIZES)
        q = (f'SELECT sum("energy_wh") FROM {self._from(res.rp, "appliance_energy")} '
             f'WHERE {self._WHERE} GROUP BY "appliance", "kind"')
        out = [ApplianceEnergy(s.tags.get("appliance", ""), s.tags.get("kind", ""),
                               float(s.values[0][1]))
               for s in await self.query(q, self._range(household_id, start_ms, end_ms))
               if s.values]
        out.sort(key=lambda a: (-a.energy_wh, a.appliance))
        return out

    async def appliance_events(self, household_id: str, start_ms: int, end_ms: int, *,
                               appliance: str | None = None, limit: int = 10_000
                               ) -> list[dict[str, Any]]:
        """Appliance on/off events over the range, oldest first."""
        params = self._range(household_id, start_ms, end_ms)
        where = self._WHERE
        if appliance is not None:
            where += ' AND "appliance" = $appliance'
            params["appliance"] = appliance
        q = (f"SELECT * FROM {self._from('events', 'appliance_event')} WHERE {where} "
             f"LIMIT {int(limit)}")
        return [row for s in await self.query(q, params) for row in s.rows()]

    async def anomalies(self, household_id: str, start_ms: int, end_ms: int, *,
                        types: Sequence[str] = (), limit: int = 10_000
                        ) -> list[dict[str, Any]]:
        """Alert records (opened in the range), oldest first; optionally of some types."""
        params = self._range(household_id, start_ms, end_ms)
        where = self._WHERE
        if types:
            names = [f"type{i}" for i in range(len(types))]
            where += " AND (" + " OR ".join(f'"type" = ${n}' for n in names) + ")"
            params.update(zip(names, types, strict=True))
        q = f"SELECT * FROM {self._from('events', 'alert')} WHERE {where} LIMIT {int(limit)}"
        return [row for s in await self.query(q, params) for row in s.rows()]

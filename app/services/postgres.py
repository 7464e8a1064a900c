"""PostgreSQL: schema migrations and the meter registry (households, meters)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import asyncpg

from app.domain.registry import MeterInfo

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "sql"
_LOCK_ID = 0x57A77F10  # advisory lock: one migrator at a time


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply ``NNN_name.sql`` files not applied yet, each in its own transaction. Idempotent."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for path in sorted(directory.glob("*.sql")):  # noqa: ASYNC240 - a few small files
            if path.stem in done:
                continue
            sql = path.read_text()
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                                   path.stem)
            applied.append(path.stem)
            log.info("applied migration %s", path.stem)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)


async def load_registry(conn: asyncpg.Connection) -> dict[str, MeterInfo]:
    """Every active meter of a household not erased: meter id -> MeterInfo."""
    rows = await conn.fetch(
        "SELECT m.meter_id, m.household_id, m.max_power_w, m.exports, h.timezone"
        " FROM meters m JOIN households h USING (household_id)"
        " WHERE m.removed_at IS NULL AND h.erased_at IS NULL")
    return {r["meter_id"]: MeterInfo(r["household_id"], float(r["max_power_w"]), r["exports"],
                                     r["timezone"]) for r in rows}


async def register_meters(conn: asyncpg.Connection,
                          meters: Iterable[tuple[str, MeterInfo, str | None]]) -> int:
    """Upsert households and meters: ``(meter_id, MeterInfo, archetype)`` rows."""
    rows = list(meters)
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO households (household_id, timezone, archetype) VALUES ($1, $2, $3)"
            " ON CONFLICT (household_id) DO UPDATE SET timezone = EXCLUDED.timezone,"
            " archetype = COALESCE(EXCLUDED.archetype, households.archetype)",
            [(info.household_id, info.timezone, arch) for _, info, arch in rows])
        await conn.executemany(
            "INSERT INTO meters (meter_id, household_id, max_power_w, exports)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (meter_id) DO UPDATE SET"
            " household_id = EXCLUDED.household_id, max_power_w = EXCLUDED.max_power_w,"
            " exports = EXCLUDED.exports, removed_at = NULL",
            [(mid, info.household_id, info.max_power_w, info.exports) for mid, info, _ in rows])
    return len(rows)


class Registry(Mapping[str, MeterInfo]):
    """The meter registry as the ingest stage sees it: an in-memory snapshot of PostgreSQL,
    refreshed periodically and, rate-limited, when an unknown meter shows up."""

    def __init__(self, dsn: str, refresh_s: float) -> None:
        self.dsn = dsn
        self.refresh_s = refresh_s
        self._meters: dict[str, MeterInfo] = {}
        self._loaded_at = float("-inf")

    def __getitem__(self, key: str) -> MeterInfo:
        return self._meters[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._meters)

    def __len__(self) -> int:
        return len(self._meters)

    def get(self, key: str, default: MeterInfo | None = None) -> MeterInfo | None:  # type: ignore[override]
        return self._meters.get(key, default)

    @property
    def snapshot(self) -> Mapping[str, MeterInfo]:
        """The current snapshot itself (replaced, never changed, by :meth:`refresh`): what
        ingestion looks meters up in, once per reading, at a plain dict's speed."""
        return self._meters

    @property
    def stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.refresh_s

    async def refresh(self, *, min_age_s: float = 0.0) -> bool:
        if time.monotonic() - self._loaded_at < min_age_s:
            return False
        conn = await asyncpg.connect(self.dsn)
        try:
            self._meters = await load_registry(conn)
        finally:
            await conn.close()
        self._loaded_at = time.monotonic()
        return True

"""The PostgreSQL schema and meter registry against the real server."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from app.domain.registry import MeterInfo
from app.services.postgres import Registry, load_registry, migrate, register_meters
from app.settings import get_settings

pytestmark = pytest.mark.integration


async def test_migrations_are_idempotent_and_registry_round_trips(local_stack: None) -> None:
    s = get_settings()
    conn = await asyncpg.connect(s.postgres_dsn)
    try:
        await migrate(conn)
        assert await migrate(conn) == []  # second run applies nothing
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"households", "meters", "devices", "tariffs", "gdpr_requests",
                "consents", "schema_migrations"} <= tables

        tag = uuid.uuid4().hex[:8]
        meters = {f"pg-{tag}-m1": MeterInfo(f"pg-{tag}-h1", 6000.0, False, "Europe/Paris"),
                  f"pg-{tag}-m2": MeterInfo(f"pg-{tag}-h2", 12000.0, True, "Europe/London")}
        assert await register_meters(conn, [(m, i, "test") for m, i in meters.items()]) == 2
        loaded = await load_registry(conn)
        for m, info in meters.items():
            assert loaded[m] == info

        # an erased household's meters disappear from the registry (GDPR erasure)
        await conn.execute("UPDATE households SET erased_at = now() WHERE household_id = $1",
                           f"pg-{tag}-h1")
        reg = Registry(s.postgres_dsn, refresh_s=3600)
        assert reg.stale
        await reg.refresh()
        assert f"pg-{tag}-m1" not in reg
        assert reg[f"pg-{tag}-m2"] == meters[f"pg-{tag}-m2"]
        assert reg.get(f"pg-{tag}-m2") == reg.snapshot[f"pg-{tag}-m2"] == meters[f"pg-{tag}-m2"]
        assert reg.get(f"pg-{tag}-m1") is None and f"pg-{tag}-m1" not in reg.snapshot
        assert not reg.stale

        # constraints hold: a meter cannot carry a non-positive connection power
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO meters (meter_id, household_id, max_power_w)"
                               " VALUES ($1, $2, 0)", f"pg-{tag}-bad", f"pg-{tag}-h2")
    finally:
        await conn.close()

"""Register a simulated population in PostgreSQL, so ingestion knows its meters.

    python -m simulators.register --households 10000 --seed 1

The same ``--households``/``--seed`` as the load generator give the same meters.
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg

from app.services.postgres import register_meters
from app.settings import get_settings
from simulators.population import make_population, registry


async def register(households: int, seed: int) -> int:
    population = make_population(households, seed)
    reg = registry(population)
    archetype = {h.household_id: str(h.archetype) for h in population}
    conn = await asyncpg.connect(get_settings().postgres_dsn)
    try:
        return await register_meters(
            conn, [(mid, info, archetype.get(info.household_id)) for mid, info in reg.items()])
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulators.register", description=__doc__)
    ap.add_argument("--households", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n = asyncio.run(register(args.households, args.seed))
    print(f"[register] {n} meters registered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Create what the pipeline needs, idempotently: Kafka topics, InfluxDB database and retention
policies, the PostgreSQL schema.

    python -m app.setup            # everything
    python -m app.setup kafka      # only the topics (also: influxdb, postgresql)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from app.settings import Settings, get_settings
from app.topics import topic_specs

log = logging.getLogger("wattflow.setup")


async def create_topics(s: Settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_servers, client_id="wattflow-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = topic_specs(s)
        new = [NewTopic(t.name, t.partitions, s.replication_factor, topic_configs=t.config)
               for t in specs if t.name not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently: fine
                await admin.create_topics(new)
        # keep retention/cleanup of existing topics as declared
        old = [t for t in specs if t.name in existing and t.config]
        if old:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.name,
                                                      configs=t.config) for t in old])
        return [t.name for t in new]
    finally:
        await admin.close()


async def setup_postgres(s: Settings) -> list[str]:
    from app.services.postgres import migrate

    conn = await asyncpg.connect(s.postgres_dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def setup_influx(s: Settings) -> None:
    from app.services.influx_schema import provision

    await asyncio.to_thread(provision, s)


async def run(parts: Sequence[str], s: Settings) -> None:
    if "kafka" in parts:
        created = await create_topics(s)
        print(f"[setup] kafka topics: {len(created)} created", file=sys.stderr)
    if "influxdb" in parts:
        await setup_influx(s)
        print(f"[setup] influxdb: database {s.influx_db!r} and retention policies ok",
              file=sys.stderr)
    if "postgresql" in parts:
        applied = await setup_postgres(s)
        print(f"[setup] postgresql: {len(applied)} migrations applied", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.setup", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", default=["kafka", "influxdb", "postgresql"])
    args = ap.parse_args(argv)
    asyncio.run(run(args.parts or ["kafka", "influxdb", "postgresql"], get_settings()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

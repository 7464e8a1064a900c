"""Fixtures for tests against the real local stack (Kafka, InfluxDB, PostgreSQL, Prometheus).

Each test gets an isolated world: its own Faust app id, topics, InfluxDB database and worker
state directory, so tests never see each other's data. Workers run as real subprocesses
(``faust -A app.worker worker``), exactly as the Procfile starts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from app import stack
from app.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SCRAPED_METRICS_PORT = int(get_settings().metrics_ports_scraped.split(",")[-1])
"""A port the local Prometheus scrapes (the last of settings.metrics_ports_scraped), kept for
tests; the first is the default worker's."""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def local_stack() -> None:
    """Start (or find running) the real servers; failure to start fails the tests."""
    stack.up()


@dataclass
class World:
    """An isolated slice of the stack for one test."""

    name: str
    env: dict[str, str]
    settings: Settings
    tmp: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # --- processes ----------------------------------------------------------------------------
    def start_worker(self, *, index: int = 0, metrics_port: int | None = None,
                     loop: str = "uvloop") -> subprocess.Popen[bytes]:
        env = dict(self.env)
        env["WATTFLOW_WORKER_DATADIR"] = str(self.tmp / f"worker{index}")
        env["WATTFLOW_METRICS_PORT"] = str(metrics_port or _free_port())
        faust = Path(sys.executable).with_name("faust")
        with (self.tmp / f"worker{index}.log").open("ab") as log:
            proc = subprocess.Popen([str(faust), "-L", loop, "-A", "app.worker", "worker",
                                     "--without-web", "-l", "info"], cwd=REPO, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        proc.metrics_port = int(env["WATTFLOW_METRICS_PORT"])  # type: ignore[attr-defined]
        proc.log_path = self.tmp / f"worker{index}.log"  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
        url = f"http://127.0.0.1:{proc.metrics_port}/metrics"  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"worker died: {self.log_tail(proc)}"
            if stack.http_status(url) == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"worker not ready: {self.log_tail(proc)}")

    def log_tail(self, proc: subprocess.Popen[bytes], n: int = 40) -> str:
        path: Path = proc.log_path  # type: ignore[attr-defined]
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                self.kill(p, signal.SIGTERM)

    def metrics(self, proc: subprocess.Popen[bytes]) -> dict[str, float]:
        """The worker's Prometheus metrics, summed over labels by name."""
        import urllib.request

        url = f"http://127.0.0.1:{proc.metrics_port}/metrics"  # type: ignore[attr-defined]
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name_labels, _, value = line.rpartition(" ")
            out[name_labels] = float(value)
            name = name_labels.split("{", 1)[0]
            if "{" in name_labels:
                out[name] = out.get(name, 0.0) + float(value)
        return out

    # --- setup / data -------------------------------------------------------------------------
    def setup(self) -> None:
        subprocess.run([sys.executable, "-m", "app.setup"], cwd=REPO, env=self.env, check=True)

    def register(self, households: int, seed: int) -> None:
        subprocess.run([sys.executable, "-m", "simulators.register", "--households",
                        str(households), "--seed", str(seed)], cwd=REPO, env=self.env,
                       check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def world(local_stack: None, tmp_path: Path) -> Iterator[World]:
    name = f"t{uuid.uuid4().hex[:10]}"
    env = dict(os.environ)
    overrides = {
        "WATTFLOW_APP_ID": f"wattflow-{name}",
        "WATTFLOW_TOPIC_RAW_JSON": f"{name}.raw.json",
        "WATTFLOW_TOPIC_RAW_TIC": f"{name}.raw.tic",
        "WATTFLOW_TOPIC_READINGS": f"{name}.readings",
        "WATTFLOW_TOPIC_DEADLETTER": f"{name}.deadletter",
        "WATTFLOW_TOPIC_LATE": f"{name}.late",
        "WATTFLOW_TOPIC_WINDOWS_PREFIX": f"{name}.windows.",
        "WATTFLOW_TOPIC_ALERTS": f"{name}.alerts",
        "WATTFLOW_TOPIC_APPLIANCE_EVENTS": f"{name}.appliance.events",
        "WATTFLOW_TOPIC_APPLIANCE_ENERGY": f"{name}.appliance.energy",
        "WATTFLOW_INFLUX_DB": f"wattflow_{name}",
        "WATTFLOW_STATE_DIR": str(Path.cwd() / "var"),
        "WATTFLOW_CHECKPOINT_INTERVAL_S": "2.0",
        "WATTFLOW_BATCH_WITHIN_S": "0.2",
    }
    env.update(overrides)
    settings = Settings(**{k.removeprefix("WATTFLOW_").lower(): v for k, v in overrides.items()})
    w = World(name, env, settings, tmp_path)
    w.setup()
    try:
        yield w
    finally:
        w.stop_all()
        asyncio.run(_drop(settings))


async def _drop(s: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_servers)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if s.app_id in t or
                  t.startswith(s.topic_raw_json.split(".")[0] + ".")]
        if topics:
            await admin.delete_topics(topics)
    finally:
        await admin.close()
    import urllib.parse
    import urllib.request

    body = urllib.parse.urlencode({"q": f'DROP DATABASE "{s.influx_db}"'}).encode()
    req = urllib.request.Request(
        f"{s.influx_http_url}/query?u={s.influx_user}&p={s.influx_password.get_secret_value()}",
        data=body, method="POST")
    with contextlib.suppress(OSError):
        urllib.request.urlopen(req, timeout=10).close()  # noqa: ASYNC210 - teardown


# --- Kafka helpers ------------------------------------------------------------------------------
async def produce(s: Settings, topic: str, records: list[tuple[bytes | None, bytes]],
                  timestamps_ms: list[int] | None = None) -> None:
    """Produce records; ``timestamps_ms`` sets each record's Kafka timestamp (the time the
    node's message reached the broker), for replays of past event time."""
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_servers, linger_ms=5,
                                max_batch_size=1_048_576)
    await producer.start()
    try:
        stamps = timestamps_ms or [None] * len(records)
        futs = [await producer.send(topic, value=v, key=k, timestamp_ms=t)
                for (k, v), t in zip(records, stamps, strict=True)]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def consume_all(s: Settings, topic: str, *, idle_s: float = 3.0,
                      timeout_s: float = 120.0, expect: int | None = None) -> list[bytes]:
    """Every value in ``topic`` from the start, until ``expect`` values arrived (or none for
    ``idle_s``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        assert topic in await consumer.topics(), f"topic {topic} does not exist"
        consumer.subscribe([topic])  # no group: every partition, from the earliest offset
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            got = [m.value for msgs in batch.values() for m in msgs]
            if got:
                out.extend(got)
                last = time.monotonic()
            if expect is not None and len(out) >= expect:
                break
            if expect is None and time.monotonic() - last > idle_s:
                break
        return out
    finally:
        await consumer.stop()


def prom_query(expr: str) -> list[dict[str, Any]]:
    """An instant query against the local Prometheus's HTTP API."""
    import urllib.parse
    import urllib.request

    import orjson

    s = get_settings()
    url = (f"http://{s.host}:{s.prometheus_port}/api/v1/query?"
           + urllib.parse.urlencode({"query": expr}))
    with urllib.request.urlopen(url, timeout=5) as r:
        body = orjson.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


async def pg_connect(s: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(s.postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()

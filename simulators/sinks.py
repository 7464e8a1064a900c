"""Where simulators put their payloads: Kafka (aiokafka), a JSONL file, memory, or nowhere.

A sink is started and stopped once (``async with``); :meth:`send` never waits for the broker's
acknowledgement: delivery results are counted by callbacks (``acked``, ``errors``), so the
caller's pacing is not tied to round trips. Back-pressure comes from the producer buffer
(``send`` waits when it is full).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson


class Sink:
    """Counts what is sent; subclasses deliver it. The base class drops everything."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.errors = 0
        self.bytes = 0
        self.error_kinds: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked - self.errors

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1
        self.acked += 1
        self.bytes += len(value)

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


NullSink = Sink


class MemorySink(Sink):
    """Keeps ``(topic, key, value)`` records: for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await super().send(topic, key, value)
        self.records.append((topic, key, value))


class FileSink(Sink):
    """Writes one JSON line per record: ``{"topic", "key", "value"}`` (value as text)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._fh: Any = None

    async def start(self) -> None:
        self._fh = self.path.open("wb")

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        await super().send(topic, key, value)
        self._fh.write(orjson.dumps({"topic": topic, "key": key.decode(),
                                     "value": value.decode("utf-8", "replace")}) + b"\n")

    async def stop(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def compressions() -> tuple[str, ...]:
    """Compression codecs aiokafka can use in this environment (lz4/zstd/snappy need cramjam)."""
    from aiokafka import codec

    out = ["none", "gzip"]
    for name, ok in (("lz4", codec.has_lz4()), ("zstd", codec.has_zstd()),
                     ("snappy", codec.has_snappy())):
        if ok:
            out.append(name)
    return tuple(out)


class KafkaSink(Sink):
    """aiokafka producer: batched by ``linger_ms``/``max_batch_size``, acks counted by callback."""

    def __init__(self, bootstrap: str, *, linger_ms: int = 20, max_batch_size: int = 262_144,
                 compression: str = "none", acks: int | str = 1,
                 max_request_size: int = 1_048_576) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_size,
            "compression_type": None if compression == "none" else compression,
            "acks": acks,
            "max_request_size": max_request_size,
            "enable_idempotence": False,
            "client_id": "wattflow-loadgen",
        }
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(**self._config)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            try:
                await self._producer.flush()
            finally:
                await self._producer.stop()
                self._producer = None

    async def flush(self) -> None:
        if self._producer is not None:
            await self._producer.flush()

    def _done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.errors += 1
            self.error_kinds["cancelled"] += 1
            return
        exc = fut.exception()
        if exc is None:
            self.acked += 1
        else:
            self.errors += 1
            self.error_kinds[type(exc).__name__] += 1

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent += 1
        self.bytes += len(value)
        try:
            fut = await self._producer.send(topic, value=value, key=key)
        except Exception as exc:  # noqa: BLE001 - counted as a produce error, the run goes on
            self.errors += 1
            self.error_kinds[type(exc).__name__] += 1
            return
        fut.add_done_callback(self._done)

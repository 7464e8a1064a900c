"""Agent-tier fixtures: the agents' batch functions run against in-memory stand-ins for Kafka
topics and Faust tables (no broker). What reaches Kafka and the tables is captured."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class FakeMessage:
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None = None


@dataclass
class FakeEvent:
    message: FakeMessage


class FakeTable(dict):  # type: ignore[type-arg]
    """A Faust table stand-in: records under which partition each write was filed."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: dict[bytes, int] = {}
        self.writes = 0

    def __setitem__(self, key: bytes, value: bytes) -> None:
        from faust.streams import current_event

        ev = current_event()
        assert ev is not None, "table written outside an event/partition context"
        self.partitions[key] = ev.message.partition
        self.writes += 1
        super().__setitem__(key, value)


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    partition: int | None
    timestamp: float | None


@dataclass
class Capture:
    sent: dict[str, list[Sent]] = field(default_factory=lambda: defaultdict(list))

    def patch_topic(self, monkeypatch: pytest.MonkeyPatch, topic: Any) -> None:
        name = topic.get_topic_name()

        async def send(*, key: Any = None, value: Any = None, partition: Any = None,
                       timestamp: Any = None, **_: Any) -> None:
            self.sent[name].append(Sent(key, value, partition, timestamp))

        monkeypatch.setattr(topic, "send", send)

    def patch_producer(self, monkeypatch: pytest.MonkeyPatch, producer: Any) -> None:
        """Capture ``producer.send(topic, key, value, partition, timestamp, headers)``."""

        async def send(topic: str, key: Any, value: Any, partition: Any, timestamp: Any,
                       headers: Any, **_: Any) -> None:
            self.sent[topic].append(Sent(key, value, partition, timestamp))

        monkeypatch.setattr(producer, "send", send)


class FakeStream:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> bool:
        self.acked.append(event)
        return True


@pytest.fixture
def capture() -> Capture:
    return Capture()

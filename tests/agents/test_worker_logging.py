"""The worker undoes the DEBUG root level Faust's terminal spinner sets at ``-l warn``."""

from __future__ import annotations

import logging

import pytest
from faust.utils.terminal import SpinnerHandler

from app.worker import quiet_root_logger


async def test_root_logger_back_to_the_handlers_level(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    level = root.level
    root.setLevel(logging.DEBUG)  # as Faust's spinner leaves it (setLevel clears level caches)
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    stream = logging.StreamHandler()
    stream.setLevel(logging.WARNING)
    root.addHandler(stream)
    root.addHandler(SpinnerHandler(None, level=logging.DEBUG))  # type: ignore[arg-type]
    assert logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    await quiet_root_logger()
    assert root.handlers == [stream]
    assert root.level == logging.WARNING
    assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
    root.setLevel(level)

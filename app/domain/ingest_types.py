"""Data types of :mod:`app.domain.ingest`: its input record, dead letters and result.

They live apart from the ingestion loop so that the loop can be compiled with mypyc (see
``scripts/build_native.py``) while these stay plain Python classes, which mypyc would change:
it drops the keywords of a class statement (``frozen=True``, ``omit_defaults=True`` of a
msgspec Struct would silently be lost), and a compiled class cannot be subclassed by
interpreted code. Import them from :mod:`app.domain.ingest`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from app.domain.ingest_validate import CounterReset, Reason
from app.domain.reading import Reading

__all__ = ["DeadLetter", "IngestResult", "RawRecord"]


class RawRecord(msgspec.Struct, frozen=True):
    """One Kafka record as the agent received it."""

    value: bytes
    topic: str
    partition: int
    offset: int
    received_ms: int
    """Kafka record timestamp (epoch ms): the reference for ``ts_future`` / ``ts_too_old``."""


class DeadLetter(msgspec.Struct, frozen=True, omit_defaults=True):
    """A rejected record or batch element, JSON-encodable for the dead-letter topic."""

    reason: Reason
    detail: str
    topic: str
    partition: int
    offset: int
    raw: bytes
    """The element's bytes (array element) or the record's bytes; base64 in JSON."""
    received_ms: int
    rejected_ms: int
    index: int | None = None
    """Position in the record's JSON array, ``None`` when the whole record is rejected."""
    meter_id: str = ""
    """Meter id when known at rejection time."""


@dataclass(slots=True)
class IngestResult:
    """Outcome of one batch (the new per-meter state is in the caller's :class:`MeterStore`)."""

    readings: list[Reading] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    counter_resets: list[CounterReset] = field(default_factory=list)
    """Accepted readings whose energy counter restarted (also present in ``readings``)."""
    per_record: list[tuple[int, int, int]] = field(default_factory=list)
    """``(valid, duplicate, dead)`` per input record, in input order."""
    implausible: list[Reading] = field(default_factory=list)
    """Dead-lettered readings whose power is beyond the connection (also in ``dead``), as
    readings flagged ``implausible``: forwarded for spike detection only."""

    @property
    def elements(self) -> int:
        """Readings contained in the input, by the accounting unit of the module doc."""
        return sum(v + d + x for v, d, x in self.per_record)

    def balanced(self) -> bool:
        """The accounting invariant: tallies match the outputs and every record is counted."""
        return (
            sum(t[0] for t in self.per_record) == len(self.readings)
            and sum(t[1] for t in self.per_record) == self.duplicates
            and sum(t[2] for t in self.per_record) == len(self.dead)
            and all(sum(t) >= 1 for t in self.per_record)
        )

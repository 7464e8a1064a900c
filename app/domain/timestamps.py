"""RFC 3339 timestamps to epoch milliseconds, fast.

A timestamp is split into its seconds part ``YYYY-MM-DDTHH:MM:SS`` and its suffix
``[.fraction](Z|+hh:mm|-hh:mm)``. Each part is validated once and memoized: the seconds part
repeats across the many meters reporting in the same second, the suffix takes at most a few
thousand values (milliseconds x offsets). Any valid seconds part combined with any valid
suffix is a valid RFC 3339 timestamp, so the memo never accepts what a full parse would refuse.

Accepted: ``T``/``t``/space separator, 1-9 fraction digits (truncated to the millisecond),
``Z``/``z`` or a numeric offset. Refused: no offset (naive), out-of-range fields, leap second
``:60``, anything else.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_SECONDS_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}\Z")
_SUFFIX_RE: Final = re.compile(r"(?:\.([0-9]{1,9}))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z")


class TimestampParser:
    """Memoized RFC 3339 parser; ``seconds`` and ``suffix`` are public for inlined hot loops:
    ``seconds.get(s[:19]) + suffix.get(s[19:])`` is the epoch ms when both are present."""

    __slots__ = ("max_entries", "seconds", "suffix")

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self.seconds: dict[str, int] = {}
        """Seconds part -> epoch ms of that second (UTC, before the offset)."""
        self.suffix: dict[str, int] = {}
        """Suffix -> milliseconds to add: fraction minus offset."""

    def parse(self, text: str) -> int | None:
        """Epoch milliseconds, or ``None`` when ``text`` is not RFC 3339 with an offset."""
        head, tail = text[:19], text[19:]
        base = self.seconds.get(head)
        if base is None:
            base = self._seconds(head)
            if base is None:
                return None
        add = self.suffix.get(tail)
        if add is None:
            add = self._suffix(tail)
            if add is None:
                return None
        return base + add

    def _seconds(self, head: str) -> int | None:
        if _SECONDS_RE.match(head) is None:
            return None
        try:
            dt = datetime(
                int(head[0:4]),
                int(head[5:7]),
                int(head[8:10]),
                int(head[11:13]),
                int(head[14:16]),
                int(head[17:19]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
        ms = (dt - _EPOCH) // _MS
        if len(self.seconds) >= self.max_entries:
            self.seconds.clear()
        self.seconds[head] = ms
        return ms

    def _suffix(self, tail: str) -> int | None:
        m = _SUFFIX_RE.match(tail)
        if m is None:
            return None
        fraction, sign, hh, mm = m.groups()
        add = int(fraction[:3].ljust(3, "0")) if fraction else 0
        if sign is not None:
            hours, minutes = int(hh), int(mm)
            if hours > 23 or minutes > 59:
                return None
            offset = (hours * 60 + minutes) * 60_000
            add += -offset if sign == "+" else offset
        if len(self.suffix) >= self.max_entries:
            self.suffix.clear()
        self.suffix[tail] = add
        return add


TIMESTAMPS: Final = TimestampParser()
"""Process-wide memo (pure: it only caches a deterministic function)."""


def parse_rfc3339_ms(text: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 timestamp with offset, else ``None``."""
    return TIMESTAMPS.parse(text)

"""Wire shapes of the raw meter payloads, as typed msgspec Structs (see docs/ingest.md).

These are the *input* schemas of ingestion, decoded with ``msgspec.json.Decoder(type=...)`` so
that type checking happens in C while parsing. They live in the pure core because
:mod:`app.domain.ingest` needs them; :mod:`models.payloads` re-exports them for the wiring layer.

Unknown fields are ignored (msgspec's default), so producers may add fields without breaking
ingestion. The ids default to ``""`` so that a missing id is reported as ``unknown_id`` by the
validator rather than as a generic schema violation. ``ts`` stays a string here: the
memoized parser in :mod:`app.domain.timestamps` is several times faster than building an
aware ``datetime`` per reading and then converting it to epoch milliseconds.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal, cast

import msgspec

SUPPORTED_JSON_VERSIONS: frozenset[int] = frozenset({1})
SUPPORTED_TIC_VERSIONS: frozenset[int] = frozenset({1})


class JsonReadingV1(msgspec.Struct, frozen=True):
    """One reading published by an IoT node on ``meter.raw.json`` (schema ``v: 1``)."""

    v: int
    ts: str
    """RFC 3339 with an explicit offset; parsed by :mod:`app.domain.timestamps`."""
    power_w: float
    device_id: str = ""
    meter_id: str = ""
    household_id: str = ""
    energy_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    apparent_va: float | None = None
    channels: dict[str, float] | None = None
    fw: str | None = None


@lru_cache(maxsize=8)
def checked_json_reading(
    voltage_min_v: float, voltage_max_v: float, max_current_a: float
) -> type[JsonReadingV1]:
    """A subclass of :class:`JsonReadingV1` that also enforces, while decoding (in C), the
    bounds that do not depend on the meter: ``v == 1``, a non-empty ``device_id``, voltage and
    current limits, and non-negative energy, apparent power and channels.

    It accepts a subset of what :class:`JsonReadingV1` accepts, and everything it refuses is
    refused by ingestion too, for some reason: a failed decode only sends the record to the
    reference path, which decodes with :class:`JsonReadingV1` and tells the exact reason (and
    the rule order: a duplicate with a bad voltage is still a duplicate).
    """
    volts = msgspec.Meta(ge=voltage_min_v, le=voltage_max_v)
    amps = msgspec.Meta(ge=-max_current_a, le=max_current_a)
    non_negative = msgspec.Meta(ge=0.0)
    checked = msgspec.defstruct(
        "JsonReadingV1Checked",
        [
            ("v", Literal[1]),
            ("device_id", Annotated[str, msgspec.Meta(min_length=1)]),
            ("energy_wh", Annotated[float, non_negative] | None, None),
            ("voltage_v", Annotated[float, volts] | None, None),
            ("current_a", Annotated[float, amps] | None, None),
            ("apparent_va", Annotated[float, non_negative] | None, None),
            ("channels", dict[str, Annotated[float, non_negative]] | None, None),
        ],
        bases=(JsonReadingV1,),
        frozen=True,
        gc=False,  # short-lived, holds no cycles
        module=__name__,
    )
    return cast(type[JsonReadingV1], checked)


class TicEnvelopeV1(msgspec.Struct, frozen=True):
    """A Linky TIC frame wrapped by the node that read it, on ``meter.raw.tic`` (``v: 1``).

    ``frame`` is the TIC text (STX, groups, ETX); ``ts`` is the node's reading time, used as
    event time (historique frames carry no date at all).
    """

    v: int
    ts: str
    frame: str
    device_id: str = ""


class VersionProbe(msgspec.Struct, frozen=True):
    """Just the version field: used on the slow path to tell a future version from bad data."""

    v: object = None

"""Linky TIC (télé-information client) frames: parse, verify, normalize, and build.

Reference: Enedis-NOI-CPT_54E, "Sorties de télé-information client des appareils de comptage
Linky". A frame is ``STX group* ETX`` and every group is ``LF label SEP data SEP checksum CR``.

*historique* mode (1200 baud, legacy "CBE" labels ``ADCO``, ``PAPP``...)
    ``SEP`` is SP (0x20). The checksum is computed on ``label SP data`` and **excludes** the
    separator before the checksum.
*standard* mode (9600 baud, labels ``ADSC``, ``SINSTS``...)
    ``SEP`` is HT (0x09) and a group may carry a horodate: ``label HT horodate HT data HT cks``.
    The checksum covers everything from the label up to and **including** the HT before it.

In both modes ``checksum = (sum(bytes) & 0x3F) + 0x20``, a printable character in
``0x20..0x5F`` — which can itself be SP, so groups are split by position, never by a naive
``split(" ")``.

:func:`parse_frame` checks every group (a single bad checksum rejects the frame: a reading
is all or nothing), :func:`measures` maps a frame to the quantities of a normalized reading,
and :func:`build_frame_historique` / :func:`build_frame_standard` produce valid frames for
simulators and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

import msgspec

STX: Final = "\x02"
ETX: Final = "\x03"
EOT: Final = "\x04"
_SP: Final = 0x20
_HT: Final = 0x09
_LF: Final = 0x0A

TicMode = Literal["historique", "standard"]
TicReason = Literal["not_decodable", "schema_violation", "bad_checksum"]

HISTORIQUE_INDEX_LABELS: Final[tuple[str, ...]] = (
    "BASE",
    "HCHC",
    "HCHP",
    "EJPHN",
    "EJPHPM",
    "BBRHCJB",
    "BBRHPJB",
    "BBRHCJW",
    "BBRHPJW",
    "BBRHCJR",
    "BBRHPJR",
)
"""Historique energy indexes (Wh, 9 digits), by tariff option: Base, HC, EJP, Tempo (BBR)."""

STANDARD_INDEX_LABELS: Final[tuple[str, ...]] = tuple(f"EASF{i:02d}" for i in range(1, 11))
"""Standard-mode supplier indexes (Wh, 9 digits), one per supplier tariff period."""


class TicError(ValueError):
    """A frame that cannot become a reading; ``reason`` is an ingestion reason code."""

    def __init__(self, reason: TicReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: TicReason = reason
        self.detail = detail


class TicFrame(msgspec.Struct, frozen=True):
    """A checksum-verified frame: data by label, and horodates by label (standard mode)."""

    mode: TicMode
    groups: dict[str, str]
    horodates: dict[str, str] = msgspec.field(default_factory=dict)


class TicMeasures(msgspec.Struct, frozen=True):
    """What a frame says, in the units of :class:`app.domain.reading.Reading`."""

    meter_id: str
    """``ADCO`` (historique) or ``ADSC`` (standard); ``""`` when the frame has none."""
    power_w: float
    """Apparent power (VA) as the best available power figure: ``PAPP`` or ``SINSTS``
    (minus ``SINSTI``, the injected apparent power, when a producer meter reports it)."""
    apparent_va: float
    energy_wh: float | None
    indexes_wh: dict[str, float] | None
    tariff: str | None
    current_a: float | None
    voltage_v: float | None


def checksum(payload: bytes) -> str:
    """The TIC checksum character of ``payload`` (the bytes the mode's rule covers)."""
    return chr((sum(payload) & 0x3F) + 0x20)


def parse_frame(frame: str | bytes) -> TicFrame:
    """Split a frame into groups and verify each group's checksum.

    The mode is detected from the separator (any HT means standard). Leading STX and trailing
    ETX are optional (a node may strip them); an EOT means the meter interrupted the frame.

    Raises:
        TicError: ``not_decodable`` (not ASCII / no groups), ``schema_violation`` (malformed or
            duplicated group, interrupted frame) or ``bad_checksum`` (lists every bad label).
    """
    if isinstance(frame, str):
        try:
            raw = frame.encode("ascii")
        except UnicodeEncodeError:
            raise TicError("not_decodable", "frame is not ASCII") from None
    else:
        raw = frame
    if raw[:1] == b"\x02":
        raw = raw[1:]
    if raw[-1:] == b"\x03":
        raw = raw[:-1]
    if b"\x04" in raw:
        raise TicError("schema_violation", "frame interrupted by EOT")
    if not raw:
        raise TicError("not_decodable", "empty frame")
    if raw[-1] != 0x0D:
        raise TicError("schema_violation", "frame does not end with CR")
    standard = b"\t" in raw
    mode: TicMode = "standard" if standard else "historique"
    groups: dict[str, str] = {}
    horodates: dict[str, str] = {}
    bad: list[str] = []
    for n, part in enumerate(raw[:-1].split(b"\r")):
        # part = LF label SEP ... SEP checksum
        if len(part) < 5 or part[0] != _LF:
            raise TicError("schema_violation", f"group {n} does not start with LF or is too short")
        sep = part[-2]
        if standard:
            if sep != _HT:
                raise TicError("schema_violation", f"group {n}: no HT before the checksum")
            covered = part[1:-1]  # label .. HT (includes the separator)
            fields = part[1:-2].split(b"\t")
        else:
            if sep != _SP:
                raise TicError("schema_violation", f"group {n}: no SP before the checksum")
            covered = part[1:-2]  # label SP data (excludes the separator)
            fields = covered.split(b" ", 1)
        if len(fields) not in (2, 3) or not fields[0]:
            raise TicError("schema_violation", f"group {n}: expected label, [horodate,] data")
        try:
            label = fields[0].decode("ascii")
            data = fields[-1].decode("ascii")
        except UnicodeDecodeError:
            raise TicError("not_decodable", f"group {n} is not ASCII") from None
        if ((sum(covered) & 0x3F) + 0x20) != part[-1]:
            bad.append(label)
        if label in groups:
            raise TicError("schema_violation", f"label {label} appears twice")
        groups[label] = data
        if len(fields) == 3:
            horodates[label] = fields[1].decode("ascii")
    if bad:
        raise TicError("bad_checksum", f"{mode} frame, bad checksum on {', '.join(bad)}")
    return TicFrame(mode, groups, horodates)


def _number(groups: Mapping[str, str], label: str) -> float | None:
    data = groups.get(label)
    if data is None:
        return None
    if not data.isdigit() or not data.isascii():
        raise TicError("schema_violation", f"{label}={data!r} is not a decimal number")
    return float(int(data))


def measures(frame: TicFrame) -> TicMeasures:
    """Map a verified frame to the normalized quantities (see the module and docs/ingest.md).

    Raises:
        TicError: ``schema_violation`` when the power figure is missing or a numeric group is
            not a number.
    """
    g = frame.groups
    indexes: dict[str, float] = {}
    if frame.mode == "historique":
        meter_id = g.get("ADCO", "")
        apparent = _number(g, "PAPP")
        if apparent is None:
            raise TicError("schema_violation", "historique frame without PAPP")
        power = apparent
        for label in HISTORIQUE_INDEX_LABELS:
            value = _number(g, label)
            if value is not None:
                indexes[label] = value
        energy = sum(indexes.values()) if indexes else None
        ptec = g.get("PTEC")
        tariff = ptec.rstrip(".") if ptec is not None else None
        current = _number(g, "IINST")
        if current is None:
            current = _number(g, "IINST1")
        voltage = None
    else:
        meter_id = g.get("ADSC", "")
        apparent = _number(g, "SINSTS")
        if apparent is None:
            raise TicError("schema_violation", "standard frame without SINSTS")
        injected = _number(g, "SINSTI")
        power = apparent - injected if injected is not None else apparent
        for label in STANDARD_INDEX_LABELS:
            value = _number(g, label)
            if value is not None:
                indexes[label] = value
        energy = _number(g, "EAST")
        if energy is None and indexes:
            energy = sum(indexes.values())
        ltarf = g.get("LTARF")
        tariff = ltarf.strip() if ltarf is not None else None
        current = _number(g, "IRMS1")
        voltage = _number(g, "URMS1")
    return TicMeasures(
        meter_id=meter_id,
        power_w=power,
        apparent_va=apparent,
        energy_wh=energy,
        indexes_wh=indexes or None,
        tariff=tariff or None,
        current_a=current,
        voltage_v=voltage,
    )


def _items(
    groups: Mapping[str, str | tuple[str, str]] | Iterable[tuple[str, str | tuple[str, str]]],
) -> Iterable[tuple[str, str | tuple[str, str]]]:
    return groups.items() if isinstance(groups, Mapping) else groups


def _check_text(text: str, forbidden: str) -> bytes:
    raw = text.encode("ascii")
    if any(c in text for c in forbidden) or any(b < 0x20 and b != _HT for b in raw):
        raise ValueError(f"{text!r} contains a separator or control character")
    return raw


def build_frame_historique(groups: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """A historique-mode frame (STX ... ETX) with correct checksums, groups in given order.

    >>> build_frame_historique({"ADCO": "031762120152", "PAPP": "00750"})[:22]
    '\\x02\\nADCO 031762120152 5\\r'
    """
    out = [STX]
    for label, data in _items(groups):
        if not isinstance(data, str):
            raise ValueError("historique groups have no horodate")
        covered = _check_text(label, " \t") + b" " + _check_text(data, " \t")
        out.append(f"\n{label} {data} {checksum(covered)}\r")
    out.append(ETX)
    return "".join(out)


def build_frame_standard(
    groups: Mapping[str, str | tuple[str, str]] | Iterable[tuple[str, str | tuple[str, str]]],
) -> str:
    """A standard-mode frame with correct checksums. A value is ``data`` or
    ``(horodate, data)``, e.g. ``{"DATE": ("E260626120000", ""), "SINSTS": "00750"}``."""
    out = [STX]
    for label, value in _items(groups):
        if isinstance(value, tuple):
            horodate, data = value
            text = f"{label}\t{horodate}\t{data}\t"
            _check_text(horodate, "\t")
        else:
            data = value
            text = f"{label}\t{data}\t"
        _check_text(label, "\t ")
        _check_text(data, "\t")
        out.append(f"\n{text}{checksum(text.encode('ascii'))}\r")
    out.append(ETX)
    return "".join(out)

"""Fast Linky TIC frame writer for simulated meters (Enedis-NOI-CPT_54E).

:mod:`app.domain.tic` builds frames group by group; this writer produces the same bytes but
pre-computes the constant groups of a meter (identity, tariff option, subscribed power...) once
and the horodates of a whole chunk with numpy, so thousands of frames per second stay cheap.
Both modes:

- historique: ``LF label SP data SP checksum CR``, checksum over ``label SP data``;
- standard: ``LF label HT [horodate HT] data HT checksum CR``, checksum over everything from
  the label up to and including the last HT;

``checksum = (sum of bytes & 0x3F) + 0x20``; frame = ``STX groups ETX``. The unit tests check
every frame against :func:`app.domain.tic.build_frame_historique` / ``build_frame_standard``
and :func:`app.domain.tic.parse_frame`.
"""

from __future__ import annotations

import numpy as np

from simulators.climate import utc_offset_s
from simulators.household import Chunk
from simulators.population import HouseholdSpec

STX, ETX = "\x02", "\x03"
_NGTF = {"BASE": "      BASE      ", "HC": " HEURES CREUSES "}
_LTARF = {"BASE": "      BASE      ", "HC": " HEURE  CREUSE  ", "HP": " HEURE  PLEINE  "}
_MSG1 = "PAS DE          MESSAGE         "


def _cks(text: str) -> str:
    return chr((sum(text.encode("ascii")) & 0x3F) + 0x20)


def hist_group(label: str, data: str) -> str:
    covered = f"{label} {data}"
    return f"\n{covered} {_cks(covered)}\r"


def std_group(label: str, data: str, horodate: str | None = None) -> str:
    covered = f"{label}\t{horodate}\t{data}\t" if horodate is not None else f"{label}\t{data}\t"
    return f"\n{covered}{_cks(covered)}\r"


def horodates(ts_ms: np.ndarray, timezone: str) -> list[str]:
    """Standard-mode horodates (``E``/``H`` + local ``YYMMDDhhmmss``) for epoch-ms stamps.

    The stamps need not be sorted: a node whose clock is skewed (``clock_skew`` fault) sends
    event times that jump back or forward inside a chunk. Offsets come from the span
    ``[min, max]`` of the stamps (at most one DST change in it, as in ``climate.local_offsets``).
    """
    if len(ts_ms) == 0:
        return []
    t_s = ts_ms // 1000
    lo, hi = int(t_s.min()), int(t_s.max())
    offs = _offsets(timezone, t_s, lo, hi)
    # standard time: the lowest offset of the year (one of four samples 91 days apart falls
    # in winter time, which lasts ~5 months; 182 days before a late-March day is still summer)
    std = min(utc_offset_s(timezone, lo - 91 * 86400 * k) for k in range(4))
    local = (t_s + offs).astype("datetime64[s]")
    text = np.datetime_as_string(local, unit="s")
    return [("E" if o > std else "H") + s[2:4] + s[5:7] + s[8:10] + s[11:13] + s[14:16] + s[17:19]
            for s, o in zip(text.tolist(), offs.tolist(), strict=True)]


def _offsets(timezone: str, t_s: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """UTC offset (s) at each epoch second of ``t_s`` (any order, all in ``[lo, hi]``)."""
    a = utc_offset_s(timezone, lo)
    b = utc_offset_s(timezone, hi)
    if a == b:
        return np.full(len(t_s), a, dtype=np.int64)
    first, last = lo, hi  # offset(first) == a, offset(last) == b: find the change
    while last - first > 1:
        mid = (first + last) // 2
        if utc_offset_s(timezone, mid) == a:
            first = mid
        else:
            last = mid
    out: np.ndarray = np.where(t_s >= last, b, a).astype(np.int64)
    return out


class TicFrameWriter:
    """Frames of one simulated Linky meter, historique or standard per ``spec.tic_mode``."""

    def __init__(self, spec: HouseholdSpec) -> None:
        if spec.tic_mode not in ("historique", "standard"):
            raise ValueError(f"{spec.household_id} has no TIC output")
        self.spec = spec
        hc = spec.tariff == "HC"
        self._hc = hc
        if spec.tic_mode == "historique":
            self._head = STX + hist_group("ADCO", spec.meter_id) + hist_group(
                "OPTARIF", "HC.." if hc else "BASE") + hist_group("ISOUSC", f"{spec.kva * 5:02d}")
            self._ptec = {k: hist_group("PTEC", k) for k in ("HC..", "HP..", "TH..")}
            self._tail = hist_group("IMAX", "090")
            self._end = hist_group("HHPHC", "A") + hist_group("MOTDETAT", "000000") + ETX
        else:
            self._head = STX + std_group("ADSC", spec.meter_id) + std_group("VTIC", "02")
            self._ngtf = std_group("NGTF", _NGTF["HC" if hc else "BASE"])
            self._ltarf = {k: std_group("LTARF", v) for k, v in _LTARF.items()}
            kva = f"{spec.kva:02d}"
            self._pref = std_group("PREF", kva) + std_group("PCOUP", kva)
            self._end = (std_group("STGE", "003A0001") + std_group("MSG1", _MSG1)
                         + std_group("PRM", f"2{spec.meter_id}0") + std_group("RELAIS", "000"))
            self._ntarf = {k: std_group("NTARF", k) for k in ("01", "02")}
            self._days = std_group("NJOURF", "00") + std_group("NJOURF+1", "00") + ETX

    def frames(self, c: Chunk, sel: np.ndarray, ts_ms: np.ndarray) -> list[str]:
        """One frame per selected sample ``sel`` of ``c``; ``ts_ms`` are their event times."""
        if self.spec.tic_mode == "historique":
            return self._historique(c, sel)
        return self._standard(c, sel, ts_ms)

    def _historique(self, c: Chunk, sel: np.ndarray) -> list[str]:
        p = c.power_w[sel]
        papp = np.where(p > 0, np.round(c.apparent_va[sel] / 10.0) * 10, 0).clip(0, 99999)
        iinst = np.where(p > 0, np.round(c.current_a[sel]), 0).clip(0, 999)
        off = c.offpeak[sel].tolist()
        labels = ("HCHC", "HCHP") if self._hc else ("BASE",)
        idx = [c.index_wh[k][sel].astype(np.int64).tolist() for k in labels]
        out = []
        for k, (pa, ii) in enumerate(zip(papp.astype(np.int64).tolist(),
                                         iinst.astype(np.int64).tolist(), strict=True)):
            parts = [self._head]
            for label, values in zip(labels, idx, strict=True):
                parts.append(hist_group(label, f"{values[k]:09d}"))
            parts.append(self._ptec[("HC.." if off[k] else "HP..") if self._hc else "TH.."])
            parts.append(hist_group("IINST", f"{ii:03d}"))
            parts.append(self._tail)
            parts.append(hist_group("PAPP", f"{pa:05d}"))
            parts.append(self._end)
            out.append("".join(parts))
        return out

    def _standard(self, c: Chunk, sel: np.ndarray, ts_ms: np.ndarray) -> list[str]:
        spec = self.spec
        p = c.power_w[sel]
        s = np.round(c.apparent_va[sel]).astype(np.int64)
        sinsts = np.where(p > 0, s, 0).clip(0, 99999).tolist()
        sinsti = np.where(p < 0, s, 0).clip(0, 99999).tolist()
        irms = np.round(c.current_a[sel]).astype(np.int64).clip(0, 999).tolist()
        urms = np.round(c.voltage_v[sel]).astype(np.int64).tolist()
        east = c.energy_wh[sel].astype(np.int64).tolist()
        eait = c.export_wh[sel].astype(np.int64).tolist()
        off = c.offpeak[sel].tolist()
        labels = ("HCHC", "HCHP") if self._hc else ("BASE",)
        idx = [c.index_wh[k][sel].astype(np.int64).tolist() for k in labels]
        hd = horodates(ts_ms, spec.timezone)
        out = []
        for k in range(len(sel)):
            tariff = ("HC" if off[k] else "HP") if self._hc else "BASE"
            parts = [self._head, std_group("DATE", "", hd[k]), self._ngtf, self._ltarf[tariff],
                     std_group("EAST", f"{east[k]:09d}")]
            for j, values in enumerate(idx):
                parts.append(std_group(f"EASF{j + 1:02d}", f"{values[k]:09d}"))
            parts.append(std_group("IRMS1", f"{irms[k]:03d}"))
            parts.append(std_group("URMS1", f"{urms[k]:03d}"))
            parts.append(self._pref)
            parts.append(std_group("SINSTS", f"{sinsts[k]:05d}"))
            if spec.exports:
                parts.append(std_group("EAIT", f"{eait[k]:09d}"))
                parts.append(std_group("SINSTI", f"{sinsti[k]:05d}"))
            parts.append(self._end)
            parts.append(self._ntarf["02" if (self._hc and not off[k]) else "01"])
            parts.append(self._days)
            out.append("".join(parts))
        return out


# --- reference group lists (slow, readable): for app.domain.tic's builders and the tests ------


def historique_groups(spec: HouseholdSpec, c: Chunk, i: int) -> list[tuple[str, str]]:
    """The groups of a historique frame for sample ``i`` of ``c``."""
    papp = round(float(c.apparent_va[i]) / 10.0) * 10 if c.power_w[i] > 0 else 0
    iinst = round(float(c.current_a[i])) if c.power_w[i] > 0 else 0
    g = [("ADCO", spec.meter_id)]
    if spec.tariff == "HC":
        g += [("OPTARIF", "HC.."), ("ISOUSC", f"{spec.kva * 5:02d}"),
              ("HCHC", f"{int(c.index_wh['HCHC'][i]):09d}"),
              ("HCHP", f"{int(c.index_wh['HCHP'][i]):09d}"),
              ("PTEC", "HC.." if c.offpeak[i] else "HP..")]
    else:
        g += [("OPTARIF", "BASE"), ("ISOUSC", f"{spec.kva * 5:02d}"),
              ("BASE", f"{int(c.index_wh['BASE'][i]):09d}"), ("PTEC", "TH..")]
    g += [("IINST", f"{min(iinst, 999):03d}"), ("IMAX", "090"), ("PAPP", f"{min(papp, 99999):05d}"),
          ("HHPHC", "A"), ("MOTDETAT", "000000")]
    return g


def standard_groups(spec: HouseholdSpec, c: Chunk, i: int,
                    horodate: str) -> list[tuple[str, str | tuple[str, str]]]:
    """The groups of a standard frame for sample ``i`` of ``c`` (``horodate`` of its time)."""
    p = float(c.power_w[i])
    s = round(float(c.apparent_va[i]))
    hc = spec.tariff == "HC"
    ltarf = ("HC" if c.offpeak[i] else "HP") if hc else "BASE"
    if hc:
        idx = [("EASF01", f"{int(c.index_wh['HCHC'][i]):09d}"),
               ("EASF02", f"{int(c.index_wh['HCHP'][i]):09d}")]
    else:
        idx = [("EASF01", f"{int(c.index_wh['BASE'][i]):09d}")]
    g: list[tuple[str, str | tuple[str, str]]] = [
        ("ADSC", spec.meter_id), ("VTIC", "02"),
        ("DATE", (horodate, "")),
        ("NGTF", _NGTF["HC" if hc else "BASE"]), ("LTARF", _LTARF[ltarf]),
        ("EAST", f"{int(c.energy_wh[i]):09d}"), *idx,
        ("IRMS1", f"{min(round(float(c.current_a[i])), 999):03d}"),
        ("URMS1", f"{round(float(c.voltage_v[i])):03d}"),
        ("PREF", f"{spec.kva:02d}"), ("PCOUP", f"{spec.kva:02d}"),
        ("SINSTS", f"{min(s if p > 0 else 0, 99999):05d}"),
    ]
    if spec.exports:
        g += [("EAIT", f"{int(c.export_wh[i]):09d}"),
              ("SINSTI", f"{min(s if p < 0 else 0, 99999):05d}")]
    g += [("STGE", "003A0001"), ("MSG1", _MSG1), ("PRM", f"2{spec.meter_id}0"),
          ("RELAIS", "000"), ("NTARF", "02" if (hc and not c.offpeak[i]) else "01"),
          ("NJOURF", "00"), ("NJOURF+1", "00")]
    return g

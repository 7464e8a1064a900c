"""Run reports made of named sections, printed as a table or dumped as JSON.

The load generator fills ``config``, ``produce`` and ``faults``; other tools attach more
sections (end-to-end latency percentiles, consumer lag...) with :meth:`Report.add` before
printing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Report:
    title: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, name: str, values: Mapping[str, Any]) -> None:
        """Add (or extend) section ``name``."""
        self.sections.setdefault(name, {}).update(values)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, **self.sections}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)

    def to_table(self) -> str:
        """A plain-text table: one block per section, ``name  value`` rows."""
        rows: list[tuple[str, str]] = []
        for section, values in self.sections.items():
            rows.append((f"[{section}]", ""))
            for key, value in values.items():
                rows.append((f"  {key}", _fmt(value)))
        width = max((len(k) for k, _ in rows), default=0)
        lines = [self.title, "=" * len(self.title)]
        lines += [f"{k.ljust(width)}  {v}".rstrip() for k, v in rows]
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    return str(value)


def percentiles(values: Sequence[float], prefix: str = "", unit: str = "_s",
                digits: int = 3) -> dict[str, Any]:
    """``{prefix}count`` and p50/p95/p99/max of ``values`` (nearest-rank, ``None`` when empty),
    keys like ``after_close_p99_s``: a latency block for :meth:`Report.add`."""
    out: dict[str, Any] = {f"{prefix}count": len(values)}
    ordered = sorted(values)
    for name, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        if not ordered:
            out[f"{prefix}{name}{unit}"] = None
            continue
        rank = max(1, math.ceil(q * len(ordered)))
        out[f"{prefix}{name}{unit}"] = round(float(ordered[rank - 1]), digits)
    return out

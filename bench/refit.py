"""Load REFIT-shaped CSV files into numpy arrays (shared by the NILM eval and anomaly replay).

Data: REFIT Electrical Load Measurements (CC BY 4.0). D. Murray, L. Stankovic, V. Stankovic,
"An electrical load measurements dataset of United Kingdom households from a two-year
longitudinal study", Scientific Data 4:160122 (2017), doi:10.1038/sdata.2016.122.

A house file ``refit_houseNN_*.csv`` has ``timestamp_s, aggregate_watts, <name>_watts...``;
an activations file (``*activations*.csv``) has
``house, appliance, start_s, end_s, duration_s, mean_w, peak_w, on_threshold_w``.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

ENV_DIR = "WATTFLOW_REFIT_DIR"
_HOUSE_RE = re.compile(r"refit_house(\d+)_.*\.csv$")


@dataclass(frozen=True)
class House:
    house: int
    ts_ms: npt.NDArray[np.int64]
    aggregate_w: npt.NDArray[np.float64]
    channels_w: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    """Sub-metered appliance power by column name without ``_watts``."""


@dataclass(frozen=True)
class Activation:
    house: int
    appliance: str
    start_s: int
    end_s: int
    mean_w: float
    peak_w: float


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def resolve_data_dir(arg: str | os.PathLike[str] | None = None) -> Path:
    """``arg``, else ``$WATTFLOW_REFIT_DIR``, else ``<repo>/../shared/data/refit``."""
    if arg:
        return Path(arg).expanduser().resolve()
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return (repo_root().parent / "shared" / "data" / "refit").resolve()


def house_files(data_dir: Path) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in sorted(data_dir.glob("refit_house*_*.csv")):
        m = _HOUSE_RE.search(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def load_house(path: Path) -> House:
    m = _HOUSE_RE.search(path.name)
    house = int(m.group(1)) if m else -1
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    arr = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    cols = {name.strip(): i for i, name in enumerate(header)}
    ts = np.round(arr[:, cols["timestamp_s"]] * 1000.0).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    agg = arr[order, cols["aggregate_watts"]]
    chans = {
        name.removesuffix("_watts"): arr[order, i]
        for name, i in cols.items()
        if name.endswith("_watts") and name != "aggregate_watts"
    }
    return House(house=house, ts_ms=ts[order], aggregate_w=agg, channels_w=chans)


def load_activations(data_dir: Path) -> list[Activation]:
    out: list[Activation] = []
    for p in sorted(data_dir.glob("*activations*.csv")):
        with p.open(newline="") as f:
            for r in csv.DictReader(f):
                out.append(Activation(house=int(r["house"]), appliance=r["appliance"],
                                      start_s=int(float(r["start_s"])),
                                      end_s=int(float(r["end_s"])),
                                      mean_w=float(r["mean_w"]), peak_w=float(r["peak_w"])))
    return out

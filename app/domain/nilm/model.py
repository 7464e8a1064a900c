"""Wire and state types of the NILM core: parameters, per-household state, events, energy.

Everything here is a msgspec Struct so that a household's whole state is one small value in a
Faust table (``table[household] = state``) and survives restarts byte for byte.
Time is event time in epoch milliseconds (UTC); power in watts; energy in watt-hours.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class NilmParams(msgspec.Struct, frozen=True, kw_only=True):
    """One configuration for every household (no per-home tuning).

    The defaults are derived from physical rules, not fitted per home: see docs/nilm.md.
    """

    noise_abs_w: float = 30.0
    """Consecutive samples closer than ``noise_abs_w + noise_rel * level`` stay in one steady
    state (Hart's steady-state tolerance; the relative part absorbs the larger absolute noise of
    kilowatt loads)."""
    noise_rel: float = 0.05
    level_samples: int = 3
    """Samples in the steady window on each side of a transition; their mean is the level
    (robust to drift: only the samples next to the edge count)."""
    max_transition_samples: int = 3
    """Samples a transition may take between the two steady windows (meter averaging spreads
    a step over one to three 6-8 s samples; inrush spikes)."""
    min_steady_ms: int = 12_000
    """A steady window must span at least this long: 12 s is the shortest activation REFIT
    labels."""
    step_threshold_w: float = 40.0
    """Smallest |ΔP| the detector reports. Steps between this and ``edge_threshold_w`` are
    used only to close a load already on (see ``edge_threshold_w``)."""
    edge_threshold_w: float = 70.0
    """Smallest |ΔP| reported as an edge: the smallest appliance NILM tracks (70 W, the
    size the REFIT scoring counts), not a per-home fit. An ``off`` may be smaller when it
    closes a load that is on: a compressor or motor draws more just after it starts than
    when it stops, so its off step is often 20-40 % smaller than its on step."""
    merge_dip_ms: int = 120_000
    """A drop that comes back to the level before it within this time is the pause of a
    duty-cycling load (hob regulator, dryer/washer heater, microwave at part power) and is not
    reported. 0 disables."""
    dip_match_rel: float = 0.2
    """A return matches the level before the dip within max(noise_abs_w, dip_match_rel*|dip|)."""
    max_gap_ms: int = 60_000
    """A gap longer than this between samples breaks the steady state; energy is not
    extrapolated over the excess."""
    pair_rel_tol: float = 0.5
    """An off edge pairs with an open on edge whose |ΔP| is within this fraction (wide: the
    off step of a motor load is often much smaller than its on step)."""
    small_load_w: float = 500.0
    min_on_small_ms: int = 300_000
    """A load below ``small_load_w`` is an appliance cycle (compressor, pump, motor) only if it
    runs at least this long: its ``on`` is published once it has, and a shorter on/off pulse
    (lights, electronics, a door-opened fridge lamp) is not published at all. 300 s is the
    shortest activation REFIT accepts for washers, dryers and dishwashers; fridge compressor
    cycles last longer. Loads of 500 W and more (kettle, toaster, microwave: 12 s activations)
    are published at once."""
    max_open_loads: int = 12
    max_clusters: int = 16
    max_on_ms: int = 86_400_000
    """An unpaired on edge older than this is dropped from the open loads."""


class DetectorState(msgspec.Struct, kw_only=True):
    """Step detector state: the last few samples (still needed by an undecided edge) and a
    drop waiting to see whether it is only the pause of a duty-cycling load."""

    buf_t: list[int] = msgspec.field(default_factory=list)
    buf_x: list[float] = msgspec.field(default_factory=list)
    settled_ts: int = -1
    """Every edge at or before this time has been emitted (apart from a pending drop)."""
    pend: bool = False
    pend_ts: int = 0
    pend_dp: float = 0.0
    pend_before: float = 0.0
    pend_after: float = 0.0

    @property
    def safe_ts(self) -> int:
        """Edges at or before this time are all out, pending drop included."""
        return min(self.settled_ts, self.pend_ts - 1) if self.pend else self.settled_ts

    @property
    def last_ts(self) -> int:
        """Event time of the newest sample seen (-1: none yet)."""
        return self.buf_t[-1] if self.buf_t else -1


class OpenLoad(msgspec.Struct, kw_only=True, array_like=True):
    """An appliance switched on and not yet off."""

    on_ts: int
    power_w: float
    appliance: str
    cluster: int
    taught: bool = False
    published: bool = True
    """The ``on`` event went out. A small load's ``on`` waits until it has run
    ``min_on_small_ms`` (a shorter pulse is a light or electronics, not an appliance cycle)."""


class Cluster(msgspec.Struct, kw_only=True, array_like=True):
    """A household-specific load learned online (mean ΔP, typical on-duration, label)."""

    power_w: float
    n: int = 1
    mean_on_s: float = 0.0
    n_dur: int = 0
    last_on_ts: int = 0
    mean_period_s: float = 0.0
    n_period: int = 0
    appliance: str = "unknown"
    taught: bool = False
    """Label given by a sub-meter (teacher) rather than the signature library."""


class NilmState(msgspec.Struct, kw_only=True):
    """Everything NILM keeps per household; encode with ``msgspec.msgpack`` (a few hundred B)."""

    det: DetectorState = msgspec.field(default_factory=DetectorState)
    open_loads: list[OpenLoad] = msgspec.field(default_factory=list)
    clusters: list[Cluster] = msgspec.field(default_factory=list)
    v: int = 1


class Edge(msgspec.Struct, frozen=True, array_like=True):
    """A step between two steady states of the aggregate power."""

    ts_ms: int
    delta_w: float
    before_w: float
    after_w: float


class ApplianceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One appliance switching on or off, as NILM (or a sub-meter teacher) sees it."""

    household_id: str
    ts_ms: int
    appliance: str
    state: Literal["on", "off"]
    delta_w: float
    confidence: float
    """0..1; 1.0 when a sub-meter confirmed the label."""
    cluster: int = -1
    duration_ms: int | None = None
    """On-duration, on ``off`` events that were paired with their ``on`` event."""


class EnergyBreakdown(msgspec.Struct, frozen=True, kw_only=True):
    """Energy of one chunk/window: measured + NILM-estimated + residual == total (Wh)."""

    start_ms: int
    end_ms: int
    total_wh: float
    measured_wh: dict[str, float]
    """Sub-metered appliances (smart-plug channels)."""
    estimated_wh: dict[str, float]
    """NILM-estimated appliances (not sub-metered)."""
    residual_wh: float
    """Unidentified: total - measured - estimated (negative only if sub-meters read more than
    the mains meter)."""

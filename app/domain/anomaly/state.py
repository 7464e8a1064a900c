"""Per-household detector state: one small immutable struct, stored whole, replaced per batch."""

from __future__ import annotations

import msgspec

from app.domain.anomaly.alerts import OpenAlert
from app.domain.anomaly.archetypes import archetype_for
from app.domain.anomaly.profile import empty_profile
from app.domain.registry import MeterInfo

NO_TIME = -1
"""Marker for "no timestamp yet" in int time fields."""


class Gate(msgspec.Struct, frozen=True, array_like=True):
    """Duration gate of one condition: since when it holds, since when it has stopped holding."""

    on_since: int = NO_TIME
    off_since: int = NO_TIME


CLOSED = Gate()


class DetectorState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    household_id: str
    meter_id: str
    archetype: str

    first_ts: int = NO_TIME
    last_ts: int = NO_TIME
    """Event time of the newest reading processed; older or equal readings are ignored."""
    last_seen: int = NO_TIME
    """Arrival time (broker time when known, else event time) of the newest reading."""

    # current (partial) bucket
    bucket_key: int = NO_TIME
    bucket_sum: float = 0.0
    bucket_n: int = 0
    bucket_last_ts: int = NO_TIME
    bucket_vsum: float = 0.0
    bucket_vn: int = 0
    bucket_pmax: float = 0.0
    """Highest plausible reading (W, |W| for an exporting meter) of the current bucket: the
    reference peak learns it when the bucket closes."""
    last_eval_ts: int = NO_TIME
    """Time of the last closed bucket (the smoothing filters' clock)."""

    # smoothed levels (W) and the expected levels passed through the same filters
    lvl: float = 0.0
    exp_lvl: float = 0.0
    sd_lvl: float = 0.0
    lvl_long: float = 0.0
    exp_long: float = 0.0
    volt: float = 0.0

    # current hour
    hour_key: int = NO_TIME
    hour_energy: float = 0.0
    """W*ms accumulated in the current UTC hour."""
    hour_dur: int = 0
    hour_min: float = float("inf")
    """Lowest bucket mean of the current hour (base-load tracking)."""
    hour_tainted: bool = False
    """An over/low condition was pending or open: the hour is not learned."""
    cur_mu: float = 0.0
    cur_sd: float = 0.0
    cur_src: int = 0
    quiet_w: float = -1.0
    """Lowest learned hour-of-day mean (W); -1 until the day profile is complete."""
    profile: bytes = msgspec.field(default_factory=empty_profile)

    # switching activity (low consumption)
    prev_w: float = float("nan")
    """Mean of the previous closed bucket (a rise from it may be a switching event)."""
    hour_events: int = 0
    """Switching events in the current hour."""
    rates: bytes = b""
    """Learned switching events per hour, by local hour of day (float32); empty until learned."""
    cur_rate: float = -1.0
    """Expected events per hour in the current hour; -1 while not learned."""
    quiet_since: int = NO_TIME
    """Time of the last switching event (or of the first bucket, or of the end of a frozen
    stretch): when the current silence of switching began."""
    quiet_exp: float = 0.0
    """Switching events the learned profile expects since ``quiet_since``."""
    last_event: int = NO_TIME
    """Time of the last switching event."""

    # base load
    mins24: tuple[float, ...] = ()
    """Hourly minima of the fast level over the last 24 hours (newest last)."""
    base_ref: float = 0.0
    base_n: int = 0
    hours_since_base: int = 0

    # spike
    peak_ref: float = 0.0
    """Reference peak (W) as of the last closed bucket: decays with ``tau_peak_ms``."""

    # frozen value
    frozen_power: float = float("nan")
    frozen_energy: float = float("nan")
    frozen_since: int = NO_TIME

    # counter
    last_energy: float = float("nan")

    # gates
    g_spike: Gate = CLOSED
    g_over: Gate = CLOSED
    g_low: Gate = CLOSED
    g_base: Gate = CLOSED
    g_counter: Gate = CLOSED
    g_skew: Gate = CLOSED
    g_volt: Gate = CLOSED

    open: tuple[OpenAlert, ...] = ()
    """At most one open alert per type."""


def initial_state(
    household_id: str, meter_id: str, info: MeterInfo, archetype: str | None = None
) -> DetectorState:
    """Fresh state; the archetype defaults to one chosen from the connection size."""
    return DetectorState(
        household_id=household_id,
        meter_id=meter_id,
        archetype=archetype or archetype_for(info.max_power_w),
    )

"""Tunable settings of the anomaly detectors (all durations in milliseconds, powers in watts).

Defaults suit 1 s to 15 min readings: every detector measures durations in event time and
smooths with time constants, never with sample counts, so the reading interval does not matter.
"""

from __future__ import annotations

import msgspec

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class AnomalyParams(msgspec.Struct, frozen=True, kw_only=True):
    bucket_ms: int = MINUTE_MS
    """Readings are averaged into buckets of this size before the profile-based detectors."""

    # --- smoothing time constants -------------------------------------------------------
    tau_level_ms: int = 90 * MINUTE_MS
    """Level compared against the learned profile for over-consumption."""
    tau_long_ms: int = 3 * HOUR_MS
    """Level compared against the learned profile for low consumption."""

    # --- learned profile (hour of week, hour of day fallback, then archetype) -----------
    week_alpha: float = 0.2
    """EWMA weight of one new week in an hour-of-week slot (after 1/n warm-up)."""
    day_alpha: float = 0.1
    """EWMA weight of one new day in an hour-of-day slot (after 1/n warm-up)."""
    week_min_count: int = 3
    """Weeks of history an hour-of-week slot needs before it is used."""
    day_min_count: int = 4
    """Days of history an hour-of-day slot needs before it is used (else the archetype)."""
    min_hour_coverage: float = 0.5
    """Fraction of an hour that must be covered by readings to update the profile."""
    clip_sd: float = 3.0
    """Profile updates are clipped to mean + clip_sd * sd (robust against outliers)."""
    sd_floor_frac: float = 0.2
    sd_floor_w: float = 40.0

    # --- spike / step ---------------------------------------------------------------------
    connection_factor: float = 1.0
    """A reading above max_power_w * connection_factor is a (critical) spike."""
    history_factor: float = 2.5
    """A reading above history_factor * the household's decaying peak is a spike."""
    history_min_w: float = 4000.0
    """The history threshold is never below this."""
    history_warmup_ms: int = 3 * DAY_MS
    """History-based spikes need this much history; before that only the connection counts."""
    tau_peak_ms: int = 14 * DAY_MS
    """Decay of the household's reference peak."""
    spike_clear_ms: int = 5 * MINUTE_MS

    # --- sustained over-consumption ------------------------------------------------------
    over_k_sd: float = 3.5
    over_frac: float = 0.5
    over_abs_w: float = 1200.0
    """Trigger when level - expected > max(k_sd * sd, frac * expected, abs_w)."""
    archetype_k_sd: float = 5.0
    """Wider k_sd while the baseline is still an archetype (cold start)."""
    over_hold: float = 0.6
    """Stays open while the excess is above over_hold * threshold (hysteresis)."""
    over_min_ms: int = 3 * HOUR_MS
    over_clear_ms: int = HOUR_MS

    # --- low consumption (vacancy: only always-on and cycling loads are left) -------------
    low_step_w: float = 150.0
    """A rise of the 1-minute mean by more than this is a switching event (someone switched an
    appliance on). Above a fridge or freezer compressor, below a kettle, an oven or a TV."""
    low_events: float = 12.0
    """Trigger when the switching events the learned profile expects since the last one
    observed reach this many (P(none | Poisson) = e^-12) ..."""
    low_min_ms: int = 8 * HOUR_MS
    """... the silence of switching has lasted at least this long ..."""
    low_ratio: float = 0.3
    """... and the 3-h level above the household's quiet level is below low_ratio x what is
    expected above it. Runs once every hour of the day has been learned."""
    low_abs_w: float = 100.0
    low_hold_ratio: float = 0.5
    """Resolves as soon as the 3-h level above the quiet level is back above low_hold_ratio x
    expected (judged only while at least low_abs_w above the quiet level is expected) ..."""
    low_clear_ms: int = 2 * HOUR_MS
    """... or two switching events come within this time of each other (one alone, a timer
    or a visit, does not end a vacancy)."""

    # --- rising base load ----------------------------------------------------------------
    base_alpha: float = 0.1
    """Daily EWMA weight of the base-load reference (after 1/n warm-up)."""
    base_alpha_in_alert: float = 0.02
    """Slow adaptation while a rise is pending or open, so the rise does not hide itself."""
    base_min_days: int = 3
    base_abs_w: float = 35.0
    base_frac: float = 0.3
    """Trigger when the 24 h minimum > reference + max(base_abs_w, base_frac * reference)."""
    base_hold: float = 0.5
    base_min_ms: int = 12 * HOUR_MS
    base_clear_ms: int = 12 * HOUR_MS

    # --- offline -------------------------------------------------------------------------
    offline_after_ms: int = 15 * MINUTE_MS
    """No reading for longer than this (arrival time) means the meter or node is offline."""

    # --- implausible data ----------------------------------------------------------------
    frozen_after_ms: int = 2 * HOUR_MS
    """Identical power (and energy, if reported) for this long is a frozen value."""
    frozen_ignore_zero: bool = True
    """Exact 0 W for hours is left to the low-consumption detector."""
    counter_tolerance_wh: float = 1.0
    counter_clear_ms: int = HOUR_MS
    skew_limit_ms: int = 5 * MINUTE_MS
    """|event time - broker time| beyond this is clock skew ..."""
    skew_min_ms: int = 15 * MINUTE_MS
    """... when it lasts this long in broker time (a store-and-forward burst does not)."""
    skew_clear_ms: int = 15 * MINUTE_MS
    """A skew that is pending (not yet open) is forgotten at the first plausible reading."""
    nominal_voltage_v: float = 230.0
    voltage_tolerance: float = 0.10
    """EN 50160: 10-minute mean within 230 V +/- 10 %."""
    voltage_critical_low: float = 0.15
    """Below -15 % is critical (EN 50160 bound for all 10-minute means)."""
    voltage_hold_v: float = 2.0
    tau_voltage_ms: int = 5 * MINUTE_MS
    voltage_min_ms: int = 10 * MINUTE_MS
    voltage_clear_ms: int = 10 * MINUTE_MS

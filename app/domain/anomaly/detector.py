"""``step`` and ``tick``: the household anomaly detector as state in, state out.

``step`` takes one household's readings of a batch (sorted by event time) and returns the new
state and the alert records opened or resolved; ``tick`` is called on a timer and detects what
a missing message cannot tell (a meter gone offline). Neither reads a clock.

Layers inside ``step``, all walked reading by reading in plain Python (the agent's calls carry
1 to 5 readings, where numpy's per-call overhead costs more than the work):

1. per reading: offline gaps, clock skew (arrival time, every reading), then for readings
   newer than the last one processed: spike, frozen value, counter going backwards, and the
   running sums of the current time bucket;
2. per closed time bucket (``bucket_ms``, 1 min): the reference peak, smoothed levels against
   the learned profile (over-consumption, low consumption), voltage, and per closed hour the
   profile update and the base-load check. The profile blob is only decoded then.

Everything is carried from reading to reading and from bucket to bucket in the state, so the
result (alerts and state) does not depend on how the readings are split into calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from app.domain.anomaly import profile as prof_mod
from app.domain.anomaly.alerts import AlertRecord, AlertType, Severity
from app.domain.anomaly.book import AlertBook
from app.domain.anomaly.gates import OPEN, RESOLVE, gate_point, gate_step
from app.domain.anomaly.params import HOUR_MS, AnomalyParams
from app.domain.anomaly.state import CLOSED, NO_TIME, DetectorState, Gate, initial_state
from app.domain.reading import Reading
from app.domain.registry import MeterInfo

_NAN = math.nan


def _gate(on: int, off: int) -> Gate:
    """A gate for the state; the shared ``CLOSED`` default when closed, so an idle gate is
    left out of the encoded state whichever way the readings were split into calls."""
    if on == NO_TIME and off == NO_TIME:
        return CLOSED
    return Gate(on, off)


def tick(
    state: DetectorState, now_ms: int, params: AnomalyParams
) -> tuple[DetectorState, list[AlertRecord]]:
    """Clock-driven checks: opens ``offline`` when nothing arrived for ``offline_after_ms``.

    ``opened_at`` is the arrival time of the last reading, so the id does not depend on when
    the timer fires. Returns the same state object when nothing opens.
    """
    last_seen = state.last_seen
    if last_seen == NO_TIME or now_ms - last_seen <= params.offline_after_ms:
        return state, []
    if any(a.type == "offline" for a in state.open):
        return state, []
    silence = now_ms - last_seen
    book = AlertBook(state.household_id, state.meter_id, state.open)
    book.open("offline", last_seen, now_ms, "warning", silence, 0.0, params.offline_after_ms, "ms")
    return msgspec.structs.replace(state, open=book.frozen()), book.records()


def step(
    state: DetectorState | None,
    readings: Sequence[Reading],
    params: AnomalyParams,
    info: MeterInfo,
    received_ms: Sequence[int] | None = None,
) -> tuple[DetectorState, list[AlertRecord]]:
    """Process one household's readings (sorted by ``ts_ms``).

    ``received_ms`` (optional, parallel to ``readings``) is the Kafka record timestamp of each
    reading: it drives offline and clock-skew detection. Readings not newer than the last one
    processed are ignored by the other detectors (late or duplicate). Fields that did not
    change are the very objects of the input state (the profile blob is rebuilt only when an
    hour is learned).
    """
    if state is None:
        if not readings:
            raise ValueError("step needs a state or at least one reading")
        r0 = readings[0]
        state = initial_state(r0.household_id or info.household_id, r0.meter_id, info)
    if not readings:
        return state, []
    if received_ms is not None and type(received_ms) is not list:
        received_ms = [int(x) for x in received_ms]
    run = _Run(state, params, info)
    run.feed(readings, received_ms)
    return run.finish(), run.book.records()


class _Run:
    """Working copy of one household's state for the duration of one ``step``."""

    def __init__(self, state: DetectorState, params: AnomalyParams, info: MeterInfo) -> None:
        self.s = state
        self.pa = params
        self.info = info
        self.book = AlertBook(state.household_id, state.meter_id, state.open)
        self.changes: dict[str, object] = {}
        self._prof: prof_mod.Profile | None = None
        self._prof_dirty = False
        self.levels: _Levels | None = None

    def feed(self, readings: Sequence[Reading], received: Sequence[int] | None) -> None:
        """The per-reading loop. Its variables mirror state fields; they are written back once
        at the end. Gates are only called when they are not idle."""
        s, pa, book = self.s, self.pa, self.book
        opened = book.opened
        exports = self.info.exports
        conn = self.info.max_power_w * pa.connection_factor
        offline_after = pa.offline_after_ms
        skew_limit = pa.skew_limit_ms
        frozen_after, ignore_zero = pa.frozen_after_ms, pa.frozen_ignore_zero
        tol = pa.counter_tolerance_wh
        bucket_ms = pa.bucket_ms
        warmup = pa.history_warmup_ms

        last_seen, last_ts, first_ts = s.last_seen, s.last_ts, s.first_ts
        sk_on, sk_off = s.g_skew.on_since, s.g_skew.off_since
        sp_on, sp_off = s.g_spike.on_since, s.g_spike.off_since
        ct_on, ct_off = s.g_counter.on_since, s.g_counter.off_since
        f_power, f_energy, f_since = s.frozen_power, s.frozen_energy, s.frozen_since
        last_energy = s.last_energy
        b_key, b_sum, b_n, b_last = s.bucket_key, s.bucket_sum, s.bucket_n, s.bucket_last_ts
        b_vsum, b_vn, b_pmax = s.bucket_vsum, s.bucket_vn, s.bucket_pmax
        peak = s.peak_ref
        hist_thr = self._history_threshold(peak, conn)
        fresh = False  # a reading newer than last_ts was processed

        for i, r in enumerate(readings):
            ts = r.ts_ms
            arr = ts if received is None else received[i]
            # --- offline (arrival time, every reading)
            if last_seen != NO_TIME and (arr - last_seen > offline_after or "offline" in opened):
                if "offline" in opened:
                    book.resolve("offline", arr, arr)
                else:
                    book.open(
                        "offline", last_seen, arr, "warning", arr - last_seen, 0.0,
                        offline_after, "ms",
                    )  # fmt: skip
                    book.resolve("offline", arr, arr)
            if arr > last_seen:
                last_seen = arr
            # --- clock skew (broker time, every reading)
            if received is not None:
                offset = ts - arr
                hit = offset > skew_limit or offset < -skew_limit
                if hit or sk_on != NO_TIME:
                    is_open = "clock_skew" in opened
                    sk_on, sk_off, action, when = gate_step(
                        sk_on, sk_off, is_open, last_seen, hit, pa.skew_min_ms,
                        pa.skew_clear_ms, 0,
                    )  # fmt: skip
                    if action == OPEN:
                        book.open(
                            "clock_skew", when, last_seen, "warning", abs(offset), 0.0,
                            skew_limit, "ms",
                        )  # fmt: skip
                    elif action == RESOLVE:
                        book.resolve("clock_skew", when, last_seen)
                    elif hit and is_open:
                        book.extreme("clock_skew", float(abs(offset)))
            if r.implausible:  # dead-lettered beyond the connection: evidence of a spike only
                pv = abs(r.power_w) if exports else r.power_w
                is_open = "spike" in opened
                sp_on, sp_off, action, when = gate_step(
                    sp_on, sp_off, is_open, ts, True, 0, pa.spike_clear_ms, pa.spike_clear_ms
                )
                if action == OPEN:
                    book.open("spike", when, ts, "critical", pv, peak, conn, "W")
                elif is_open:
                    book.extreme("spike", pv)
                continue
            if ts <= last_ts:
                continue  # late or duplicate: only arrival-time checks see it
            fresh = True
            last_ts = ts
            if first_ts == NO_TIME:
                first_ts = ts
            p = r.power_w
            e = r.energy_wh
            if e is None:
                e = _NAN
            # --- bucket roll-over: close the previous bucket first (it may move the peak)
            key = ts // bucket_ms
            if key != b_key:
                if b_key != NO_TIME:
                    peak = self._close_bucket(b_last, b_sum / b_n, b_vsum / b_vn if b_vn else
                                              _NAN, b_pmax, peak, first_ts)  # fmt: skip
                    hist_thr = self._history_threshold(peak, conn)
                b_key, b_sum, b_n, b_vsum, b_vn, b_pmax = key, 0.0, 0, 0.0, 0, 0.0
            b_sum += p
            b_n += 1
            b_last = ts
            v = r.voltage_v
            if v is not None and v == v:
                b_vsum += v
                b_vn += 1
            # --- spike
            pv = abs(p) if exports else p
            hit = pv > conn or (pv > hist_thr and ts - first_ts >= warmup)
            if hit or sp_on != NO_TIME:
                is_open = "spike" in opened
                sp_on, sp_off, action, when = gate_step(
                    sp_on, sp_off, is_open, ts, hit, 0, pa.spike_clear_ms, pa.spike_clear_ms
                )
                if action == OPEN:
                    sev: Severity = "critical" if pv > conn else "warning"
                    thr = hist_thr if ts - first_ts >= warmup else conn
                    book.open("spike", when, ts, sev, pv, peak, thr, "W")
                elif action == RESOLVE:
                    book.resolve("spike", when, ts)
                elif hit and is_open:
                    book.extreme("spike", pv)
            if not hit and pv > b_pmax:
                b_pmax = pv  # the reference peak learns only plausible readings
            # --- frozen value (identical power, and energy when reported)
            same = p == f_power and (e == f_energy or (e != e and f_energy != f_energy))
            if not same:
                f_since = ts
            if "frozen_value" in opened:
                if not same:
                    book.resolve("frozen_value", ts, ts)
                else:
                    book.extreme("frozen_value", float(ts - f_since))
            if (
                ts - f_since >= frozen_after
                and f_since != NO_TIME
                and not (ignore_zero and p == 0.0)
                and "frozen_value" not in opened
            ):
                book.open(
                    "frozen_value", f_since, ts, "warning", float(ts - f_since), 0.0,
                    frozen_after, "ms",
                )  # fmt: skip
            f_power, f_energy = p, e
            # --- energy counter going backwards
            if e == e:
                hit = e < last_energy - tol  # False while last_energy is NaN
                if hit or ct_on != NO_TIME:
                    is_open = "counter_backwards" in opened
                    ct_on, ct_off, action, when = gate_step(
                        ct_on, ct_off, is_open, ts, hit, 0, pa.counter_clear_ms,
                        pa.counter_clear_ms,
                    )  # fmt: skip
                    if action == OPEN:
                        book.open(
                            "counter_backwards", when, ts, "warning", e, last_energy, tol,
                            "Wh", -1,
                        )  # fmt: skip
                    elif action == RESOLVE:
                        book.resolve("counter_backwards", when, ts)
                last_energy = e

        ch = self.changes
        if last_seen != s.last_seen:
            ch["last_seen"] = int(last_seen)
        if (sk_on, sk_off) != (s.g_skew.on_since, s.g_skew.off_since):
            ch["g_skew"] = _gate(int(sk_on), int(sk_off))
        if not fresh:
            return
        if (sp_on, sp_off) != (s.g_spike.on_since, s.g_spike.off_since):
            ch["g_spike"] = _gate(sp_on, sp_off)
        if (ct_on, ct_off) != (s.g_counter.on_since, s.g_counter.off_since):
            ch["g_counter"] = _gate(ct_on, ct_off)
        if self.levels is not None:
            self.levels.store()
        ch.update(
            last_ts=last_ts,
            first_ts=first_ts,
            frozen_power=float(f_power),
            frozen_energy=float(f_energy),
            frozen_since=f_since,
            last_energy=float(last_energy),
            bucket_key=b_key,
            bucket_sum=b_sum,
            bucket_n=b_n,
            bucket_last_ts=b_last,
            bucket_vsum=b_vsum,
            bucket_vn=b_vn,
            bucket_pmax=float(b_pmax),
            peak_ref=peak,
        )

    def _history_threshold(self, peak: float, conn: float) -> float:
        """Spike threshold from the household's reference peak (applies after the history
        warm-up); the connection limit while there is no peak."""
        pa = self.pa
        if peak <= 0.0:
            return conn
        return min(conn, max(pa.history_factor * peak, pa.history_min_w))

    def _close_bucket(
        self, te: int, mean_w: float, vmean: float, pmax: float, peak: float, first_ts: int
    ) -> float:
        """Close one bucket; returns the new reference peak (decayed since the previous
        bucket, then raised to the bucket's highest plausible reading)."""
        lv = self.levels
        if lv is None:
            lv = self.levels = _Levels(self, first_ts)
        if lv.last_eval != NO_TIME and te > lv.last_eval:
            peak *= math.exp(-(te - lv.last_eval) / self.pa.tau_peak_ms)
        if pmax > peak:
            peak = pmax
        lv.close_bucket(te, mean_w, vmean)
        return float(peak)

    def profile(self) -> prof_mod.Profile:
        if self._prof is None:
            self._prof = prof_mod.decode(self.s.profile)
        return self._prof

    def finish(self) -> DetectorState:
        if self._prof is not None and self._prof_dirty:
            self.changes["profile"] = self._prof.tobytes()
        if self.book.dirty:
            self.changes["open"] = self.book.frozen()
        if not self.changes:
            return self.s
        return msgspec.structs.replace(self.s, **self.changes)


class _Levels:
    """The per-bucket loop, with the state's fields in plain attributes for speed."""

    def __init__(self, run: _Run, first_ts: int) -> None:
        s = run.s
        self.run = run
        self.pa = run.pa
        self.book = run.book
        self.tz = run.info.timezone
        self.exports = run.info.exports
        self.first_ts = first_ts
        self.last_eval = s.last_eval_ts
        self.lvl, self.lvl_long = s.lvl, s.lvl_long
        self.exp_lvl, self.sd_lvl, self.exp_long = s.exp_lvl, s.sd_lvl, s.exp_long
        self.volt = s.volt
        self.hour_key, self.hour_energy, self.hour_dur = s.hour_key, s.hour_energy, s.hour_dur
        self.hour_min, self.hour_tainted = s.hour_min, s.hour_tainted
        self.cur_mu, self.cur_sd, self.cur_src = s.cur_mu, s.cur_sd, s.cur_src
        self.quiet_w = s.quiet_w
        self.prev_w, self.hour_events, self.cur_rate = s.prev_w, s.hour_events, s.cur_rate
        self.quiet_since, self.quiet_exp, self.last_event = s.quiet_since, s.quiet_exp, s.last_event
        self.paired = False
        self._rates: prof_mod.Profile | None = None
        self.mins24 = list(s.mins24)
        self.base_ref, self.base_n, self.hours_since_base = s.base_ref, s.base_n, s.hours_since_base
        self.g_over = (s.g_over.on_since, s.g_over.off_since)
        self.g_low = (s.g_low.on_since, s.g_low.off_since)
        self.g_base = (s.g_base.on_since, s.g_base.off_since)
        self.g_volt = (s.g_volt.on_since, s.g_volt.off_since)
        pa = self.pa
        self.v_lo = pa.nominal_voltage_v * (1.0 - pa.voltage_tolerance)
        self.v_hi = pa.nominal_voltage_v * (1.0 + pa.voltage_tolerance)
        self.v_crit = pa.nominal_voltage_v * (1.0 - pa.voltage_critical_low)

    def _gate(
        self,
        kind: AlertType,
        g: tuple[int, int],
        t: int,
        trig: bool,
        hold: bool,
        min_on: int,
        clear: int,
    ) -> tuple[tuple[int, int], int, int]:
        on, off, action, when = gate_point(
            g[0], g[1], self.book.is_open(kind), t, trig, hold, min_on, clear
        )
        return (on, off), action, when

    def close_bucket(self, te: int, x: float, vmean: float) -> None:
        pa, book = self.pa, self.book
        if self.first_ts == NO_TIME:
            self.first_ts = te
        hk = te // HOUR_MS
        if hk != self.hour_key:
            self._close_hour(te)
            self.hour_key = hk
            how, hod = prof_mod.local_slots(hk * HOUR_MS, self.tz)
            prof = self.run.profile() if self.run.s.profile else None
            self.cur_mu, self.cur_sd, self.cur_src = prof_mod.baseline(
                prof, how, hod, self.run.s.archetype, pa
            )
            quiet = prof_mod.quiet_level(prof, pa)
            self.quiet_w = -1.0 if quiet is None else quiet
            rates = self.rates() if self.run.s.rates or self._rates is not None else None
            self.cur_rate = prof_mod.expected_rate(prof, rates, hod, pa)
        gap = te - self.last_eval if self.last_eval != NO_TIME else 0
        if self.last_eval == NO_TIME:
            dt = 0
            self.lvl = self.lvl_long = x
            self.exp_lvl = self.exp_long = self.cur_mu
            self.sd_lvl = self.cur_sd
        else:
            dt = max(te - self.last_eval, 0)
            if dt > pa.offline_after_ms:  # a silence does not count towards any duration
                dt = pa.offline_after_ms
                self._forget_pending()
            a = 1.0 - math.exp(-dt / pa.tau_level_ms)
            self.lvl += a * (x - self.lvl)
            self.exp_lvl += a * (self.cur_mu - self.exp_lvl)
            self.sd_lvl += a * (self.cur_sd - self.sd_lvl)
            a = 1.0 - math.exp(-dt / pa.tau_long_ms)
            self.lvl_long += a * (x - self.lvl_long)
            self.exp_long += a * (self.cur_mu - self.exp_long)
        self.last_eval = te
        self._switching(te, x, dt, gap)
        self.hour_energy += x * dt
        self.hour_dur += dt
        if x < self.hour_min:
            self.hour_min = x
        age = te - self.first_ts

        # implausible data (a frozen value) feeds neither consumption detector
        if book.is_open("frozen_value"):
            self._forget_pending()
            self.quiet_since, self.quiet_exp = te, 0.0  # no evidence either way
            self.hour_tainted = True
        else:
            self._consumption(te, age)

        # supply voltage (EN 50160) where the meter reports it
        if not math.isnan(vmean):
            if self.g_volt == (NO_TIME, NO_TIME) and not book.is_open("voltage"):
                a = 1.0 - math.exp(-dt / pa.tau_voltage_ms) if self.volt else 1.0
            else:
                a = 1.0 - math.exp(-dt / pa.tau_voltage_ms)
            self.volt += a * (vmean - self.volt)
            vv = self.volt
            out = vv < self.v_lo or vv > self.v_hi
            hold = vv < self.v_lo + pa.voltage_hold_v or vv > self.v_hi - pa.voltage_hold_v
            self.g_volt, action, when = self._gate(
                "voltage", self.g_volt, te, out, hold, pa.voltage_min_ms, pa.voltage_clear_ms
            )
            if action == OPEN:
                high = vv > self.v_hi
                sev: Severity = "critical" if vv < self.v_crit else "warning"
                book.open(
                    "voltage", when, te, sev, vv, pa.nominal_voltage_v,
                    self.v_hi if high else self.v_lo, "V", 1 if high else -1,
                )  # fmt: skip
            elif action == RESOLVE:
                book.resolve("voltage", when, te)
            elif book.is_open("voltage"):
                book.extreme("voltage", vv)

    def _consumption(self, te: int, age: int) -> None:
        pa, book = self.pa, self.book
        # sustained over-consumption against the learned (or archetype) profile
        k_sd = pa.over_k_sd if self.cur_src else pa.archetype_k_sd
        thr = max(k_sd * self.sd_lvl, pa.over_frac * self.exp_lvl, pa.over_abs_w)
        excess = self.lvl - self.exp_lvl
        warm = age >= 3 * pa.tau_level_ms
        self.g_over, action, when = self._gate(
            "over_consumption", self.g_over, te, warm and excess > thr,
            excess > pa.over_hold * thr, pa.over_min_ms, pa.over_clear_ms,
        )  # fmt: skip
        if action == OPEN:
            book.open(
                "over_consumption", when, te, "warning", self.lvl, self.exp_lvl,
                self.exp_lvl + thr, "W",
            )  # fmt: skip
        elif action == RESOLVE:
            book.resolve("over_consumption", when, te)
        elif book.is_open("over_consumption"):
            book.extreme("over_consumption", self.lvl)

        # vacancy: appliance switching has stopped for longer than the profile makes plausible
        # and the level is down to the household's quiet level (needs a learned day profile)
        learned = self.quiet_w >= 0.0 and self.cur_rate >= 0.0 and not self.exports
        quiet_w = self.quiet_w
        expected_act = max(self.exp_long - quiet_w, 0.0)
        act = self.lvl_long - quiet_w
        low = (
            learned
            and age >= 3 * pa.tau_long_ms
            and self.quiet_exp >= pa.low_events
            and te - self.quiet_since >= pa.low_min_ms
            and act < pa.low_ratio * expected_act
        )
        # back home: two switching events within low_clear_ms, or the level is back
        back = self.paired or (
            expected_act >= pa.low_abs_w and act >= pa.low_hold_ratio * expected_act
        )
        self.g_low, action, when = self._gate(
            "low_consumption", self.g_low, te, low, not back, 0, 0
        )
        if action == OPEN:
            book.open(
                "low_consumption", self.quiet_since, te, "info", self.lvl_long, self.exp_long,
                quiet_w + pa.low_ratio * expected_act, "W", -1,
            )  # fmt: skip
        elif action == RESOLVE:
            book.resolve("low_consumption", when, te)
        elif book.is_open("low_consumption"):
            book.extreme("low_consumption", self.lvl_long)
        if (
            self.g_over[0] != NO_TIME
            or self.quiet_exp >= 0.5 * pa.low_events
            or book.is_open("over_consumption")
            or book.is_open("low_consumption")
        ):
            self.hour_tainted = True

    def rates(self) -> prof_mod.Profile:
        if self._rates is None:
            self._rates = prof_mod.decode_rates(self.run.s.rates)
        return self._rates

    def _switching(self, te: int, x: float, dt: int, gap: int) -> None:
        """Count switching events (rises of the bucket mean) and the events expected since the
        last one. A rise across a silence is not an event."""
        pa = self.pa
        if self.quiet_since == NO_TIME:
            self.quiet_since = te
        if self.cur_rate > 0.0:
            self.quiet_exp += self.cur_rate * dt / HOUR_MS
        self.paired = False
        if 0 < gap <= pa.offline_after_ms and x - self.prev_w > pa.low_step_w:
            self.hour_events += 1
            self.paired = self.last_event != NO_TIME and te - self.last_event <= pa.low_clear_ms
            self.quiet_since = self.last_event = te
            self.quiet_exp = 0.0
        self.prev_w = x

    def _forget_pending(self) -> None:
        book = self.book
        if not book.is_open("over_consumption"):
            self.g_over = (NO_TIME, NO_TIME)
        if not book.is_open("low_consumption"):
            self.g_low = (NO_TIME, NO_TIME)
        if not book.is_open("voltage"):
            self.g_volt = (NO_TIME, NO_TIME)

    def _close_hour(self, te: int) -> None:
        """Learn the finished hour, then check the base load (once per hour)."""
        pa = self.pa
        if self.hour_key != NO_TIME and self.hour_dur > 0:
            if self.hour_dur >= pa.min_hour_coverage * HOUR_MS and not self.hour_tainted:
                how, hod = prof_mod.local_slots(self.hour_key * HOUR_MS, self.tz)
                prof = self.run.profile()
                per_hour = self.hour_events * HOUR_MS / self.hour_dur
                prof_mod.update_rate(prof, self.rates(), hod, per_hour, pa)
                prof_mod.update(prof, how, hod, self.hour_energy / self.hour_dur, pa)
                self.run._prof_dirty = True
            self.mins24.append(self.hour_min)
            del self.mins24[:-24]
            self.hours_since_base += 1
            self._base(te)
        self.hour_energy = 0.0
        self.hour_dur = 0
        self.hour_events = 0
        self.hour_min = math.inf
        self.hour_tainted = False

    def _base(self, te: int) -> None:
        pa, book = self.pa, self.book
        if len(self.mins24) < 12 or self.exports:
            return
        m = min(self.mins24)
        if self.base_n >= pa.base_min_days:
            thr = max(pa.base_abs_w, pa.base_frac * self.base_ref)
            self.g_base, action, when = self._gate(
                "base_load_rise", self.g_base, te, m > self.base_ref + thr,
                m > self.base_ref + pa.base_hold * thr, pa.base_min_ms, pa.base_clear_ms,
            )  # fmt: skip
            if action == OPEN:
                book.open(
                    "base_load_rise", when, te, "info", m, self.base_ref, self.base_ref + thr, "W"
                )
            elif action == RESOLVE:
                book.resolve("base_load_rise", when, te)
            elif book.is_open("base_load_rise"):
                book.extreme("base_load_rise", m)
        if self.hours_since_base >= 24:
            rising = self.g_base[0] != NO_TIME or book.is_open("base_load_rise")
            alpha = pa.base_alpha_in_alert if rising else max(1 / (self.base_n + 1), pa.base_alpha)
            self.base_ref += alpha * (m - self.base_ref)
            self.base_n += 1
            self.hours_since_base = 0

    def store(self) -> None:
        if self._rates is not None:
            self.run.changes["rates"] = self._rates.tobytes()
        self.run.changes.update(
            last_eval_ts=self.last_eval,
            lvl=self.lvl,
            lvl_long=self.lvl_long,
            exp_lvl=self.exp_lvl,
            sd_lvl=self.sd_lvl,
            exp_long=self.exp_long,
            volt=self.volt,
            hour_key=self.hour_key,
            hour_energy=self.hour_energy,
            hour_dur=self.hour_dur,
            hour_min=self.hour_min,
            hour_tainted=self.hour_tainted,
            cur_mu=self.cur_mu,
            cur_sd=self.cur_sd,
            cur_src=self.cur_src,
            quiet_w=self.quiet_w,
            prev_w=self.prev_w,
            hour_events=self.hour_events,
            cur_rate=self.cur_rate,
            quiet_since=self.quiet_since,
            quiet_exp=self.quiet_exp,
            last_event=self.last_event,
            mins24=tuple(self.mins24),
            base_ref=self.base_ref,
            base_n=self.base_n,
            hours_since_base=self.hours_since_base,
            g_over=_gate(*self.g_over),
            g_low=_gate(*self.g_low),
            g_base=_gate(*self.g_base),
            g_volt=_gate(*self.g_volt),
        )

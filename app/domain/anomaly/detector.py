"""``step`` and ``tick``: the household anomaly detector as state in, state out.

``step`` takes one household's readings of a batch (sorted by event time) and returns the new
state and the alert records opened or resolved; ``tick`` is called on a timer and detects what
a missing message cannot tell (a meter gone offline). Neither reads a clock.

Layers inside ``step``:

1. per reading, vectorised over the batch: offline gaps, spike, frozen value, counter going
   backwards, clock skew;
2. per closed time bucket (``bucket_ms``, 1 min): smoothed levels against the learned
   profile (over-consumption, low consumption), voltage, and per closed hour the profile
   update and the base-load check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
import numpy.typing as npt

from app.domain.anomaly import profile as prof_mod
from app.domain.anomaly.alerts import AlertRecord, AlertType, Severity
from app.domain.anomaly.book import AlertBook
from app.domain.anomaly.gates import OPEN, RESOLVE, gate_point, gate_runs
from app.domain.anomaly.params import HOUR_MS, AnomalyParams
from app.domain.anomaly.state import NO_TIME, DetectorState, Gate, initial_state
from app.domain.reading import Reading
from app.domain.registry import MeterInfo

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def tick(
    state: DetectorState, now_ms: int, params: AnomalyParams
) -> tuple[DetectorState, list[AlertRecord]]:
    """Clock-driven checks: opens ``offline`` when nothing arrived for ``offline_after_ms``.

    ``opened_at`` is the arrival time of the last reading, so the id does not depend on when
    the timer fires.
    """
    if state.last_seen == NO_TIME or any(a.type == "offline" for a in state.open):
        return state, []
    silence = now_ms - state.last_seen
    if silence <= params.offline_after_ms:
        return state, []
    book = AlertBook(state.household_id, state.meter_id, state.open)
    book.open(
        "offline", state.last_seen, now_ms, "warning", silence, 0.0, params.offline_after_ms, "ms"
    )
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
    reading: it drives offline and clock-skew detection. Readings not newer than the state's
    last one are ignored (late or duplicate).
    """
    if state is None:
        if not readings:
            raise ValueError("step needs a state or at least one reading")
        r0 = readings[0]
        state = initial_state(r0.household_id or info.household_id, r0.meter_id, info)
    n_all = len(readings)
    if n_all == 0:
        return state, []
    ts_all = np.fromiter((r.ts_ms for r in readings), dtype=np.int64, count=n_all)
    rec = None if received_ms is None else np.asarray(received_ms, dtype=np.int64)
    run = _Run(state, params, info)
    # arrival-time checks see every reading, even one with a stale event time
    run.offline(ts_all if rec is None else rec)
    if rec is not None:
        run.skew(ts_all, rec)
    i0 = int(np.searchsorted(ts_all, state.last_ts, side="right"))
    if i0 < n_all:
        rs = readings[i0:] if i0 else readings
        n = n_all - i0
        ts = ts_all[i0:]
        p = np.fromiter((r.power_w for r in rs), dtype=np.float64, count=n)
        e = np.fromiter(
            (math.nan if r.energy_wh is None else r.energy_wh for r in rs),
            dtype=np.float64,
            count=n,
        )
        v = np.fromiter(
            (math.nan if r.voltage_v is None else r.voltage_v for r in rs),
            dtype=np.float64,
            count=n,
        )
        run.spike(ts, p)
        run.frozen(ts, p, e)
        run.counter(ts, e)
        run.buckets(ts, p, v)
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

    # -------------------------------------------------------------- per reading (vectorised)
    def offline(self, arrival: I64) -> None:
        pa, book = self.pa, self.book
        prev = np.maximum.accumulate(np.concatenate(([self.s.last_seen], arrival)))
        start = 0
        if book.is_open("offline"):
            t0 = int(arrival[0])
            book.resolve("offline", t0, t0)
            start = 1
        gaps = arrival[start:] - prev[start:-1]
        for k in (np.flatnonzero(gaps > pa.offline_after_ms) + start).tolist():
            t_prev, t_now = int(prev[k]), int(arrival[k])
            if t_prev == NO_TIME:
                continue
            book.open(
                "offline", t_prev, t_now, "warning", t_now - t_prev, 0.0,
                pa.offline_after_ms, "ms",
            )  # fmt: skip
            book.resolve("offline", t_now, t_now)
        self.changes["last_seen"] = int(prev[-1])

    def spike(self, ts: I64, p: F64) -> None:
        s, pa, book = self.s, self.pa, self.book
        pv = np.abs(p) if self.info.exports else p
        conn = self.info.max_power_w * pa.connection_factor
        thr = conn
        history = s.first_ts != NO_TIME and int(ts[0]) - s.first_ts >= pa.history_warmup_ms
        if history and s.peak_ref > 0.0:
            thr = min(conn, max(pa.history_factor * s.peak_ref, pa.history_min_w))
        mask = pv > thr
        g = s.g_spike
        on, off, events = gate_runs(
            g.on_since, g.off_since, book.is_open("spike"), ts, mask, 0, pa.spike_clear_ms
        )
        for action, when, detected, k in events:
            if action == OPEN:
                sev: Severity = "critical" if pv[k] > conn else "warning"
                book.open("spike", when, detected, sev, pv[k], s.peak_ref, thr, "W")
            else:
                book.resolve("spike", when, detected)
        if book.is_open("spike") and mask.any():
            book.extreme("spike", float(pv[mask].max()))
        self.changes["g_spike"] = Gate(on, off)
        # decaying reference peak, fed only with plausible readings
        last = s.last_ts if s.last_ts != NO_TIME else int(ts[0])
        decay = math.exp(-max(0, int(ts[-1]) - last) / pa.tau_peak_ms)
        ok = pv[~mask]
        peak = s.peak_ref * decay
        if ok.size:
            peak = max(peak, float(ok.max()))
        self.changes["peak_ref"] = peak

    def frozen(self, ts: I64, p: F64, e: F64) -> None:
        s, pa, book = self.s, self.pa, self.book
        n = int(ts.shape[0])
        prev_p = np.concatenate(([s.frozen_power], p[:-1]))
        prev_e = np.concatenate(([s.frozen_energy], e[:-1]))
        same_e = (e == prev_e) | (np.isnan(e) & np.isnan(prev_e))
        same = (p == prev_p) & same_e
        start_idx = np.where(same, -1, np.arange(n))
        acc = np.maximum.accumulate(start_idx)
        since = np.where(acc >= 0, ts[np.maximum(acc, 0)], s.frozen_since)
        long_run = (since != NO_TIME) & (ts - since >= pa.frozen_after_ms)
        if pa.frozen_ignore_zero:
            long_run &= p != 0.0
        hits = np.flatnonzero(long_run)
        changes = np.flatnonzero(~same)
        pos = 0
        while pos < n:
            if not book.is_open("frozen_value"):
                j = int(np.searchsorted(hits, pos))
                if j >= hits.size:
                    break
                k = int(hits[j])
                book.open(
                    "frozen_value", int(since[k]), int(ts[k]), "warning", float(ts[k] - since[k]),
                    0.0, pa.frozen_after_ms, "ms",
                )  # fmt: skip
                pos = k + 1
            else:
                j = int(np.searchsorted(changes, pos))
                if j >= changes.size:
                    break
                k = int(changes[j])
                book.resolve("frozen_value", int(ts[k]), int(ts[k]))
                pos = k
        if book.is_open("frozen_value"):
            book.extreme("frozen_value", float(ts[-1] - since[-1]))
        self.changes["frozen_power"] = float(p[-1])
        self.changes["frozen_energy"] = float(e[-1])
        self.changes["frozen_since"] = int(since[-1])

    def counter(self, ts: I64, e: F64) -> None:
        s, pa, book = self.s, self.pa, self.book
        valid = ~np.isnan(e)
        if not valid.any():
            return
        ev = e[valid]
        tv = ts[valid]
        prev = np.concatenate(([s.last_energy], ev[:-1]))
        back = ev < prev - pa.counter_tolerance_wh  # NaN prev compares False
        g = s.g_counter
        on, off, events = gate_runs(
            g.on_since, g.off_since, book.is_open("counter_backwards"), tv, back, 0,
            pa.counter_clear_ms,
        )  # fmt: skip
        for action, when, detected, k in events:
            if action == OPEN:
                book.open(
                    "counter_backwards", when, detected, "warning", ev[k], prev[k],
                    pa.counter_tolerance_wh, "Wh", -1,
                )  # fmt: skip
            else:
                book.resolve("counter_backwards", when, detected)
        self.changes["g_counter"] = Gate(on, off)
        self.changes["last_energy"] = float(ev[-1])

    def skew(self, ts: I64, rec: I64) -> None:
        s, pa, book = self.s, self.pa, self.book
        offset = ts - rec
        mask = np.abs(offset) > pa.skew_limit_ms
        t = np.maximum.accumulate(rec)
        g = s.g_skew
        on, off, events = gate_runs(
            g.on_since, g.off_since, book.is_open("clock_skew"), t, mask, pa.skew_min_ms,
            pa.skew_clear_ms, reset=0,
        )  # fmt: skip
        for action, when, detected, k in events:
            if action == OPEN:
                book.open(
                    "clock_skew", when, detected, "warning", abs(int(offset[k])), 0.0,
                    pa.skew_limit_ms, "ms",
                )  # fmt: skip
            else:
                book.resolve("clock_skew", when, detected)
        if book.is_open("clock_skew") and mask.any():
            book.extreme("clock_skew", float(np.abs(offset[mask]).max()))
        self.changes["g_skew"] = Gate(on, off)

    # -------------------------------------------------------------- per bucket
    def buckets(self, ts: I64, p: F64, v: F64) -> None:
        s, pa = self.s, self.pa
        n = int(ts.shape[0])
        keys = ts // pa.bucket_ms
        brk = np.flatnonzero(keys[1:] != keys[:-1]) + 1
        starts = np.concatenate(([0], brk))
        counts = np.diff(np.concatenate((starts, [n])))
        sums = np.add.reduceat(p, starts)
        vok = ~np.isnan(v)
        vsums = np.add.reduceat(np.where(vok, v, 0.0), starts)
        vns = np.add.reduceat(vok.astype(np.int64), starts)
        lasts = ts[np.concatenate((brk - 1, [n - 1]))]
        bkeys = keys[starts].tolist()
        bsum, bn, bvs, bvn = sums.tolist(), counts.tolist(), vsums.tolist(), vns.tolist()
        blast = lasts.tolist()
        if s.bucket_key != NO_TIME:
            if s.bucket_key == bkeys[0]:
                bsum[0] += s.bucket_sum
                bn[0] += s.bucket_n
                bvs[0] += s.bucket_vsum
                bvn[0] += s.bucket_vn
            else:
                bkeys.insert(0, s.bucket_key)
                bsum.insert(0, s.bucket_sum)
                bn.insert(0, s.bucket_n)
                bvs.insert(0, s.bucket_vsum)
                bvn.insert(0, s.bucket_vn)
                blast.insert(0, s.bucket_last_ts)
        w = _Levels(self)
        for i in range(len(bkeys) - 1):
            vmean = bvs[i] / bvn[i] if bvn[i] else math.nan
            w.close_bucket(int(blast[i]), bsum[i] / bn[i], vmean)
        w.store()
        self.changes.update(
            bucket_key=int(bkeys[-1]),
            bucket_sum=float(bsum[-1]),
            bucket_n=int(bn[-1]),
            bucket_vsum=float(bvs[-1]),
            bucket_vn=int(bvn[-1]),
            bucket_last_ts=int(blast[-1]),
            last_ts=int(ts[-1]),
            first_ts=s.first_ts if s.first_ts != NO_TIME else int(ts[0]),
        )

    def profile(self) -> prof_mod.Profile:
        if self._prof is None:
            self._prof = prof_mod.decode(self.s.profile)
        return self._prof

    def finish(self) -> DetectorState:
        if self._prof is not None and self._prof_dirty:
            self.changes["profile"] = self._prof.tobytes()
        self.changes["open"] = self.book.frozen()
        return msgspec.structs.replace(self.s, **self.changes)


class _Levels:
    """The per-bucket loop, with the state's fields in plain attributes for speed."""

    def __init__(self, run: _Run) -> None:
        s = run.s
        self.run = run
        self.pa = run.pa
        self.book = run.book
        self.tz = run.info.timezone
        self.exports = run.info.exports
        self.first_ts = s.first_ts
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
            first_ts=self.first_ts,
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
            g_over=Gate(*self.g_over),
            g_low=Gate(*self.g_low),
            g_base=Gate(*self.g_base),
            g_volt=Gate(*self.g_volt),
        )

"""Edge pairing, per-household clusters and labelling (signature library + sub-meter teacher).

On an ``on`` edge the load joins the household's open loads and is labelled from its cluster
(a load of similar ΔP seen before in this household) or the signature library. An ``off`` edge
pairs with the open load of closest |ΔP| (within ``pair_rel_tol``); the pair gives the on-
duration, which refines the label and the cluster. Sub-meter channels, when present, override
labels ("teacher") and stick to the cluster.
"""

from __future__ import annotations

from app.domain.nilm.model import ApplianceEvent, Cluster, Edge, NilmParams, NilmState, OpenLoad
from app.domain.nilm.signatures import classify


def _cluster_for(state: NilmState, power_w: float, p: NilmParams, ts_ms: int) -> int:
    best, best_d = -1, 0.0
    for i, c in enumerate(state.clusters):
        d = abs(c.power_w - power_w)
        if d <= max(p.noise_abs_w, p.pair_rel_tol * c.power_w) and (best < 0 or d < best_d):
            best, best_d = i, d
    if best >= 0:
        c = state.clusters[best]
        c.n += 1
        c.power_w += (power_w - c.power_w) / min(c.n, 20)
        if c.last_on_ts > 0:
            period = (ts_ms - c.last_on_ts) / 1000.0
            c.n_period += 1
            c.mean_period_s += (period - c.mean_period_s) / min(c.n_period, 20)
        c.last_on_ts = ts_ms
        return best
    label, _ = classify(power_w)
    new = Cluster(power_w=power_w, last_on_ts=ts_ms, appliance=label)
    if len(state.clusters) < p.max_clusters:
        state.clusters.append(new)
        return len(state.clusters) - 1
    # Replace the least used untaught cluster.
    cands = [i for i, c in enumerate(state.clusters) if not c.taught] or [0]
    victim = min(cands, key=lambda i: state.clusters[i].n)
    state.clusters[victim] = new
    return victim


def _is_cyclic(c: Cluster) -> bool:
    """Thermostatic: several on-cycles with a regular period longer than the on-time."""
    return c.n_period >= 2 and c.mean_period_s > 1.5 * max(c.mean_on_s, 1.0)


def _label(c: Cluster, power_w: float, on_s: float | None) -> tuple[str, float]:
    if c.taught:
        return c.appliance, 1.0
    dur = on_s if on_s is not None else (c.mean_on_s if c.n_dur else None)
    return classify(power_w, dur, cyclic=_is_cyclic(c))


def _on_event(state: NilmState, o: OpenLoad, household_id: str) -> ApplianceEvent:
    if o.taught:
        label, conf = o.appliance, 1.0
    elif 0 <= o.cluster < len(state.clusters):
        label, conf = _label(state.clusters[o.cluster], o.power_w, None)
    else:
        label, conf = classify(o.power_w)
    o.appliance = label
    return ApplianceEvent(household_id=household_id, ts_ms=o.on_ts, appliance=label,
                          state="on", delta_w=o.power_w, confidence=round(conf, 3),
                          cluster=o.cluster)


def release(state: NilmState, now_ms: int, household_id: str, p: NilmParams,
            events: list[ApplianceEvent]) -> None:
    """Publish the held ``on`` of every small load that has run ``min_on_small_ms`` by
    ``now_ms`` (every edge up to ``now_ms`` is known), oldest first."""
    for o in state.open_loads:
        if not o.published and now_ms - o.on_ts >= p.min_on_small_ms:
            o.published = True
            events.append(_on_event(state, o, household_id))


def apply_edges(state: NilmState, edges: list[Edge], household_id: str, p: NilmParams,
                teacher: dict[int, str] | None = None, safe_ts: int = -1
                ) -> list[ApplianceEvent]:
    """Turn edges into labelled appliance events, updating open loads and clusters in place.

    ``teacher`` maps an edge time to the sub-metered appliance that made it. ``safe_ts``: no
    later call brings an edge at or before this time (held ``on`` events up to it go out).
    """
    events: list[ApplianceEvent] = []
    for e in edges:
        release(state, e.ts_ms, household_id, p, events)
        taught = teacher.get(e.ts_ms) if teacher else None
        # Loads open for longer than max_on_ms are forgotten (missed off edge).
        state.open_loads = [o for o in state.open_loads if e.ts_ms - o.on_ts <= p.max_on_ms]
        if e.delta_w > 0:
            if e.delta_w < p.edge_threshold_w:
                continue  # below the smallest tracked appliance
            ci = _cluster_for(state, e.delta_w, p, e.ts_ms)
            c = state.clusters[ci]
            if taught is not None:
                c.appliance, c.taught = taught, True
            label, _ = _label(c, e.delta_w, None)
            held = e.delta_w < p.small_load_w and taught is None
            o = OpenLoad(on_ts=e.ts_ms, power_w=e.delta_w, appliance=label, cluster=ci,
                         taught=taught is not None, published=not held)
            state.open_loads.append(o)
            if len(state.open_loads) > p.max_open_loads:
                del state.open_loads[0]
            if not held:
                events.append(_on_event(state, o, household_id))
            continue
        drop = -e.delta_w
        best, best_d = -1, 0.0
        for i, o in enumerate(state.open_loads):
            d = abs(o.power_w - drop)
            if d <= max(p.noise_abs_w, p.pair_rel_tol * o.power_w) and (best < 0 or d < best_d):
                best, best_d = i, d
        if best < 0:
            if drop < p.edge_threshold_w:
                continue  # a small drop that closes nothing: not an appliance
            label, conf = classify(drop)
            if taught is not None:
                label, conf = taught, 1.0
            events.append(ApplianceEvent(household_id=household_id, ts_ms=e.ts_ms,
                                         appliance=label, state="off", delta_w=e.delta_w,
                                         confidence=round(0.5 * conf, 3)))
            continue
        o = state.open_loads.pop(best)
        on_s = (e.ts_ms - o.on_ts) / 1000.0
        cl = state.clusters[o.cluster] if o.cluster < len(state.clusters) else None
        if cl is not None:
            cl.n_dur += 1
            cl.mean_on_s += (on_s - cl.mean_on_s) / min(cl.n_dur, 20)
            if taught is not None:
                cl.appliance, cl.taught = taught, True
            label, conf = _label(cl, o.power_w, on_s)
            if not cl.taught:
                cl.appliance = label
        else:
            label, conf = classify(o.power_w, on_s)
        if o.taught or taught is not None:
            label = taught or o.appliance
            conf = 1.0
        if not o.published and taught is None:
            continue  # a short low-power pulse: not an appliance cycle, nothing published
        if not o.published:
            events.append(_on_event(state, o, household_id))
        events.append(ApplianceEvent(household_id=household_id, ts_ms=e.ts_ms, appliance=label,
                                     state="off", delta_w=e.delta_w, confidence=round(conf, 3),
                                     cluster=o.cluster, duration_ms=e.ts_ms - o.on_ts))
    if safe_ts >= 0:
        release(state, safe_ts, household_id, p, events)
    return events

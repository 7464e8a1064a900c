"""Every Kafka topic of wattflow, declared once: name, partitions, retention, cleanup policy.

``python -m app.setup`` creates them (automatic topic creation is off on the broker); agents
subscribe through the Faust topic objects below. Keys and values are raw bytes everywhere:
wattflow encodes with msgspec/orjson itself, and a key Faust could not decode would otherwise
crash the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.main import app
from app.settings import Settings, get_settings

DAY_MS = 86_400_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def _delete(days: float) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(int(days * DAY_MS))}


WINDOW_SIZES = ("1m", "15m", "1h", "1d")
TABLES = ("window-state", "anomaly-state", "nilm-state")
"""Names of the Faust tables (app/tables.py)."""


def topic_specs(s: Settings) -> list[TopicSpec]:
    n = s.partitions
    specs = [
        TopicSpec(s.topic_raw_json, n, _delete(7), "raw JSON readings, key meter id"),
        TopicSpec(s.topic_raw_tic, n, _delete(7), "raw Linky TIC frames (envelope), key meter id"),
        TopicSpec(s.topic_readings, n, _delete(7),
                  "validated readings, ReadingBatch per message, partitioned by household"),
        TopicSpec(s.topic_deadletter, n, _delete(30), "rejected records with reason code"),
        TopicSpec(s.topic_late, n, _delete(30), "readings later than the window grace period"),
        TopicSpec(s.topic_alerts, n, _delete(365), "anomaly alerts opened/resolved, key household"),
        TopicSpec(s.topic_appliance_events, n, _delete(90), "NILM appliance events, key household"),
        TopicSpec(s.topic_appliance_energy, n, _delete(90),
                  "per-appliance energy of each closed window, key household"),
    ]
    specs += [TopicSpec(s.window_topic(size), n, _delete(30), f"closed {size} windows")
              for size in WINDOW_SIZES]
    # Faust creates its table changelogs itself at start; creating them here first avoids a
    # worker racing the broker's metadata on a brand-new deployment
    specs += [TopicSpec(f"{s.app_id}-{table}-changelog", n,
                        {"cleanup.policy": "compact"}, f"changelog of the {table} table")
              for table in TABLES]
    specs.append(TopicSpec(ingest_changelog_topic(s), n,
                           {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                            "segment.ms": str(3_600_000)},
                           "ingest stage: per-meter dedupe/counter state (compacted)"))
    return specs


def ingest_changelog_topic(s: Settings) -> str:
    """The ingest stage's per-meter state (a Faust-style changelog it keeps itself)."""
    return f"{s.app_id}-ingest-meter-state-changelog"


def _raw(name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=get_settings().partitions)


_s = get_settings()
raw_json_topic = _raw(_s.topic_raw_json)
raw_tic_topic = _raw(_s.topic_raw_tic)
readings_topic = _raw(_s.topic_readings)
deadletter_topic = _raw(_s.topic_deadletter)
late_topic = _raw(_s.topic_late)
alerts_topic = _raw(_s.topic_alerts)
appliance_events_topic = _raw(_s.topic_appliance_events)
appliance_energy_topic = _raw(_s.topic_appliance_energy)
window_topics = {size: _raw(_s.window_topic(size)) for size in WINDOW_SIZES}

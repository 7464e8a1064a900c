"""Faust tables (RocksDB store, compacted changelog topics), declared once.

Keys are the raw bytes of the id (meter id or household id) and values are msgspec-encoded
immutable state, written back whole (``app.checkpoint``). A household's key is filed under the
readings partition its batches go to, ``murmur2(household_id)`` (see ``app.partitioning``), so
state and the readings that update it stay co-partitioned even though one readings message
carries many households. (The ingest stage keeps its per-meter state itself: agents/ingest.py.)
"""

from __future__ import annotations

import faust

from app.main import app
from app.settings import get_settings


def _table(name: str, help_: str) -> faust.Table:
    return app.Table(name, key_type=bytes, value_type=bytes,
                     partitions=get_settings().partitions, help=help_)


# names as in app.topics.TABLES (setup creates their changelogs)
window_state_table = _table("window-state", "windows: per-household open windows")
anomaly_state_table = _table("anomaly-state", "anomaly detectors: per-household state")
nilm_state_table = _table("nilm-state", "NILM: per-household detector and appliance model")

"""Faust tables (RocksDB store, compacted changelog topics), declared once.

Keys are the raw bytes of the id (meter id or household id) and values are msgspec-encoded
immutable state, written back whole (``app.checkpoint``). A key is filed under the partition of
the source messages that update it: the raw record's partition for meter state, and for
household state the readings partition its batches go to, ``murmur2(household_id)`` (see
``app.partitioning``) — so state and the readings that update it stay co-partitioned even though
one readings message carries many households.
"""

from __future__ import annotations

import faust

from app.main import app
from app.settings import get_settings


def _table(name: str, help_: str) -> faust.Table:
    return app.Table(name, key_type=bytes, value_type=bytes,
                     partitions=get_settings().partitions, help=help_)


meter_state_table = _table("meter-state", "ingest: per-meter dedupe and counter state")
window_state_table = _table("window-state", "windows: per-household open windows")
anomaly_state_table = _table("anomaly-state", "anomaly detectors: per-household state")
nilm_state_table = _table("nilm-state", "NILM: per-household detector and appliance model")

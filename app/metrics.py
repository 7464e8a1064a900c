"""Prometheus metrics of a worker, named by Prometheus conventions (units, ``_total``).

Declared once here; agents and services import what they update. The worker serves them on
``settings.metrics_port`` (see ``app.main``), which the local stack's Prometheus scrapes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# --- ingestion ---------------------------------------------------------------------------------
RECORDS_IN = Counter("wattflow_raw_records_total", "Raw records consumed", ["source"])
READINGS_VALID = Counter("wattflow_readings_valid_total", "Readings accepted", ["source"])
READINGS_INVALID = Counter("wattflow_readings_invalid_total",
                           "Readings dead-lettered, by reason code", ["reason"])
READINGS_DUPLICATE = Counter("wattflow_readings_duplicate_total",
                             "Exact duplicate readings dropped (same meter and timestamp)")
COUNTER_RESETS = Counter("wattflow_counter_resets_total", "Meter energy counter resets seen")
INGEST_BATCH = Histogram("wattflow_ingest_batch_records", "Raw records per ingest batch",
                         buckets=BATCH_BUCKETS)

# --- windows -----------------------------------------------------------------------------------
READINGS_LATE = Counter("wattflow_readings_late_total",
                        "Readings later than the grace period, sent to the late-data topic")
WINDOWS_EMITTED = Counter("wattflow_windows_emitted_total", "Closed windows emitted", ["size"])
READINGS_IMPLAUSIBLE = Counter(
    "wattflow_readings_implausible_total",
    "Readings dead-lettered beyond the connection and forwarded to spike detection")
WINDOWS_NOT_REEMITTED = Counter(
    "wattflow_windows_not_reemitted_total",
    "Windows a replay closed again but did not emit: already in the window topics")
WINDOWS_CLOSED_BY_CLOCK = Counter(
    "wattflow_windows_closed_by_clock_total",
    "Windows closed by the partition's event-time clock before the household's own next reading")
CHANGELOG_WRITES = Counter("wattflow_table_writes_total",
                           "Table assignments (changelog messages) by table", ["table"])
WINDOWS_DUPLICATES = Counter(
    "wattflow_windows_duplicates_dropped_total",
    "Readings the windows stage dropped as exact duplicates (same meter and time as a reading "
    "already applied; e.g. re-sent by the ingest stage replaying after a crash or rebalance)")
INGEST_READBACK = Counter(
    "wattflow_ingest_readback_readings_total",
    "Readings found already produced when raw partitions were assigned (after a crash or a "
    "rebalance), read back from the readings topic")
REPLAY_SKIPPED_RECORDS = Counter(
    "wattflow_ingest_replay_skipped_records_total",
    "Replayed raw records whose readings were already produced: counted as duplicates, not "
    "ingested again")
REPLAYED_SKIPPED = Counter(
    "wattflow_replayed_messages_skipped_total",
    "Readings-topic messages replayed from a committed offset behind the table's checkpoint, "
    "skipped: the checkpointed state already holds them", ["table"])
READINGS_WINDOWED = Counter("wattflow_readings_windowed_total", "Readings applied to windows")
STAGE_READINGS = Counter("wattflow_stage_readings_total",
                         "Readings processed by a stage of the readings topic", ["stage"])

# --- anomalies and NILM ------------------------------------------------------------------------
ALERTS_OPENED = Counter("wattflow_alerts_opened_total", "Alerts opened", ["type"])
ALERTS_RESOLVED = Counter("wattflow_alerts_resolved_total", "Alerts resolved", ["type"])
APPLIANCE_EVENTS = Counter("wattflow_appliance_events_total", "NILM appliance events",
                           ["appliance"])

# --- InfluxDB sink -----------------------------------------------------------------------------
INFLUX_POINTS = Counter("wattflow_influx_points_written_total", "Points acknowledged by InfluxDB",
                        ["measurement"])
INFLUX_BATCH = Histogram("wattflow_influx_batch_points", "Points per InfluxDB write",
                         buckets=BATCH_BUCKETS)
INFLUX_LATENCY = Histogram("wattflow_influx_write_seconds", "InfluxDB write latency",
                           buckets=LATENCY_BUCKETS)
INFLUX_RETRIES = Counter("wattflow_influx_retries_total", "Retried InfluxDB writes")
INFLUX_REJECTED = Counter("wattflow_influx_points_rejected_total",
                          "Points InfluxDB refused (4xx), dead-lettered")
INFLUX_PAUSED = Counter("wattflow_influx_paused_seconds_total",
                        "Time consumption waited for InfluxDB to come back")

# --- the worker --------------------------------------------------------------------------------
DEADLETTERS = Counter("wattflow_deadletters_total", "Dead-letter records produced", ["stage"])
PROCESSING_LATENCY = Histogram("wattflow_processing_seconds",
                               "Reading event time (Kafka timestamp) to processed, by stage",
                               ["stage"], buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge("wattflow_consumer_lag_messages", "Consumer lag by topic and partition",
                     ["topic", "partition"])
EVENT_LOOP_LAG = Gauge("wattflow_event_loop_lag_seconds", "Latest event-loop scheduling delay")
GC_PAUSE = Histogram("wattflow_gc_pause_seconds", "Garbage-collection pauses by generation",
                     ["generation"], buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))

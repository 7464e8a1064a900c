"""The one settings object: the only reader of the environment.

Every value comes from a ``WATTFLOW_*`` environment variable (``WATTFLOW_KAFKA_PORT`` sets
``kafka_port``) with a default that works against the local stack (``python -m app.stack up``).
Secrets are ``SecretStr`` so they never show in logs or reprs; the defaults are for the
loopback-only development stack and are not secrets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    return Path.cwd() / "var"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "wattflow"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATTFLOW_", frozen=True, extra="ignore")

    # --- where things live -------------------------------------------------------------------
    state_dir: Path = Field(default_factory=_default_state_dir)
    """Data and logs of the local stack and the workers' RocksDB tables."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Downloads and builds (Kafka jars, influxd binary), shared by every clone on a machine."""
    host: str = "127.0.0.1"
    """Every local server binds here: loopback only."""

    # --- Kafka --------------------------------------------------------------------------------
    kafka_version: str = "4.1.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_bootstrap: str = ""
    """Bootstrap servers; empty means ``host:kafka_port`` of the local stack."""
    partitions: int = 4
    replication_factor: int = 1

    topic_raw_json: str = "meter.raw.json"
    topic_raw_tic: str = "meter.raw.tic"
    topic_readings: str = "meter.readings"
    topic_deadletter: str = "meter.deadletter"
    topic_late: str = "meter.late"
    topic_windows_prefix: str = "meter.windows."
    topic_alerts: str = "alerts"
    topic_appliance_events: str = "appliance.events"
    topic_appliance_energy: str = "appliance.energy"

    # --- InfluxDB -----------------------------------------------------------------------------
    influx_version: str = "v1.8.10"
    influx_port: int = 18086
    influx_rpc_port: int = 18088
    influx_url: str = ""
    """Empty means ``http://host:influx_port``."""
    influx_user: str = "wattflow"
    influx_password: SecretStr = SecretStr("wattflow-dev")
    influx_db: str = "wattflow"
    # InfluxDB storage (app/services/influx*.py, docs/influx.md) --- begin
    influx_retention_raw: str = "7d"
    """Retention of the 1-second readings (InfluxQL duration: 7d, 52w, INF)."""
    influx_retention_1m: str = "90d"
    influx_retention_15m: str = "730d"
    influx_retention_1h: str = "3650d"
    influx_retention_1d: str = "3650d"
    influx_retention_events: str = "3650d"
    """Appliance (NILM) events and anomaly alerts."""
    influx_batch_points: int = 5000
    """Points per InfluxDB write request."""
    influx_write_concurrency: int = 4
    """InfluxDB write requests in flight at once."""
    influx_timeout_s: float = 10.0
    influx_retry_max_s: float = 10.0
    """Cap of the exponential backoff between retries of a failed write."""
    # InfluxDB storage --- end

    # --- PostgreSQL ---------------------------------------------------------------------------
    pg_port: int = 15432
    pg_user: str = "wattflow"
    pg_password: SecretStr = SecretStr("wattflow-dev")
    pg_db: str = "wattflow"
    pg_dsn: SecretStr = SecretStr("")
    """Empty means the local stack's cluster built from the pg_* settings."""

    # --- Prometheus and metrics ---------------------------------------------------------------
    prometheus_port: int = 19090
    metrics_port: int = 9464
    """The worker's own /metrics endpoint; Prometheus scrapes it."""
    metrics_ports_scraped: str = "9464,9465"
    """Worker metrics ports the local Prometheus scrapes (comma-separated)."""

    # --- Faust worker -------------------------------------------------------------------------
    app_id: str = "wattflow"
    agents: str = "ingest,windows,anomaly,nilm,storage"
    """Stages this worker runs (comma-separated): all by default; a subset lets operators
    run stages on separate workers and benchmarks measure one stage alone."""
    web_port: int = 6066
    """Faust's own web server, off by default (workers run with --without-web)."""
    worker_datadir: Path | None = None
    """RocksDB tables of this worker; two workers on one machine need two directories."""
    commit_interval_s: float = 2.0
    kafka_session_timeout_s: float = 10.0
    """How long a crashed worker keeps its partitions before the group rebalances."""
    checkpoint_interval_s: float = 30.0
    """How often per-household state is written to the tables (changelog) and the offsets of
    the readings it covers are acknowledged. Four state stores x one write per household per
    30 s at one reading a second = 0.13 changelog messages per reading; after a crash at most
    this much is replayed (deterministically)."""
    registry_refresh_s: float = 30.0

    # --- windows ------------------------------------------------------------------------------
    window_grace_s: float = 30.0
    """Late readings up to this long after a window's end still update it."""
    window_max_gap_s: float = 300.0
    """Longest silence between two readings that is still integrated (else flagged gap)."""
    window_idle_timeout_s: float = 900.0
    """A silent household's windows close this long after their end (+ grace)."""
    window_close_interval_s: float = 10.0

    # --- anomalies and NILM -------------------------------------------------------------------
    offline_after_s: float = 900.0
    """A meter silent for longer than this (wall clock) is reported offline."""
    offline_check_interval_s: float = 30.0
    nilm_window: str = "15m"
    """Window size of the per-appliance energy breakdown (a window size of InfluxDB)."""
    nilm_window_s: float = 900.0
    nilm_chunk_s: float = 60.0
    """Readings are run through NILM in chunks of this much event time."""
    batch_size: int = 5000
    """Messages taken from a stream at once (``take_events``)."""
    batch_within_s: float = 0.5
    """Ingest: longest wait for raw records to arrive (the fetch returns as soon as there are
    some)."""
    stream_within_s: float = 0.1
    """Agents on the readings topic: longest wait for more messages before processing what
    arrived (each message already holds a batch of readings, so a short wait keeps latency
    low without losing the batching)."""

    @property
    def kafka_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.kafka_port}"

    @property
    def influx_http_url(self) -> str:
        return self.influx_url or f"http://{self.host}:{self.influx_port}"

    @property
    def postgres_dsn(self) -> str:
        dsn = self.pg_dsn.get_secret_value()
        if dsn:
            return dsn
        pw = self.pg_password.get_secret_value()
        return f"postgresql://{self.pg_user}:{pw}@{self.host}:{self.pg_port}/{self.pg_db}"

    def window_topic(self, size_name: str) -> str:
        return f"{self.topic_windows_prefix}{size_name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

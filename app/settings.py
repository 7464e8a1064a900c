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

    # --- InfluxDB -----------------------------------------------------------------------------
    influx_version: str = "v1.8.10"
    influx_port: int = 18086
    influx_rpc_port: int = 18088
    influx_url: str = ""
    """Empty means ``http://host:influx_port``."""
    influx_user: str = "wattflow"
    influx_password: SecretStr = SecretStr("wattflow-dev")
    influx_db: str = "wattflow"

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
    web_port: int = 6066
    batch_size: int = 5000
    """Messages taken from a stream at once (``take_events``)."""
    batch_within_s: float = 0.5
    """Longest wait for a batch to fill."""

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

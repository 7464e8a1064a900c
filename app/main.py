"""The Faust application object. Agents live in ``agents/``; ``app.worker`` loads them all.

Start a worker with ``faust -A app.worker worker`` (see ``Procfile``).
"""

from __future__ import annotations

import gc
import time

import faust

from app import metrics
from app.settings import Settings, get_settings


def create_app(settings: Settings) -> faust.App:
    datadir = settings.worker_datadir or (settings.state_dir / "worker")
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_servers}",
        store="rocksdb://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        processing_guarantee="at_least_once",
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        broker_commit_every=1_000_000,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=5,
        producer_max_batch_size=1_048_576,
        producer_compression_type=None,
        stream_buffer_maxsize=65_536,
        stream_wait_empty=False,
        table_cleanup_interval=30.0,
        web_enabled=False,
        web_bind=settings.host,
        web_port=settings.web_port,
        autodiscover=False,
        loghandlers=[],
    )


app = create_app(get_settings())


@app.task
async def tune_gc() -> None:
    """Steady-state garbage collection: the objects of start-up (modules, the app, tables)
    are frozen out of collections, and young-generation collections run every 50 000
    allocations instead of 700 (each batch allocates tens of thousands of short-lived
    readings; full collections of a large heap were a measurable share of a worker's CPU)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.callbacks.append(_time_gc)
    # table writes (send_soon) queue in Faust's producer buffer; a checkpoint writes one
    # record per changed household, so let the buffer hold a checkpoint's worth instead of
    # stalling the streams every 100 records
    app.producer.buffer.max_messages = 50_000


_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, int]) -> None:
    """Each collection's pause into ``wattflow_gc_pause_seconds`` (a full collection of a
    large heap stops every agent of the worker at once)."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        metrics.GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started)

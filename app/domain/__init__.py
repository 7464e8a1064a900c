"""Pure computation core of wattflow.

Nothing under ``app.domain`` imports Faust, Kafka, InfluxDB or PostgreSQL clients: only the
standard library, numpy and msgspec. Every module here is unit-tested and benchmarked alone;
agents in ``agents/`` wire these functions into streams.

Clocks are injected (a ``now_ms`` argument), never read here.
"""

from app.domain import native as _native

_native.check()

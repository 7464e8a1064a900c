"""InfluxSink: batched InfluxDB writes that return only once every point is acknowledged.

    async with InfluxSink(settings, on_rejected=dead_letter) as sink:
        report = await sink.write({"raw": lines, "1m": window_lines})
        # every line is now either stored in InfluxDB or was handed to dead_letter

Guarantees (see docs/influx.md):

* ``write`` returns only when InfluxDB acknowledged (HTTP 204) every point, or refused the
  point itself (4xx) and it was handed to ``on_rejected(line, server_message)``. The caller
  acks its Kafka messages after that, so offsets are committed only for stored points.
* Retriable failures (connection refused/reset, timeouts, 5xx, 401/403/404/429, InfluxDB down,
  a retention policy or database missing) are retried with capped exponential backoff, for
  as long as the sink runs. ``write`` blocks meanwhile, so consumption pauses instead of
  buffering without bound, and resumes by itself; the paused wall time is counted in
  ``wattflow_influx_paused_seconds_total``. ``stop()`` ends the wait with
  :class:`InfluxSinkStopped` (nothing acknowledged, so nothing may be acked).
* A 400/422 answer (parse error, field type conflict, points beyond retention; InfluxDB 1.8
  says "partial write" and writes the other points) makes the sink bisect the batch: halves
  are re-written (points are idempotent: same series + timestamp overwrites) until the
  refused lines are isolated, and each goes to ``on_rejected`` with the server's message.

Writes go through influxdb-client's async API (``InfluxDBClientAsync`` and its ``WriteService``
= the ``/api/v2/write`` call that ``WriteApiAsync.write`` makes) with a body this module
gzips itself at level 1: the client's own ``enable_gzip`` compresses at level 9, ~5 µs of CPU
per point, which alone is over the sink's CPU budget. The gzip is ISA-L's (``isal``, levels
0-3; plain ``zlib`` if it is missing or for levels above 3): 0.08 µs/point against zlib's
0.32 at level 1, and a body ~6 % smaller. InfluxDB sits on the same 2 cores, so every µs of
client CPU is server throughput lost. A 5000-point body (~600 KB) is compressed inline on the
event loop (~0.4 ms): the thread hop cost more CPU than it saved; only bodies of 4 MiB and up
go to a thread, to keep the loop responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import orjson
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService

from app.metrics import (
    INFLUX_BATCH,
    INFLUX_LATENCY,
    INFLUX_PAUSED,
    INFLUX_POINTS,
    INFLUX_REJECTED,
    INFLUX_RETRIES,
)
from app.services.lifecycle import Lifecycle
from app.settings import Settings, get_settings

try:  # ISA-L deflate: ~4x less CPU than zlib at level 1, and a smaller body (docs/influx.md)
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib keeps the sink working
    _isal_zlib = None  # type: ignore[assignment]

__all__ = [
    "InfluxError",
    "InfluxSink",
    "InfluxSinkStopped",
    "RejectedCallback",
    "WriteReport",
]

log = logging.getLogger(__name__)

Line = bytes | str
RejectedCallback = Callable[[bytes, str], Awaitable[None] | None]

_REJECT_STATUS = frozenset({400, 422})
_TOO_LARGE = 413
_COMPRESS_IN_THREAD_BYTES = 4 * 1024 * 1024
_GZIP_WBITS = 31  # gzip container, 32 KiB window


class InfluxError(Exception):
    """Root of the InfluxDB service errors. ``retriable``: the same call may succeed later."""

    retriable = False


class InfluxSinkStopped(InfluxError):
    """The sink was stopped while a write waited for InfluxDB; that write is not acknowledged."""

    retriable = True


@dataclass
class WriteReport:
    """What one ``write`` call did."""

    points: int = 0
    """Lines given."""
    written: int = 0
    """Lines acknowledged by InfluxDB."""
    rejected: int = 0
    """Lines InfluxDB refused, handed to ``on_rejected``."""
    requests: int = 0
    retries: int = 0
    paused_s: float = 0.0
    """Wall time this call spent waiting for InfluxDB to come back."""


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _server_message(e: ApiException) -> str:
    body = e.body
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return str(body).strip()
        if isinstance(doc, dict):
            return str(doc.get("error") or doc.get("message") or body)
        return str(body)
    return f"HTTP {e.status} {e.reason or ''}".strip()


def _join(lines: Sequence[Line]) -> bytes:
    try:
        if isinstance(lines[0], str):
            return "\n".join(lines).encode()  # type: ignore[arg-type]
        return b"\n".join(lines)  # type: ignore[arg-type]
    except TypeError:
        return b"\n".join(x.encode() if isinstance(x, str) else x for x in lines)


def _as_bytes(line: Line) -> bytes:
    return line.encode() if isinstance(line, str) else line


def _measurement(line: bytes) -> bytes:
    end = len(line)
    for sep in (b",", b" "):
        i = line.find(sep)
        while i > 0 and line[i - 1] == 0x5C:  # escaped
            i = line.find(sep, i + 1)
        if 0 <= i < end:
            end = i
    return line[:end]


def _gzip_compress(raw: bytes, level: int) -> bytes:
    """A standard gzip member of ``raw``: ISA-L for levels 0-3 when installed, else zlib."""
    if _isal_zlib is not None and 0 <= level <= 3:
        return _isal_zlib.compress(raw, level, _GZIP_WBITS)
    return zlib.compress(raw, level, _GZIP_WBITS)


def _count_measurements(raw: bytes, n: int) -> Mapping[bytes, int]:
    """Points per measurement in a joined body, at C speed when the batch is made of runs of
    one or two measurements (the first and the last line's: writers group lines so).

    A batch of one measurement, all lines with tags or all without (the usual case), costs a
    single scan of the body."""
    head = raw[: raw.find(b"\n")] if n > 1 else raw
    first = _measurement(head)
    prefix = b"\n" + head[:len(first) + 1]  # "\n<measurement>," or "\n<measurement> "
    if first and b"\\" not in first and len(head) > len(first) and (
            n == 1 or raw.count(prefix) == n - 1):
        return {first: n}
    last = _measurement(raw[raw.rfind(b"\n") + 1:]) if n > 1 else first
    if first and last and b"\\" not in first and b"\\" not in last:
        counts = {first: raw.count(b"\n" + first + b",") + raw.count(b"\n" + first + b" ") + 1}
        if last != first:
            counts[last] = raw.count(b"\n" + last + b",") + raw.count(b"\n" + last + b" ")
        if sum(counts.values()) == n:
            return counts
    return Counter(_measurement(x) for x in raw.split(b"\n"))


class InfluxSink(Lifecycle):
    """Batched, acknowledged, never-losing writer to InfluxDB (a lifecycle object)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_rejected: RejectedCallback | None = None,
        batch_points: int | None = None,
        concurrency: int | None = None,
        gzip_level: int = 1,
        retry_base_s: float = 0.1,
    ) -> None:
        self.settings = settings or get_settings()
        s = self.settings
        self.database = s.influx_db
        self.on_rejected = on_rejected
        self.batch_points = batch_points or s.influx_batch_points
        self.concurrency = concurrency or s.influx_write_concurrency
        self.gzip_level = gzip_level
        self.retry_base_s = retry_base_s
        self.retry_max_s = s.influx_retry_max_s
        self._client: InfluxDBClientAsync | None = None
        self._service: WriteService | None = None
        self._sem: asyncio.Semaphore | None = None
        self._stopping = asyncio.Event()
        self._failing = 0
        self._pause_t0 = 0.0

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        s = self.settings
        token = f"{s.influx_user}:{s.influx_password.get_secret_value()}"
        self._stopping = asyncio.Event()
        self._client = InfluxDBClientAsync(
            url=s.influx_http_url, token=token, org="-",
            timeout=int(s.influx_timeout_s * 1000),
            connection_pool_maxsize=self.concurrency + 2)
        self._service = WriteService(self._client.api_client)
        self._sem = asyncio.Semaphore(self.concurrency)

    async def stop(self) -> None:
        self._stopping.set()
        client, self._client, self._service = self._client, None, None
        if client is not None:
            await client.close()

    @property
    def paused(self) -> bool:
        """Whether some write is currently waiting for InfluxDB to come back."""
        return self._failing > 0

    # --- writing --------------------------------------------------------------------------------
    async def write(self, lines_by_rp: Mapping[str, Sequence[Line]]) -> WriteReport:
        """Write every line into ``database/<rp>``; return once all are acknowledged.

        Lines are line protocol with **millisecond** timestamps. Raises
        :class:`InfluxSinkStopped` if the sink stops before InfluxDB acknowledged everything,
        and whatever ``on_rejected`` raises (the write is then not complete either).
        """
        if self._service is None:
            raise InfluxError("InfluxSink.write before start()")
        report = WriteReport()
        try:
            async with asyncio.TaskGroup() as tg:
                for rp, lines in lines_by_rp.items():
                    report.points += len(lines)
                    for i in range(0, len(lines), self.batch_points):
                        tg.create_task(
                            self._write_lines(rp, lines[i:i + self.batch_points], report))
        except BaseExceptionGroup as group:
            # one error for the caller: the callback's own error first, else "stopped"
            errors = sorted(group.exceptions, key=lambda e: isinstance(e, InfluxSinkStopped))
            raise errors[0] from None
        return report

    async def _write_lines(self, rp: str, lines: Sequence[Line], report: WriteReport) -> None:
        if not lines:
            return
        try:
            await self._post(rp, lines, report)
            return
        except _Refused as refused:
            if len(lines) == 1:
                await self._reject(_as_bytes(lines[0]), refused.message, report)
                return
            log.info("influx: %d lines to %s refused (%s): isolating the bad ones",
                     len(lines), rp, refused.message)
        mid = len(lines) // 2
        await self._write_lines(rp, lines[:mid], report)
        await self._write_lines(rp, lines[mid:], report)

    async def _reject(self, line: bytes, message: str, report: WriteReport) -> None:
        INFLUX_REJECTED.inc()
        report.rejected += 1
        log.warning("influx: point rejected: %s: %r", message, line[:200])
        if self.on_rejected is not None:
            result = self.on_rejected(line, message)
            if inspect.isawaitable(result):
                await result

    async def _gzip(self, raw: bytes) -> bytes:
        if len(raw) >= _COMPRESS_IN_THREAD_BYTES:
            return await asyncio.to_thread(_gzip_compress, raw, self.gzip_level)
        return _gzip_compress(raw, self.gzip_level)

    async def _post(self, rp: str, lines: Sequence[Line], report: WriteReport) -> None:
        """POST until acknowledged; raise ``_Refused`` when InfluxDB refuses the points."""
        raw = b""
        body = b""
        bucket = f"{self.database}/{rp}"
        attempt = 0
        failing = False
        try:
            while True:
                service, sem = self._service, self._sem
                if service is None or sem is None or self._stopping.is_set():
                    raise InfluxSinkStopped("InfluxSink stopped before InfluxDB acknowledged")
                error: str
                async with sem:
                    if not body:
                        # built under the semaphore: at most `concurrency` bodies in memory,
                        # and no pile of gzip threads competing with the server for CPU
                        raw = _join(lines)
                        body = await self._gzip(raw)
                    t0 = time.perf_counter()
                    report.requests += 1
                    try:
                        await service.post_write_async(
                            org="-", bucket=bucket, body=body, precision=WritePrecision.MS,
                            content_encoding="gzip", content_type="text/plain; charset=utf-8")
                    except ApiException as e:
                        status = int(e.status or 0)
                        message = _server_message(e)
                        if status in _REJECT_STATUS and "not found" not in message:
                            raise _Refused(status, message) from None
                        if status == _TOO_LARGE and len(lines) > 1:
                            raise _Refused(status, message) from None
                        error = f"HTTP {status}: {message}"
                    except (aiohttp.ClientError, TimeoutError, OSError) as e:
                        error = f"{type(e).__name__}: {e}"
                    else:
                        INFLUX_LATENCY.observe(time.perf_counter() - t0)
                        INFLUX_BATCH.observe(len(lines))
                        for m, n in _count_measurements(raw, len(lines)).items():
                            INFLUX_POINTS.labels(m.decode("utf-8", "replace")).inc(n)
                        report.written += len(lines)
                        return
                if not failing:
                    failing = True
                    self._enter_pause()
                attempt += 1
                report.retries += 1
                INFLUX_RETRIES.inc()
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(attempt - 1, 30))
                delay *= random.uniform(0.8, 1.2)
                log_at = logging.WARNING if attempt == 1 or attempt % 20 == 0 else logging.DEBUG
                log.log(log_at, "influx: write of %d points to %s failed (%s); retry %d in "
                        "%.1fs", len(lines), bucket, error, attempt, delay)
                await self._sleep(delay)
        finally:
            if failing:
                report.paused_s += self._leave_pause()

    def _enter_pause(self) -> None:
        if self._failing == 0:
            self._pause_t0 = time.monotonic()
        self._failing += 1

    def _leave_pause(self) -> float:
        self._failing -= 1
        if self._failing == 0:
            paused = time.monotonic() - self._pause_t0
            INFLUX_PAUSED.inc(paused)
            return paused
        return 0.0

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        if self._stopping.is_set():
            raise InfluxSinkStopped("InfluxSink stopped before InfluxDB acknowledged")

"""Benchmark harness: isolated worker runs against the local stack, measured from outside.

Pieces (each usable alone; the figures are in :mod:`bench.consume`, :mod:`bench.pipeline`):

- :class:`Isolation`: the names of one run (app id, every topic, InfluxDB database, worker
  data directory, metrics port), exported as the ``WATTFLOW_*`` environment of the
  subprocesses, so a bench run never touches the default ``wattflow`` app or topics;
  :meth:`Isolation.setup` creates the topics and the database (``python -m app.setup``),
  :meth:`Isolation.teardown` deletes every topic whose name starts with the run prefix (the
  app's changelog topics included) and drops the database.
- :class:`Worker`: one ``faust -L <loop> -A app.worker worker`` subprocess with that
  environment; its counters come from its ``/metrics`` endpoint and its CPU time from
  ``/proc/<pid>/stat`` (utime + stime of every thread, see :func:`parse_proc_stat`).
- :func:`prefill`: a raw JSON topic filled fast with simulated readings
  (:mod:`simulators.household` + :mod:`simulators.payloads`), keyed and partitioned by meter
  id as the load generator does, produced in big batches (``create_batch``/``send_batch``).
- :func:`wait_processed`: polls the workers until every reading went through ingest, windows
  and (optionally) the InfluxDB sink, and returns when each stage finished, with the workers'
  CPU seconds over the same interval.

Pure helpers (:func:`parse_proc_stat`, :func:`parse_metrics`, :func:`metric_sum`) are unit
tested without a broker (``tests/unit/test_bench_harness.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FAUST = str(Path(sys.executable).with_name("faust"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PREFIX = "wfbench-"
"""Every topic, app id and database of a bench run starts with this (``_`` for InfluxDB)."""

# --- pure helpers ------------------------------------------------------------------------------


def parse_proc_stat(text: str, clk_tck: int = CLK_TCK) -> float:
    """CPU seconds (user + system, all threads, children not included) from the text of
    ``/proc/<pid>/stat``. The command name (field 2) may hold spaces and parentheses, so the
    fields are counted from the last ``)``: state is field 3, utime 14, stime 15."""
    rest = text.rsplit(")", 1)[1].split()
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / clk_tck


def parse_machine_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from the text of ``/proc/stat`` (first ``cpu`` line;
    idle and iowait are not busy; guest time is already inside user/nice)."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:9]]
            total = sum(v)
            return total - v[3] - v[4], total
    raise ValueError("no aggregate cpu line in /proc/stat")


class MachineCpu:
    """Share of the machine's CPU that was busy (everyone's processes) between two reads."""

    def __init__(self) -> None:
        self.start = parse_machine_stat(Path("/proc/stat").read_text())

    def busy_share(self) -> float:
        busy, total = parse_machine_stat(Path("/proc/stat").read_text())
        d_total = total - self.start[1]
        return (busy - self.start[0]) / d_total if d_total > 0 else float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (raises ProcessLookupError once it is gone)."""
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except FileNotFoundError as e:
        raise ProcessLookupError(pid) from e


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> ``{(name, sorted label pairs): value}``.

    Comments and ``*_created`` timestamps are skipped; histogram series are kept as they are
    (``_bucket``, ``_sum``, ``_count``)."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.groups()
        if name.endswith("_created"):
            continue
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        try:
            out[(name, pairs)] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
               **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and want <= set(pairs))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def code_fingerprint(root: Path = REPO) -> str:
    """Short hash of the worker's code (``agents/``, ``app/`` Python files): runs compared
    side by side must have run the same code (the tree may change under a long suite)."""
    import hashlib

    h = hashlib.sha1(usedforsecurity=False)
    for path in sorted([*root.glob("agents/**/*.py"), *root.glob("app/**/*.py")]):
        h.update(str(path.relative_to(root)).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            continue
    return h.hexdigest()[:10]


def git_state() -> str:
    """Commit and whether the tree has local changes (read-only git commands)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!bench/RESULTS.md", ":!bench/results.json"],
                               cwd=REPO, capture_output=True, text=True,
                               check=False).stdout.strip()
    except OSError:
        return "?"
    return f"{head or '?'}{' + uncommitted changes' if dirty else ''}"


def record_section(path: Path, name: str, title: str, body: str, command: str,
                   wall_s: float | None = None) -> None:
    """Write section ``name`` of RESULTS.md at ``path`` (bench.report.section_block), keeping
    everything else in the file."""
    import datetime as dt

    from bench.report import section_block, with_section

    meta = {"command": command, "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git": git_state(), "wall_s": wall_s}
    old = path.read_text() if path.exists() else ""
    path.write_text(with_section(old, name, section_block(name, title, meta, body)))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


# --- isolation ---------------------------------------------------------------------------------


RUN_IDS: list[str] = []
"""Run ids created by this process (what :func:`cleanup` removes by default)."""


def new_run_id() -> str:
    rid = secrets.token_hex(3)
    RUN_IDS.append(rid)
    return rid


@dataclass
class Isolation:
    """Names of one isolated pipeline: ``wfbench-<run>-<stage>`` for the app, its topics and
    changelogs, ``wfbench_<run>_<stage>`` for the InfluxDB database. ``raw_json``/``raw_tic``
    may be shared by several stages of a run (each stage has its own consumer group)."""

    run_id: str
    stage: str
    raw_json: str
    raw_tic: str
    datadir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix=PREFIX)))
    partitions: int = 4

    @classmethod
    def for_run(cls, run_id: str, stage: str, *, shared_raw: bool = True) -> Isolation:
        raw = f"{PREFIX}{run_id}" if shared_raw else f"{PREFIX}{run_id}-{stage}"
        return cls(run_id, stage, f"{raw}.raw.json", f"{raw}.raw.tic")

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.run_id}-{self.stage}"

    @property
    def run_prefix(self) -> str:
        return f"{PREFIX}{self.run_id}"

    @property
    def influx_db(self) -> str:
        return self.prefix.replace("-", "_")

    @property
    def window_prefix(self) -> str:
        return f"{self.prefix}.windows."

    def topic_env(self) -> dict[str, str]:
        """``WATTFLOW_TOPIC_*`` for every ``topic_*`` setting that exists (new topics of new
        agents are isolated too): the raw topics as given, the others under the stage
        prefix (``<prefix>.<default name>``)."""
        from app.settings import Settings

        out = {}
        for name, f in Settings.model_fields.items():
            if not name.startswith("topic_"):
                continue
            if name == "topic_raw_json":
                value = self.raw_json
            elif name == "topic_raw_tic":
                value = self.raw_tic
            elif name == "topic_windows_prefix":
                value = self.window_prefix
            else:
                value = f"{self.prefix}.{f.default}"
            out[f"WATTFLOW_{name.upper()}"] = value
        return out

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this run's subprocesses (inherits the rest)."""
        p = self.prefix
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATTFLOW_")}
        env.update(self.topic_env())
        env.update({
            "WATTFLOW_APP_ID": p,
            "WATTFLOW_INFLUX_DB": self.influx_db,
            "WATTFLOW_WORKER_DATADIR": str(self.datadir / "worker"),
            "WATTFLOW_PARTITIONS": str(self.partitions),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra)
        return env

    def settings(self):
        """These names as a Settings object, for in-process clients (no os.environ change)."""
        from app.settings import Settings

        env = self.env()
        return Settings(**{k[len("WATTFLOW_"):].lower(): v for k, v in env.items()
                           if k.startswith("WATTFLOW_")})

    def setup(self) -> None:
        """Create the topics (raw ones only if missing) and the InfluxDB database."""
        run_cli([PYTHON, "-m", "app.setup", "kafka", "influxdb"], self.env(), "app.setup")

    def teardown(self, *, raw_too: bool = False) -> None:
        """Delete this stage's topics (and changelogs), drop its database, remove the datadir.
        ``raw_too`` also deletes every topic of the run (the shared raw topics)."""
        prefix = self.run_prefix if raw_too else self.prefix
        try:
            deleted = asyncio.run(delete_topics(bootstrap(), prefix))
            if deleted:
                log(f"deleted {len(deleted)} topics {prefix}*")
        except Exception as e:  # noqa: BLE001 - cleanup must go on; reported
            log(f"topic cleanup of {prefix}* failed: {e!r}")
        try:
            from app.services.influx_schema import drop_database

            drop_database(self.settings())
        except Exception as e:  # noqa: BLE001
            LEFTOVER_DBS.add(self.influx_db)
            log(f"dropping InfluxDB database {self.influx_db} failed: {e!r} (retried at the end)")
        shutil.rmtree(self.datadir, ignore_errors=True)


LEFTOVER_DBS: set[str] = set()
"""Databases whose drop failed (InfluxDB down for a moment): :func:`cleanup` retries."""


def cleanup(run_ids: Iterable[str] | None = None, wait_s: float = 30.0) -> dict[str, list[str]]:
    """Remove what bench runs left behind: the topics and databases of ``run_ids`` (default:
    the runs of this process), or with ``run_ids=()`` of every bench run ever (``wfbench-*``
    topics, ``wfbench_*`` databases: names only this bench creates; call it only when no
    bench is running). Waits up to ``wait_s`` for InfluxDB to answer."""
    from app.services.influx_schema import _query
    from app.settings import get_settings

    ids = list(RUN_IDS if run_ids is None else run_ids)
    prefixes = [f"{PREFIX}{r}" for r in ids] or [PREFIX]
    out: dict[str, list[str]] = {"topics": [], "databases": [], "failed": []}
    for prefix in prefixes:
        try:
            out["topics"] += asyncio.run(delete_topics(bootstrap(), prefix))
        except Exception as e:  # noqa: BLE001 - report and go on
            out["failed"].append(f"topics {prefix}*: {e!r}")
    db_prefixes = tuple(p.replace("-", "_") for p in prefixes)
    s = get_settings()
    t_end = time.monotonic() + wait_s
    while True:
        try:
            res = _query(s, "SHOW DATABASES")
            names = {v[0] for r in res for ser in r.get("series", [])  # type: ignore[attr-defined]
                     for v in ser["values"]}
            for db in sorted(n for n in names if n.startswith(db_prefixes)):
                _query(s, f'DROP DATABASE "{db}"')
                out["databases"].append(db)
            LEFTOVER_DBS.clear()
            break
        except Exception as e:  # noqa: BLE001
            if time.monotonic() > t_end:
                out["failed"].append(f"databases {sorted(LEFTOVER_DBS)}: {e!r}")
                break
            time.sleep(2)
    return out


async def assign_from_start(consumer: Any, topic: str, *, seek: bool = True) -> list[Any]:
    """Assign every partition of ``topic`` to a group-less consumer (fetching the topic's
    metadata if needed) and, with ``seek``, rewind them to the beginning."""
    from aiokafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    if seek:
        await consumer.seek_to_beginning(*tps)
    return tps


def bootstrap() -> str:
    from app.settings import get_settings

    return get_settings().kafka_servers


def run_cli(cmd: Sequence[str], env: Mapping[str, str], what: str, timeout: float = 120) -> str:
    """Run a helper command of the project; raise with its output when it fails."""
    proc = subprocess.run(list(cmd), cwd=REPO, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout


def register_population(households: int, seed: int) -> None:
    """Upsert the simulated meters in the PostgreSQL registry (shared, idempotent)."""
    run_cli([PYTHON, "-m", "simulators.register", "--households", str(households),
             "--seed", str(seed)], os.environ, "simulators.register")


async def delete_topics(servers: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (refuses a too short prefix)."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not prefix.startswith(PREFIX):
        raise ValueError(f"refusing to delete topics by prefix {prefix!r}")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id="wattflow-bench")
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def end_offsets(servers: str, topics: Iterable[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic (messages ever written, retention aside)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        out: dict[str, int] = {}
        for t in topics:
            parts = c.partitions_for_topic(t)
            if parts is None:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(t) or set()
            tps = [TopicPartition(t, p) for p in sorted(parts)]
            ends = await c.end_offsets(tps) if tps else {}
            out[t] = sum(ends.values())
        return out
    finally:
        await c.stop()


async def list_topics(servers: str, prefix: str) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id="wattflow-bench")
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


# --- the worker subprocess ---------------------------------------------------------------------


class Worker:
    """One isolated Faust worker subprocess (``faust -L loop -A app.worker worker``)."""

    def __init__(self, iso: Isolation, *, loop: str = "uvloop", name: str = "w0",
                 extra_env: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        """``command`` replaces the ``faust`` executable (e.g. a profiling wrapper); the
        worker arguments follow it."""
        self.iso = iso
        self.command = list(command or [FAUST])
        self.loop = loop
        self.name = name
        self.port = free_port()
        self.datadir = iso.datadir / name
        self.log_path = iso.datadir / f"{name}.log"
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        env = self.iso.env(WATTFLOW_METRICS_PORT=str(self.port),
                           WATTFLOW_WEB_PORT=str(free_port()),
                           WATTFLOW_WORKER_DATADIR=str(self.datadir), **self.extra_env)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [*self.command, "-L", self.loop, "-A", "app.worker", "worker",
                 "--without-web", "-l", "warn"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def metrics(self, timeout: float = 2.0, names: Sequence[str] = ()) -> Samples | None:
        """The worker's counters, or None while its endpoint is not up. ``names``: only these
        samples (the exporter's ``name[]`` filter): a full exposition costs the worker a few
        ms of CPU, which polling ten times a second would add to what is measured."""
        query = "?" + "&".join(f"name[]={n}" for n in names) if names else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics{query}",
                                        timeout=timeout) as resp:
                return parse_metrics(resp.read().decode())
        except OSError:
            return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the metrics endpoint answers (the app started and loaded the registry)."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited: {self.tail()}")
            if self.metrics() is not None:
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready after {timeout} s: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def keep_log(self) -> Path | None:
        """Copy the worker's log (``-l warn``) to ``$TMPDIR/wfbench-logs/`` before the data
        directory is removed; returns where."""
        dest = Path(tempfile.gettempdir()) / "wfbench-logs" / f"{self.iso.prefix}-{self.name}.log"
        try:
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.log_path, dest)
        except OSError:
            return None
        return dest

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (Faust stops gracefully), SIGKILL after ``timeout``; returns the exit code.
        The log is kept (:meth:`keep_log`)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(10)
        self.keep_log()
        return self.proc.returncode


# --- prefill -----------------------------------------------------------------------------------


@dataclass
class Prefill:
    topic: str
    readings: int
    households: int
    seconds: int
    bytes: int
    start_ms: int
    """Event time of the first reading (a minute boundary minus ``lead_s``)."""
    produce_s: float
    render_s: float
    payloads: list[bytes] = field(default_factory=list, repr=False)
    """The values produced (for in-memory baselines on the same bytes)."""


def render_readings(households: int, seconds: int, seed: int, t0_s: int
                    ) -> tuple[list[tuple[bytes, list[bytes]]], float]:
    """``[(meter key, payloads in time order)]`` of the JSON meters among the first
    ``households`` of the simulated population (TIC meters skipped), 1 Hz from ``t0_s``,
    each household at its own sub-second phase like the load generator."""
    from simulators.household import HouseholdSimulator
    from simulators.payloads import chunk_payloads
    from simulators.population import make_population

    t = time.perf_counter()
    out = []
    for i, spec in enumerate(make_population(households, seed)):
        if spec.tic_mode is not None:
            continue
        sim = HouseholdSimulator(spec, collect_events=False)
        chunk = sim.render(t0_s, seconds)
        phase = int(i * 1000 / households)
        out.append((spec.meter_id.encode(), [p for _, _, p in chunk_payloads(chunk, None, phase)]))
    return out, time.perf_counter() - t


async def produce_ordered(servers: str, topic: str, rows: list[tuple[bytes, list[bytes]]],
                          partitions: int, batch_bytes: int = 512 * 1024) -> tuple[int, int]:
    """Send the payloads second by second (every household's reading k before any reading
    k+1), partitioned by murmur2(meter id) like aiokafka's default partitioner, in batches
    of ``batch_bytes``. Returns (messages, bytes)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2

    prod = AIOKafkaProducer(bootstrap_servers=servers, max_batch_size=batch_bytes,
                            max_request_size=4 * batch_bytes, linger_ms=0, acks=1)
    await prod.start()
    try:
        part = [(murmur2(k) & 0x7FFFFFFF) % partitions for k, _ in rows]
        batches = [prod.create_batch() for _ in range(partitions)]
        futures = []
        n = nbytes = 0
        length = max((len(p) for _, p in rows), default=0)
        for k in range(length):
            for (key, payloads), p in zip(rows, part, strict=True):
                if k >= len(payloads):
                    continue
                value = payloads[k]
                if batches[p].append(key=key, value=value, timestamp=None) is None:
                    futures.append(await prod.send_batch(batches[p], topic, partition=p))
                    batches[p] = prod.create_batch()
                    batches[p].append(key=key, value=value, timestamp=None)
                n += 1
                nbytes += len(value)
        for p, b in enumerate(batches):
            if b.record_count():
                futures.append(await prod.send_batch(b, topic, partition=p))
        await asyncio.gather(*futures)
        return n, nbytes
    finally:
        await prod.stop()


def aligned_start_s(now_s: float, seconds: int, lead_s: int = 5) -> int:
    """A first event second ``lead_s`` before a minute boundary, such that ``seconds`` of
    readings end in the past (so the first whole minute's windows can close)."""
    latest = int(now_s) - seconds - 2
    boundary = (latest + lead_s) // 60 * 60
    return boundary - lead_s


def prefill(topic: str, households: int, seconds: int, seed: int, partitions: int = 4
            ) -> Prefill:
    start_s = aligned_start_s(time.time(), seconds)
    rows, render_s = render_readings(households, seconds, seed, start_s)
    t = time.perf_counter()
    n, nbytes = asyncio.run(produce_ordered(bootstrap(), topic, rows, partitions))
    return Prefill(topic, n, len(rows), seconds, nbytes, start_s * 1000,
                   time.perf_counter() - t, render_s, [v for _, vs in rows for v in vs])


# --- waiting for a worker to finish ------------------------------------------------------------


@dataclass
class Progress:
    """What workers did between their first batch and the end of the last stage."""

    readings: int
    """Raw records the workers consumed (all readings of the prefill)."""
    valid: float
    windowed: float
    influx_points: float
    t_first: float
    """Monotonic time of the last poll before any record was consumed."""
    t_windows: float | None
    """Monotonic time at which every valid reading was applied to windows."""
    t_influx: float | None
    cpu_first: float
    cpu_windows: float | None
    cpu_influx: float | None
    samples: Samples
    timed_out: bool = False
    stage_times: dict[str, float] = field(default_factory=dict)

    def wall_s(self, stage: str = "windows") -> float | None:
        t = self.t_windows if stage == "windows" else self.t_influx
        return None if t is None else t - self.t_first

    def cpu_s(self, stage: str = "windows") -> float | None:
        c = self.cpu_windows if stage == "windows" else self.cpu_influx
        return None if c is None else c - self.cpu_first


def wait_checkpoint(workers: Sequence[Worker], since: float, timeout: float,
                    settle_s: float = 2.0, poll_s: float = 0.25) -> Samples:
    """After processing ended: wait until the workers' table writes moved past ``since``
    (the next periodic checkpoint wrote the state of what was processed) and then stayed
    still for ``settle_s``; returns the last samples (also on timeout)."""
    t_end = time.monotonic() + timeout
    last, last_change = since, time.monotonic()
    samples: Samples = {}
    while time.monotonic() < t_end:
        samples = _sum_samples(m for m in (w.metrics() for w in workers) if m is not None)
        writes = metric_sum(samples, "wattflow_table_writes_total")
        now = time.monotonic()
        if writes != last:
            last, last_change = writes, now
        elif writes > since and now - last_change >= settle_s:
            break
        time.sleep(poll_s)
    return samples


def _sum_samples(parts: Iterable[Samples]) -> Samples:
    out: Samples = {}
    for s in parts:
        for k, v in s.items():
            out[k] = out.get(k, 0.0) + v
    return out


PROGRESS_SAMPLES = ("wattflow_raw_records_total", "wattflow_readings_valid_total",
                    "wattflow_readings_windowed_total", "wattflow_influx_points_written_total")
"""What :func:`wait_processed` polls (the full exposition is read once, at the end)."""


def wait_processed(workers: Sequence[Worker], expected: int, *, influx: bool = True,
                   timeout: float = 300.0, stall_s: float = 30.0, poll_s: float = 0.1,
                   quiet_s: float = 1.0) -> Progress:
    """Poll the workers' metrics until ``expected`` raw records were consumed, every valid
    reading was windowed and (``influx``) written to InfluxDB, and no counter moved for
    ``quiet_s`` (records replayed after a rebalance inflate every counter, so "reached the
    count" alone could end early). A stage ends at the poll where its counter last moved;
    CPU is the sum over workers, read at the same polls as the counters."""
    t_end = time.monotonic() + timeout
    t_first = time.monotonic()
    cpu_first = sum(w.cpu() for w in workers)
    started = False
    last_change = time.monotonic()
    last_key: tuple[float, ...] = ()
    win_at = inf_at = (t_first, cpu_first)
    samples: Samples = {}
    raw = valid = windowed = points = 0.0
    while True:
        now = time.monotonic()
        cpu = sum(w.cpu() for w in workers if w.alive())
        parts = [m for m in (w.metrics(names=PROGRESS_SAMPLES) for w in workers)
                 if m is not None]
        samples = _sum_samples(parts)
        prev = (raw, windowed, points)
        raw = metric_sum(samples, "wattflow_raw_records_total")
        valid = metric_sum(samples, "wattflow_readings_valid_total")
        windowed = metric_sum(samples, "wattflow_readings_windowed_total")
        points = metric_sum(samples, "wattflow_influx_points_written_total",
                            measurement="reading")
        if windowed != prev[1] or raw != prev[0]:
            win_at = (now, cpu)
        if points != prev[2]:
            inf_at = (now, cpu)
        if not started:
            if raw > 0:
                started = True
            else:
                t_first, cpu_first = now, cpu
        key = (raw, windowed, points)
        if key != last_key:
            last_key, last_change = key, now
        win_done = started and raw >= expected and windowed >= valid
        inf_done = win_done and points >= valid
        if win_done and (inf_done or not influx) and now - last_change >= quiet_s:
            t_inf, cpu_inf = inf_at if inf_done else (None, None)
            samples = _sum_samples([m for m in (w.metrics() for w in workers) if m is not None])
            return Progress(int(raw), valid, windowed, points, t_first, win_at[0], t_inf,
                            cpu_first, win_at[1], cpu_inf, samples)
        if not all(w.alive() for w in workers):
            dead = [w for w in workers if not w.alive()]
            raise RuntimeError(f"worker {dead[0].name} exited: {dead[0].tail()}")
        if now > t_end or (started and now - last_change > stall_s):
            return Progress(int(raw), valid, windowed, points, t_first,
                            win_at[0] if win_done else None, None, cpu_first,
                            win_at[1] if win_done else None, None, samples, timed_out=True)
        time.sleep(poll_s)

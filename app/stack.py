"""The local stack: real Kafka, InfluxDB, PostgreSQL and Prometheus on loopback.

    python -m app.stack up        # install what is missing, start, wait until each answers
    python -m app.stack status    # one line per server
    python -m app.stack down      # stop exactly the processes `up` started

`up` is idempotent: a server already running is left alone. Downloads and builds are cached in
``settings.cache_dir`` (``~/.cache/wattflow`` by default) so a second `up` takes seconds; data,
pid files and logs live under ``settings.state_dir`` (``./var``). Ports are settings, so two
stacks can run side by side (``WATTFLOW_KAFKA_PORT=29092 WATTFLOW_STATE_DIR=... up``).

Every server binds to ``settings.host`` (127.0.0.1) only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "config"


class StackError(RuntimeError):
    """A server could not be installed or started; the message names it and its log."""


def _log(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None,
         what: str = "") -> None:
    """Run an install step; on failure raise naming the step and its log."""
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        rc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env,
                            check=False).returncode
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    if rc != 0:
        where = f"; read {log}" if log else ""
        raise StackError(f"{what or cmd[0]} failed (exit {rc}){where}")


_apt_updated = False


def apt_install(*packages: str, log: Path) -> None:
    """Install Debian packages (the machine's only way to get system servers)."""
    global _apt_updated
    if os.geteuid() != 0:
        raise StackError(f"need {', '.join(packages)}: run as root or install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        _log("apt-get update")
        _run(["apt-get", "update"], log=log, env=env, what="apt-get update")
        _apt_updated = True
    _log(f"apt-get install {' '.join(packages)}")
    _run(["apt-get", "install", "-y", "--no-install-recommends", *packages], log=log, env=env,
         what=f"apt-get install {' '.join(packages)}")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


_SPAWNED: list[subprocess.Popen[bytes]] = []


@dataclass
class Paths:
    state: Path
    cache: Path

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.logs / f"{name}.log"


class Server:
    """One server of the stack: how to install, start, probe and stop it."""

    name = ""

    def __init__(self, settings: Settings, paths: Paths) -> None:
        self.s = settings
        self.p = paths

    # --- to implement -------------------------------------------------------------------------
    def install(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-off preparation of the data directory before the first start."""

    def bootstrap(self) -> None:
        """Idempotent steps once the server answers (users, roles)."""

    start_timeout = 60.0

    # --- shared lifecycle ---------------------------------------------------------------------
    @property
    def log(self) -> Path:
        return self.p.logfile(self.name)

    def pid(self) -> int | None:
        f = self.p.pidfile(self.name)
        try:
            pid = int(f.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None and self.ready()

    def up(self) -> None:
        if self.running():
            _log(f"{self.name}: already running at {self.endpoint()}")
            self.bootstrap()
            return
        if self.pid() is None and self.answers():
            raise StackError(
                f"{self.name}: something not started by this stack already answers at "
                f"{self.endpoint()}; stop it or choose other ports (WATTFLOW_*_PORT)")
        self.install()
        self.prepare()
        self.spawn()
        self.wait()
        self.bootstrap()
        _log(f"{self.name}: up at {self.endpoint()} (log {self.log})")

    def spawn(self) -> None:
        self.p.logs.mkdir(parents=True, exist_ok=True)
        self.p.run.mkdir(parents=True, exist_ok=True)
        if self.log.exists():  # keep the previous run's log beside, start a fresh one
            self.log.replace(self.log.with_suffix(".log.1"))
        with self.log.open("ab") as out:
            proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=self.env())
        self.p.pidfile(self.name).write_text(str(proc.pid))
        _SPAWNED.append(proc)  # a server outlives this object: never reap or warn on GC

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def answers(self) -> bool:
        """Something answers on this server's address (ours or not)."""
        return self.ready()

    def wait(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"{self.name} exited during start; read {self.log}")
            if self.ready():
                return
            time.sleep(0.3)
        raise StackError(f"{self.name} did not answer within {self.start_timeout:.0f}s at "
                         f"{self.endpoint()}; read {self.log}")

    def down(self) -> None:
        pid = self.pid()
        if pid is None:
            self.p.pidfile(self.name).unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.p.pidfile(self.name).unlink(missing_ok=True)
        _log(f"{self.name}: stopped")

    def status(self) -> str:
        pid = self.pid()
        state = "up" if pid and self.ready() else ("starting/unhealthy" if pid else "down")
        return f"{self.name:<11} {state:<18} {self.endpoint():<28} pid={pid or '-'}  log={self.log}"


# --------------------------------------------------------------------------------------------
class Kafka(Server):
    """Apache Kafka in KRaft mode, one node; jars from Maven Central via config/kafka/pom.xml."""

    name = "kafka"
    start_timeout = 90.0

    @property
    def home(self) -> Path:
        return self.p.cache / f"kafka-{self.s.kafka_version}"

    @property
    def data(self) -> Path:
        return self.p.state / "kafka" / "data"

    def endpoint(self) -> str:
        return f"{self.s.host}:{self.s.kafka_port}"

    def java(self) -> str:
        java = shutil.which("java")
        if java is None:
            apt_install("openjdk-17-jre-headless", log=self.p.logfile("install"))
            java = shutil.which("java")
        if java is None:
            raise StackError("java not found after installing openjdk-17-jre-headless")
        return java

    def install(self) -> None:
        self.java()
        marker = self.home / "libs" / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            apt_install("maven", log=self.p.logfile("install"))
        _log(f"kafka: fetching kafka_2.13 {self.s.kafka_version} from Maven Central")
        tmp = self.home.with_name(self.home.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "libs").mkdir(parents=True)
        self.p.logs.mkdir(parents=True, exist_ok=True)
        _run(["mvn", "-q", "-B", "-f", str(CONFIG_DIR / "kafka" / "pom.xml"),
              f"-Dkafka.version={self.s.kafka_version}", "dependency:copy-dependencies",
              f"-DoutputDirectory={tmp / 'libs'}", "-DincludeScope=runtime"],
             log=self.p.logfile("install"), what="mvn dependency:copy-dependencies (kafka)")
        (tmp / "libs" / ".complete").write_text(self.s.kafka_version)
        shutil.rmtree(self.home, ignore_errors=True)
        tmp.rename(self.home)

    def properties(self) -> Path:
        h, s = self.s.host, self.s
        conf = self.p.state / "kafka" / "server.properties"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{h}:{s.kafka_controller_port}",
            f"listeners=PLAINTEXT://{h}:{s.kafka_port},CONTROLLER://{h}:{s.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{h}:{s.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.data}",
            f"num.partitions={s.partitions}",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=60000",
            "log.cleaner.backoff.ms=5000",
            "num.network.threads=2",
            "num.io.threads=4",
            "",
        ]))
        return conf

    def _java_cmd(self, main: str, *args: str, heap: str = "512m") -> list[str]:
        return [self.java(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={CONFIG_DIR / 'kafka' / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.p.logs}",
                "-cp", str(self.home / "libs" / "*"), main, *args]

    def prepare(self) -> None:
        conf = self.properties()
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        _log("kafka: formatting KRaft storage")
        self.p.logs.mkdir(parents=True, exist_ok=True)
        _run(self._java_cmd("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                            str(conf), heap="256m"),
             log=self.p.logfile("kafka-format"), what="kafka storage format")

    def command(self) -> list[str]:
        return self._java_cmd("kafka.Kafka", str(self.properties()))

    def answers(self) -> bool:
        return port_open(self.s.host, self.s.kafka_port)

    def ready(self) -> bool:
        if not port_open(self.s.host, self.s.kafka_port):
            return False
        # the listener opens before the node has joined its own quorum: wait for that line
        try:
            return b"Kafka Server started" in self.log.read_bytes()
        except OSError:
            return False


# --------------------------------------------------------------------------------------------
class InfluxDB(Server):
    """InfluxDB 1.8, built from source through the Go module proxy."""

    name = "influxdb"

    @property
    def binary(self) -> Path:
        return self.p.cache / f"influxd-{self.s.influx_version}" / "influxd"

    @property
    def data(self) -> Path:
        return self.p.state / "influxdb"

    def endpoint(self) -> str:
        return self.s.influx_http_url

    def install(self) -> None:
        if self.binary.exists():
            return
        go = shutil.which("go") or ("/usr/local/go/bin/go"
                                    if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            apt_install("golang-go", log=self.p.logfile("install"))
            go = shutil.which("go")
        if go is None:
            raise StackError("go not found: cannot build influxd")
        _log(f"influxdb: go install influxd@{self.s.influx_version} (first time: a few minutes)")
        self.p.logs.mkdir(parents=True, exist_ok=True)
        gobin = self.binary.parent
        gobin.mkdir(parents=True, exist_ok=True)
        pkg = f"github.com/influxdata/influxdb/cmd/influxd@{self.s.influx_version}"
        env = dict(os.environ, GOBIN=str(gobin), GOFLAGS="-mod=mod", CGO_ENABLED="0")
        try:
            _run([go, "install", pkg], log=self.p.logfile("install"), env=env,
                 what="go install influxd")
        except StackError:
            _log("influxdb: retrying with the go1.22.12 toolchain from the module proxy")
            env["GOTOOLCHAIN"] = "go1.22.12"
            _run([go, "install", pkg], log=self.p.logfile("install"), env=env,
                 what="go install influxd (GOTOOLCHAIN=go1.22.12)")

    def config(self) -> Path:
        conf = self.data / "influxdb.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        text = (CONFIG_DIR / "influxdb.conf.template").read_text().format(
            host=self.s.host, port=self.s.influx_port, rpc_port=self.s.influx_rpc_port,
            data_dir=self.data)
        conf.write_text(text)
        return conf

    def command(self) -> list[str]:
        return [str(self.binary), "-config", str(self.config())]

    def ready(self) -> bool:
        return http_status(f"{self.s.influx_http_url}/ping") == 204

    def bootstrap(self) -> None:
        """Create the admin user the first time (allowed only while no user exists).

        A cold machine can be slow to answer right after start (bcrypt on every login, the JVM
        of a broker starting beside it): poll with generous timeouts, and report what the
        server said rather than a bare failure."""
        user, pw = self.s.influx_user, self.s.influx_password.get_secret_value()
        base = self.s.influx_http_url
        q = urllib.parse.urlencode({"q": "SHOW DATABASES"})
        deadline = time.monotonic() + 60
        created = False
        last = "no answer"
        while time.monotonic() < deadline:
            status = http_status(f"{base}/query?{q}", auth=(user, pw), timeout=10)
            if status == 200:
                return
            last = f"login answered HTTP {status or 'nothing (timeout/refused)'}"
            if status in (401, 403) and not created:
                created = self._create_user(user, pw)
                continue
            time.sleep(0.5)
        raise StackError(f"influxdb: user {user!r} cannot log in ({last}); read {self.log}")

    def _create_user(self, user: str, pw: str) -> bool:
        create = f"CREATE USER \"{user}\" WITH PASSWORD '{pw}' WITH ALL PRIVILEGES"
        body = urllib.parse.urlencode({"q": create}).encode()
        req = urllib.request.Request(f"{self.s.influx_http_url}/query", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                answer = resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            raise StackError(f"influxdb: cannot create user {user!r} (HTTP {e.code}: "
                             f"{e.read().decode(errors='replace')[:200]}); an older data dir "
                             f"with other users? {self.data}") from e
        except (urllib.error.URLError, OSError):
            return False  # not answering yet: the caller polls again
        if '"error"' in answer:
            raise StackError(f"influxdb: cannot create user {user!r}: {answer[:200]}; "
                             f"an older data dir with other users? {self.data}")
        return True


# --------------------------------------------------------------------------------------------
def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgreSQL(Server):
    """PostgreSQL from Debian's packages, in a cluster of the stack's own."""

    name = "postgresql"

    @property
    def root(self) -> Path:
        base = self.p.state / "postgresql"
        if os.geteuid() == 0 and not self._postgres_can_reach(self.p.state):
            # the state dir sits under a directory the postgres user cannot traverse (/root)
            base = Path(tempfile.gettempdir()) / f"wattflow-pg-{self.s.pg_port}"
        return base

    @staticmethod
    def _postgres_can_reach(path: Path) -> bool:
        path.mkdir(parents=True, exist_ok=True)
        rc = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        return rc.returncode == 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    def endpoint(self) -> str:
        return f"{self.s.host}:{self.s.pg_port}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def install(self) -> None:
        if _pg_bindir() is None:
            apt_install("postgresql", log=self.p.logfile("install"))
        if _pg_bindir() is None:
            raise StackError("postgresql: initdb not found after install")

    def prepare(self) -> None:
        self.p.logs.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        if (self.data / "PG_VERSION").exists():
            return
        _log(f"postgresql: initdb {self.data}")
        bindir = _pg_bindir()
        assert bindir is not None
        _run(self._as_owner([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                             "--auth-local=trust", "--auth-host=scram-sha-256",
                             "-E", "UTF8", "--locale=C.UTF-8"]),
             log=self.p.logfile("install"), what="initdb")

    def command(self) -> list[str]:
        bindir = _pg_bindir()
        assert bindir is not None
        return self._as_owner([
            str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.s.pg_port),
            "-c", f"listen_addresses={self.s.host}",
            "-c", f"unix_socket_directories={self.sockdir}",
            "-c", "shared_buffers=128MB", "-c", "max_connections=100", "-c", "fsync=on",
        ])

    def ready(self) -> bool:
        bindir = _pg_bindir()
        if bindir is None or not port_open(self.s.host, self.s.pg_port):
            return False
        rc = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", self.s.host,
                             "-p", str(self.s.pg_port)], check=False).returncode
        return rc == 0

    def _psql(self, sql: str, db: str = "postgres") -> str:
        bindir = _pg_bindir()
        assert bindir is not None
        out = subprocess.run(
            self._as_owner([str(bindir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                            "-h", str(self.sockdir), "-p", str(self.s.pg_port), "-U", "postgres",
                            "-d", db, "-c", sql]),
            capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise StackError(f"postgresql: {sql.split()[0]} failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def bootstrap(self) -> None:
        user, db = self.s.pg_user, self.s.pg_db
        pw = self.s.pg_password.get_secret_value().replace("'", "''")
        if self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'") != "1":
            self._psql(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{pw}'")
        else:
            self._psql(f"ALTER ROLE \"{user}\" LOGIN PASSWORD '{pw}'")
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
            self._psql(f"CREATE DATABASE \"{db}\" OWNER \"{user}\"")

    def down(self) -> None:
        pid = self.pid()
        if pid is not None:
            bindir = _pg_bindir()
            assert bindir is not None
            subprocess.run(self._as_owner([str(bindir / "pg_ctl"), "stop", "-D", str(self.data),
                                           "-m", "fast", "-w"]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        super().down()


# --------------------------------------------------------------------------------------------
class Prometheus(Server):
    """Prometheus from Debian's packages, scraping the workers' /metrics endpoints."""

    name = "prometheus"

    @property
    def data(self) -> Path:
        return self.p.state / "prometheus"

    def endpoint(self) -> str:
        return f"http://{self.s.host}:{self.s.prometheus_port}"

    def install(self) -> None:
        if shutil.which("prometheus") is None:
            apt_install("prometheus", log=self.p.logfile("install"))

    def config(self) -> Path:
        self.data.mkdir(parents=True, exist_ok=True)
        ports = [p.strip() for p in self.s.metrics_ports_scraped.split(",") if p.strip()]
        targets = ", ".join(f'"{self.s.host}:{p}"' for p in ports)
        conf = self.data / "prometheus.yml"
        conf.write_text((CONFIG_DIR / "prometheus.yml.template").read_text().format(
            scrape_interval="2s", targets=targets,
            rules_file=CONFIG_DIR / "prometheus" / "rules.yml"))
        return conf

    def command(self) -> list[str]:
        binary = shutil.which("prometheus") or "prometheus"
        return [binary, f"--config.file={self.config()}",
                f"--storage.tsdb.path={self.data / 'tsdb'}",
                f"--web.listen-address={self.s.host}:{self.s.prometheus_port}",
                "--storage.tsdb.retention.time=2d", "--web.enable-lifecycle"]

    def ready(self) -> bool:
        return http_status(f"{self.endpoint()}/-/ready") == 200


SERVERS: tuple[type[Server], ...] = (Kafka, InfluxDB, PostgreSQL, Prometheus)


def servers(settings: Settings | None = None) -> list[Server]:
    s = settings or get_settings()
    paths = Paths(state=s.state_dir.resolve(), cache=s.cache_dir.expanduser().resolve())
    return [cls(s, paths) for cls in SERVERS]


def up(only: Sequence[str] = ()) -> None:
    for srv in servers():
        if not only or srv.name in only:
            srv.up()


def down(only: Sequence[str] = ()) -> None:
    for srv in reversed(servers()):
        if not only or srv.name in only:
            srv.down()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.stack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["up", "down", "status"])
    ap.add_argument("only", nargs="*", help="kafka, influxdb, postgresql, prometheus")
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            up(args.only)
        elif args.action == "down":
            down(args.only)
        for srv in servers():
            if not args.only or srv.name in args.only:
                print(srv.status())
    except StackError as e:
        print(f"[stack] ERROR: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The main job on a developer machine: stack up, setup, a worker running, simulated meters
feeding it, and where to look.

    python -m app.devrun                      # `make run`
    python -m app.devrun --households 200 --seconds 120
    python -m app.devrun --status             # is the worker running?
    python -m app.devrun --stop               # stop the worker it started

The worker keeps running after the feed ends (stop it with ``make down``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import orjson

from app import stack
from app.settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent


def _pidfile() -> Path:
    return get_settings().state_dir.resolve() / "run" / "worker.pid"


def worker_pid() -> int | None:
    try:
        pid = int(_pidfile().read_text())
    except (OSError, ValueError):
        return None
    return pid if stack.pid_alive(pid) else None


def start_worker() -> int:
    pid = worker_pid()
    if pid:
        print(f"[run] worker already running (pid {pid})", file=sys.stderr)
        return pid
    s = get_settings()
    log = s.state_dir.resolve() / "logs" / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _pidfile().parent.mkdir(parents=True, exist_ok=True)
    faust = Path(sys.executable).with_name("faust")
    with log.open("ab") as out:
        proc = subprocess.Popen([str(faust), "-L", "uvloop", "-A", "app.worker", "worker",
                                 "--without-web", "-l", "info"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _pidfile().write_text(str(proc.pid))
    deadline = time.monotonic() + 90
    url = f"http://{s.host}:{s.metrics_port}/metrics"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"[run] worker exited during start; read {log}")
        if stack.http_status(url) == 200:
            print(f"[run] worker up (pid {proc.pid}), log {log}", file=sys.stderr)
            return proc.pid
        time.sleep(0.5)
    raise SystemExit(f"[run] worker did not serve {url} within 90 s; read {log}")


def stop_worker() -> None:
    pid = worker_pid()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and stack.pid_alive(pid):
        time.sleep(0.2)
    if stack.pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _pidfile().unlink(missing_ok=True)
    print("[run] worker stopped", file=sys.stderr)


def influx_count(measurement: str, rp: str = "raw", field: str | None = None,
                 settings: Settings | None = None) -> int:
    """Points of a measurement in InfluxDB (count of ``field``: power for readings, energy
    for windows)."""
    s = settings or get_settings()
    field = field or ("energy_wh" if measurement.startswith("power_") else "power_w")
    q = f'SELECT count("{field}") FROM "{s.influx_db}"."{rp}"."{measurement}"'
    url = f"{s.influx_http_url}/query?" + urllib.parse.urlencode(
        {"q": q, "u": s.influx_user, "p": s.influx_password.get_secret_value()})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = orjson.loads(resp.read())
    series = body["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.devrun", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--status", action="store_true")
    ap.add_argument("--stop", action="store_true")
    args = ap.parse_args(argv)
    if args.stop:
        stop_worker()
        return 0
    if args.status:
        pid = worker_pid()
        print(f"worker      {'up' if pid else 'down':<18} pid={pid or '-'}")
        return 0

    s = get_settings()
    stack.up()
    from app.setup import run as setup_run
    from simulators.register import register

    asyncio.run(setup_run(["kafka", "influxdb", "postgresql"], s))
    n = asyncio.run(register(args.households, args.seed))
    print(f"[run] {n} simulated meters registered in PostgreSQL", file=sys.stderr)
    start_worker()
    print(f"[run] feeding {args.households} simulated households at 1 Hz for "
          f"{args.seconds:.0f} s ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "simulators.sample", "--households",
                    str(args.households), "--seconds", str(args.seconds), "--seed",
                    str(args.seed)], cwd=REPO, check=True)
    time.sleep(3)
    readings = influx_count("reading")
    windows = influx_count("power_1m", "1m")
    db = s.influx_db
    prom = (f"http://{s.host}:{s.prometheus_port}/graph?"
            "g0.expr=rate(wattflow_readings_valid_total[1m])")
    query = (f'SELECT mean(power_w) FROM \\"{db}\\".\\"raw\\".reading '
             "WHERE time > now() - 5m GROUP BY household")
    print(f"""
wattflow is running.
  readings stored in InfluxDB: {readings}; closed 1-minute windows: {windows}
  worker log      {s.state_dir.resolve() / 'logs' / 'worker.log'}
  worker metrics  http://{s.host}:{s.metrics_port}/metrics
  Prometheus      {prom}
  InfluxDB        curl -G {s.influx_http_url}/query -u {s.influx_user}:<password> \\
                    --data-urlencode "q={query}"
  Kafka topics    {s.topic_readings}, {s.window_topic('1m')}, {s.topic_alerts},
                  {s.topic_deadletter} on {s.kafka_servers}
  feed more       .venv/bin/python -m simulators.sample --households {args.households} --seconds 60
  stop            make down
""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

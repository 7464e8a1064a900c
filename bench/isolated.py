"""Run a command against its own app id, topics and InfluxDB database, then delete them.

    python -m bench.isolated [--keep] -- python -m simulators.loadtest --households 10000 \\
        --rate 1 --duration 60 --start-worker

A load test on the default topics of a stack that already ran one starts from the state the
last run left: its households have been silent since, so they come back with a burst of
catch-up windows, and their counters restart below the remembered ones. This gives the command
a fresh world instead (the same isolation the benchmarks use, :class:`bench.harness.Isolation`):
``WATTFLOW_APP_ID``, every ``WATTFLOW_TOPIC_*``, ``WATTFLOW_INFLUX_DB`` and the worker's data
directory are set to new names, the topics and the database are created first and deleted
afterwards (``--keep`` leaves them). The command's exit status is returned.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from bench.harness import REPO, Isolation, log, new_run_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.isolated", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the topics and the database")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    a = ap.parse_args(argv)
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        ap.error("no command given (python -m bench.isolated -- COMMAND ...)")
    if command[0] in ("python", "python3"):  # the interpreter running this (the project's venv)
        command = [sys.executable, *command[1:]]
    iso = Isolation.for_run(new_run_id(), "iso", shared_raw=False)
    iso.setup()
    env = iso.env()
    if "WATTFLOW_STATE_DIR" in os.environ:  # where the stack's logs and state live
        env["WATTFLOW_STATE_DIR"] = os.environ["WATTFLOW_STATE_DIR"]
    log(f"isolated run: app id {env['WATTFLOW_APP_ID']}, InfluxDB database {iso.influx_db}")
    try:
        return subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    finally:
        if not a.keep:
            iso.teardown()


if __name__ == "__main__":
    sys.exit(main())

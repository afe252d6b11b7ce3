"""
The seed incident in the benchmark suite: a Twisted application whose stdlib
bridge feeds a rotating handler that fails on every call, stdio redirected
as under twistd (the incident suite's C{incident} variant, run by its own
harness in a child process), against the same set-up with a healthy handler.

    python benchmarks/incident.py healthy-bridge --events N --workdir D --status F

runs the healthy set-up in this process (the harness's child, with one more
variant).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def healthyBridge(ctx: Any) -> None:
    """
    The incident's set-up with a rotating handler that works.
    """
    from twisted.logger import Logger, STDLibLogObserver

    log = Logger(namespace="app.charts")
    ctx.log = lambda n: log.warn("chart-data request {n} served", n=n)
    ctx.observers.append(STDLibLogObserver())
    handler = logging.handlers.RotatingFileHandler(
        str(ctx.workdir / "app.log"), maxBytes=10_000_000, backupCount=3
    )
    logging.getLogger().addHandler(handler)


def healthyRun(events: int, timeout: float) -> dict[str, Any]:
    """
    Run the healthy set-up, plain Twisted, in a child; its status.
    """
    with tempfile.TemporaryDirectory() as tmp:
        status = Path(tmp) / "status.json"
        subprocess.run(
            [
                sys.executable,
                str(HERE / "incident.py"),
                "healthy-bridge",
                "--events",
                str(events),
                "--workdir",
                tmp,
                "--status",
                str(status),
            ],
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return json.loads(status.read_text())  # type: ignore[no-any-return]


def caseSeedIncident(args: argparse.Namespace) -> dict[str, Any]:
    """
    Events per second of the hardened incident against the healthy bridge
    (plain Twisted), rounds alternating; log bytes per application event
    of a 300-event run, plain (bounded) and hardened.
    """
    from twisted_safelog.incident import runIncident

    events = max(int(2000 * args.scale), 20)
    timeout = 60.0
    healthy: list[float] = []
    hardened: list[float] = []
    for n in range(args.rounds):
        order = ("healthy", "hardened") if n % 2 == 0 else ("hardened", "healthy")
        for which in order:
            if which == "healthy":
                status = healthyRun(events, timeout)
                assert status["done"], status
                healthy.append(1 / status["meanEventSeconds"])
            else:
                result = runIncident("incident", True, events=events, timeout=timeout)
                assert result.done, result.problems()
                assert result.meanEventSeconds is not None
                hardened.append(1 / result.meanEventSeconds)
    # Log bytes per event, 300 events: hardened to completion; plain until
    # its loop is proven (it never completes), bounded.
    bytesHardened = runIncident("incident", True, events=300, timeout=timeout)
    plainTimeout = 2.0 if args.quick else 5.0
    bytesPlain = runIncident("incident", False, events=300, timeout=plainTimeout)
    ratio = statistics.median(hardened) / statistics.median(healthy)
    perEventHardened = bytesHardened.bytesWritten / 300
    return {
        "plain": statistics.median(healthy),
        "hardened": statistics.median(hardened),
        "unit": "events/s",
        "measure": ratio * 100,
        "measureUnit": "% of healthy",
        "target": 100.0,
        "targetSense": ">=",
        "met": ratio >= 1.0,
        "extraRows": [
            {
                "case": "seed-incident-bytes",
                "plain": bytesPlain.bytesWritten / 300,
                "plainNote": (
                    f"{bytesPlain.bytesWritten / 1e6:.1f} MB, {bytesPlain.completed} of 300 "
                    f"events in {bytesPlain.elapsed:.1f} s, "
                    + ("never finished" if not bytesPlain.done else "finished")
                ),
                "hardened": perEventHardened,
                "unit": "B/event",
                "measure": perEventHardened,
                "measureUnit": "B/event",
                "target": 100.0,
                "met": bytesHardened.done and perEventHardened <= 100,
            }
        ],
        "raw": {
            "healthy events/s": healthy,
            "hardened broken events/s": hardened,
            "events": events,
            "plain broken": {
                "completed": bytesPlain.completed,
                "done": bytesPlain.done,
                "bytesWritten": bytesPlain.bytesWritten,
                "elapsed": bytesPlain.elapsed,
            },
            "hardened broken bytes": bytesHardened.bytesWritten,
        },
    }


def main() -> int:
    from twisted_safelog.incident import VARIANTS, Variant
    from twisted_safelog.incident._child import childMain

    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["healthy-bridge"])
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args()
    VARIANTS["healthy-bridge"] = Variant(healthyBridge, "the incident's set-up, healthy")
    return childMain(args.variant, False, args.events, args.workdir, args.status)


if __name__ == "__main__":
    sys.exit(main())

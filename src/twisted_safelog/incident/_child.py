# -*- test-case-name: tests.test_incident -*-
"""
The child side of an incident run: C{python -m twisted_safelog.incident._child
VARIANT --events N --workdir DIR --status FILE [--hardened]}.

It sets one variant up, begins logging as twistd does (stdio redirected),
logs the application events, and keeps the status file up to date from one
heartbeat thread, the file's only writer, so that a parent that kills it
still learns how far it got.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ._variants import VARIANTS, Context

__all__: list[str] = []

#: Seconds between two writes of the status file.
HEARTBEAT = 0.05


def _harden(ctx: Context) -> list[Any]:
    from .. import SafeObserver, hardenHandlers

    hardenHandlers()
    return [SafeObserver(o) for o in ctx.observers]


def _statusWriter(status: Path, snapshot: Any, finished: threading.Event) -> threading.Thread:
    """
    Start the heartbeat thread: it writes C{snapshot()} to C{status} every
    L{HEARTBEAT} seconds and once more after C{finished} is set, then ends.
    It is the status file's only writer, so the parent never reads a file
    another writer is half-way through.
    """
    tmp = status.with_suffix(".tmp")

    def write() -> None:
        with open(tmp, "w") as f:
            f.write(json.dumps(snapshot()))
        os.replace(tmp, status)

    def beat() -> None:
        while not finished.wait(HEARTBEAT):
            try:
                write()
            except Exception:
                pass
        write()

    thread = threading.Thread(target=beat, name="incident-status", daemon=True)
    thread.start()
    return thread


def childMain(variant: str, hardened: bool, events: int, workdir: Path, status: Path) -> int:
    """
    Run one variant in this process and return the exit status.
    """
    from twisted.logger import globalLogBeginner, textFileLogObserver

    ctx = Context(workdir=workdir, hardened=hardened)
    VARIANTS[variant].setup(ctx)
    observers = _harden(ctx) if hardened else list(ctx.observers)
    if not hardened:
        from twisted.logger import LegacyLogObserverWrapper

        # What twisted.python.log.addObserver does with a legacy observer.
        observers = [
            LegacyLogObserverWrapper(o) if getattr(o, "__name__", "") == "emit" else o
            for o in observers
        ]
    witnessFile = open(workdir / "other.log", "a", encoding="utf-8")  # noqa: SIM115
    witness: Any = textFileLogObserver(witnessFile)
    if hardened:
        from .. import SafeObserver

        witness = SafeObserver(witness, name="other.log")
    durations: list[float] = []
    finished = threading.Event()
    lock = threading.Lock()

    def snapshot() -> dict[str, Any]:
        with lock:
            completed = len(durations)
            total = sum(durations)
            worst = max(durations, default=0.0)
        result = {
            "variant": variant,
            "hardened": hardened,
            "events": events,
            "completed": completed,
            "meanEventSeconds": total / completed if completed else None,
            "worstEventSeconds": worst,
            "failingCalls": ctx.failingCalls[0],
            "cpuSeconds": time.process_time(),
            "done": finished.is_set(),
        }
        for key, read in ctx.extra.items():
            result[key] = read()
        return result

    writer = _statusWriter(status, snapshot, finished)
    globalLogBeginner.beginLoggingTo([witness, *observers], redirectStandardIO=True)
    assert ctx.log is not None
    for n in range(events):
        start = time.perf_counter()
        ctx.log(n)
        elapsed = time.perf_counter() - start
        with lock:
            durations.append(elapsed)
    witnessFile.flush()
    finished.set()
    writer.join(30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twisted_safelog.incident._child")
    parser.add_argument("variant", choices=list(VARIANTS))
    parser.add_argument("--hardened", action="store_true")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args(argv)
    return childMain(args.variant, args.hardened, args.events, args.workdir, args.status)


if __name__ == "__main__":
    sys.exit(main())

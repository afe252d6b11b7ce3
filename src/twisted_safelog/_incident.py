# -*- test-case-name: tests.test_incident -*-
"""
The incident, reproducible: every measured shape of the Twisted/stdlib
logging feedback loop, runnable in a child process with plain Twisted or
with twisted-safelog, reporting what happened to a status file that survives
the child being killed.

Used by C{python -m twisted_safelog demo} and by the incident test suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from attrs import define

from ._variants import VARIANTS, Context

__all__ = ["VARIANTS", "IncidentResult", "runIncident"]


_SERVED = re.compile(r"chart-data request (\d+) served")


# -- the child ------------------------------------------------------------------


def _harden(ctx: Context) -> list[Any]:
    from . import SafeObserver, hardenHandlers

    hardenHandlers()
    return [SafeObserver(o) for o in ctx.observers]


def childMain(variant: str, hardened: bool, events: int, workdir: Path, status: Path) -> int:
    """
    Run one variant in this process (a child of L{runIncident}): set it up,
    begin logging as twistd does (stdio redirected), log C{events} events,
    and keep C{status} up to date from a side thread so that a parent that
    kills us still learns how far we got.
    """
    from twisted.logger import globalLogBeginner, textFileLogObserver

    setup, _ = VARIANTS[variant]
    ctx = Context(workdir=workdir, hardened=hardened)
    setup(ctx)
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
        from . import SafeObserver

        witness = SafeObserver(witness, name="other.log")
    durations: list[float] = []
    state = {"done": False}
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
            "done": state["done"],
        }
        for key, read in ctx.extra.items():
            result[key] = read()
        return result

    def writeStatus() -> None:
        data = json.dumps(snapshot())
        tmp = status.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(data)
        os.replace(tmp, status)

    def heartbeat() -> None:
        while not state["done"]:
            try:
                writeStatus()
            except Exception:
                pass
            time.sleep(0.05)

    threading.Thread(target=heartbeat, daemon=True).start()
    globalLogBeginner.beginLoggingTo([witness, *observers], redirectStandardIO=True)
    assert ctx.log is not None
    for n in range(events):
        start = time.perf_counter()
        ctx.log(n)
        elapsed = time.perf_counter() - start
        with lock:
            durations.append(elapsed)
    state["done"] = True
    witnessFile.flush()
    writeStatus()
    return 0


# -- the parent -----------------------------------------------------------------


@define
class IncidentResult:
    """
    What one run of a variant did, read from its status file and stderr.
    """

    variant: str
    hardened: bool
    events: int
    completed: int
    done: bool
    timedOut: bool
    elapsed: float
    cpuSeconds: float
    failingCalls: int
    meanEventSeconds: float | None
    worstEventSeconds: float
    bytesWritten: int
    witnessText: str
    stderr: str
    extra: dict[str, Any]

    @property
    def reports(self) -> list[str]:
        """
        The library's own out-of-band report lines.
        """
        from ._report import REPORT_PREFIX

        return [line for line in self.stderr.splitlines() if line.startswith(REPORT_PREFIX)]

    def appEventsInWitness(self) -> int:
        """
        How many distinct application events reached the healthy sinks.
        """
        return len(set(_SERVED.findall(self.witnessText)))

    @property
    def looped(self) -> bool:
        """
        Did the run show the feedback loop: killed unfinished after hundreds
        of failing calls (or datagrams); a hardened run makes about a dozen.
        (Measured in 4 s: 1,300 to 2,800 on Twisted 22.10, 2,400 to 24,000
        on 26.10.)
        """
        work = self.failingCalls + int(self.extra.get("syslogDatagrams", 0))
        return self.timedOut and not self.done and work >= 500

    def problems(self) -> list[str]:
        """
        What a hardened run did wrong, in words (empty when it behaved).
        """
        found = []
        if not self.done or self.completed != self.events:
            found.append(f"completed {self.completed} of {self.events} events")
        if self.meanEventSeconds is None or self.meanEventSeconds > 0.010:
            found.append(f"mean time per event {self.meanEventSeconds!r} s (limit 10 ms)")
        if self.failingCalls > 50:
            found.append(f"failing sink was called {self.failingCalls} times (limit 50)")
        if self.appEventsInWitness() != self.events:
            found.append(f"healthy sinks got {self.appEventsInWitness()} of {self.events} events")
        return found


def runIncident(
    variant: str,
    hardened: bool,
    events: int = 300,
    timeout: float = 5.0,
    workdir: Path | None = None,
) -> IncidentResult:
    """
    Run C{variant} in a child process (killed after C{timeout} seconds) and
    say what happened.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    cleanup = workdir is None
    work = Path(tempfile.mkdtemp(prefix=f"safelog-{variant}-")) if workdir is None else workdir
    status = work / "status.json"
    command = [
        sys.executable,
        "-m",
        "twisted_safelog",
        "_incident-child",
        variant,
        "--events",
        str(events),
        "--workdir",
        str(work),
        "--status",
        str(status),
    ]
    if hardened:
        command.append("--hardened")
    start = time.monotonic()
    with open(work / "stderr.txt", "wb") as errFile:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errFile
        )
        try:
            child.wait(timeout)
            timedOut = False
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            timedOut = True
    elapsed = time.monotonic() - start
    try:
        data = json.loads(status.read_text())
    except (OSError, ValueError):
        data = {}
    stderr = (work / "stderr.txt").read_text(errors="replace")
    written = sum(p.stat().st_size for p in work.rglob("*.log*") if p.is_file())
    witness = ""
    for name in ("other.log", "other-stdlib.log"):
        if (work / name).exists():
            with open(work / name, errors="replace") as f:
                witness += f.read(20_000_000)
    known = {
        "variant",
        "hardened",
        "events",
        "completed",
        "meanEventSeconds",
        "worstEventSeconds",
        "failingCalls",
        "cpuSeconds",
        "done",
    }
    result = IncidentResult(
        variant=variant,
        hardened=hardened,
        events=events,
        completed=data.get("completed", 0),
        done=bool(data.get("done")),
        timedOut=timedOut,
        elapsed=elapsed,
        cpuSeconds=data.get("cpuSeconds", 0.0),
        failingCalls=data.get("failingCalls", 0),
        meanEventSeconds=data.get("meanEventSeconds"),
        worstEventSeconds=data.get("worstEventSeconds", 0.0),
        bytesWritten=written,
        witnessText=witness,
        stderr=stderr,
        extra={k: v for k, v in data.items() if k not in known},
    )
    if cleanup:
        shutil.rmtree(work, ignore_errors=True)
    return result

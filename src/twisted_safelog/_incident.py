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
import logging
import logging.handlers
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from attrs import define, field

__all__ = ["VARIANTS", "IncidentResult", "runIncident"]

H = TypeVar("H", bound=logging.Handler)

_SERVED = re.compile(r"chart-data request (\d+) served")


@define
class _Context:
    """
    What a variant's set-up gets and gives back.
    """

    workdir: Path
    hardened: bool
    failingCalls: list[int] = field(factory=lambda: [0])
    #: observers to begin logging to (besides the witness file observer)
    observers: list[Any] = field(factory=list)
    #: logs one application event
    log: Callable[[int], None] | None = None
    #: variant-specific counters copied into the status
    extra: dict[str, Callable[[], int]] = field(factory=dict)


def _counting(base: type[H], ctx: _Context) -> type[H]:
    """
    A subclass of C{base} that counts calls of C{emit}: the failing handler's
    calls are the loop's heartbeat.
    """

    class Counting(base):  # type: ignore[valid-type,misc]
        def emit(self, record: logging.LogRecord) -> None:
            ctx.failingCalls[0] += 1
            super().emit(record)

    Counting.__name__ = Counting.__qualname__ = base.__name__
    return Counting


def _twistedApp(ctx: _Context) -> None:
    from twisted.logger import Logger

    log = Logger(namespace="app.charts")
    ctx.log = lambda n: log.warn("chart-data request {n} served", n=n)


def _stdlibBridge(ctx: _Context) -> None:
    from twisted.logger import STDLibLogObserver

    ctx.observers.append(STDLibLogObserver())


def _legacyBridge(ctx: _Context) -> None:
    from twisted.python.log import PythonLoggingObserver

    ctx.observers.append(PythonLoggingObserver().emit)  # type: ignore[no-untyped-call]


def _renameFailingRotatingHandler(ctx: _Context) -> logging.Handler:
    """
    The incident: a rotating handler whose rollover renames into a directory
    that is gone, so every emit rolls over and every rollover fails (the
    strace showed rename() failing over and over; CPython bpo-18940).
    """
    archive = ctx.workdir / "archive"
    Counting = _counting(logging.handlers.RotatingFileHandler, ctx)
    handler = Counting(str(ctx.workdir / "app.log"), maxBytes=200, backupCount=3)
    handler.namer = lambda name: str(archive / os.path.basename(name))
    handler.rotator = os.rename
    return handler


def _missingDirectoryRotatingHandler(ctx: _Context) -> logging.Handler:
    """
    Stock C{RotatingFileHandler} whose log directory was deleted.
    """
    logs = ctx.workdir / "logs"
    logs.mkdir()
    Counting = _counting(logging.handlers.RotatingFileHandler, ctx)
    handler = Counting(str(logs / "app.log"), maxBytes=200, backupCount=3)
    shutil.rmtree(logs)
    return handler


def v_incident(ctx: _Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_missingDirectory(ctx: _Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_missingDirectoryRotatingHandler(ctx))


def v_legacyBridge(ctx: _Context) -> None:
    _twistedApp(ctx)
    _legacyBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_bothBridges(ctx: _Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    _legacyBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_stdlibApplication(ctx: _Context) -> None:
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))
    # The stdlib side's healthy sink, the counterpart of the Twisted witness.
    logging.getLogger().addHandler(logging.FileHandler(ctx.workdir / "other-stdlib.log"))
    log = logging.getLogger("app.charts")
    ctx.log = lambda n: log.warning("chart-data request %d served", n)


def v_py27HandleError(ctx: _Context) -> None:
    """
    A handler with a Python-2.7-style handleError: print the traceback to
    sys.stderr, unconditionally.
    """
    _twistedApp(ctx)
    _stdlibBridge(ctx)

    class Py27Style(logging.FileHandler):
        def emit(self, record: logging.LogRecord) -> None:
            ctx.failingCalls[0] += 1
            try:
                raise OSError(28, "No space left on device")
            except Exception:
                self.handleError(record)

        def handleError(self, record: logging.LogRecord) -> None:
            ei = sys.exc_info()
            traceback.print_exception(ei[0], ei[1], ei[2], None, sys.stderr)
            sys.stderr.write(f"Logged from file {record.filename}, line {record.lineno}\n")

    logging.getLogger().addHandler(Py27Style(ctx.workdir / "app.log", delay=True))


def v_raisingFormatter(ctx: _Context) -> None:
    """
    A Formatter that raises (Twisted #9906): the file is fine, formatting
    is not.
    """
    _twistedApp(ctx)
    _stdlibBridge(ctx)

    class Broken(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            raise KeyError("request_id")

    Counting = _counting(logging.FileHandler, ctx)
    handler = Counting(str(ctx.workdir / "app.log"))
    handler.setFormatter(Broken())
    logging.getLogger().addHandler(handler)


def v_syslogAndFile(ctx: _Context) -> None:
    """
    A UDP SysLogHandler to a port nobody listens on, next to the failing
    rotating file handler: every turn of the loop is also a sendto().
    """
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    deadPort = probe.getsockname()[1]
    probe.close()
    sent = [0]

    class CountingSysLog(logging.handlers.SysLogHandler):
        def emit(self, record: logging.LogRecord) -> None:
            sent[0] += 1
            super().emit(record)

    logging.getLogger().addHandler(CountingSysLog(("127.0.0.1", deadPort)))
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))
    ctx.extra["syslogDatagrams"] = lambda: sent[0]


def v_lastResort(ctx: _Context) -> None:
    """
    No stdlib handler at all: logging.lastResort writes to sys.stderr, which
    is the log again.
    """
    _twistedApp(ctx)
    _stdlibBridge(ctx)

    class CountingLastResort(logging._StderrHandler):  # type: ignore[name-defined,misc]
        def emit(self, record: logging.LogRecord) -> None:
            ctx.failingCalls[0] += 1
            super().emit(record)

    logging.lastResort = CountingLastResort(logging.WARNING)


def v_fanout(ctx: _Context) -> None:
    """
    Seven observers that always fail: LogPublisher re-emits each failure to
    the others, which fail too.
    """
    _twistedApp(ctx)
    from twisted.logger import ILogObserver
    from zope.interface import implementer

    @implementer(ILogObserver)
    class AlwaysFails:
        def __init__(self, n: int) -> None:
            self.n = n

        def __call__(self, event: Any) -> None:
            ctx.failingCalls[0] += 1
            raise OSError(f"observer {self.n} is broken")

    ctx.observers.extend(AlwaysFails(n) for n in range(7))


#: name -> (set-up, what it is, does plain Twisted loop forever on it?)
VARIANTS: dict[str, tuple[Callable[[_Context], None], str]] = {
    "incident": (v_incident, "rotating handler whose rollover rename() fails (bpo-18940)"),
    "missing-directory": (v_missingDirectory, "stock RotatingFileHandler, log directory deleted"),
    "legacy-bridge": (v_legacyBridge, "twisted.python.log.PythonLoggingObserver bridge"),
    "both-bridges": (v_bothBridges, "STDLibLogObserver and PythonLoggingObserver together"),
    "stdlib-application": (v_stdlibApplication, "application logs through stdlib logging"),
    "py27-handleError": (v_py27HandleError, "handler with a Python-2.7-style handleError"),
    "raising-formatter": (v_raisingFormatter, "a logging.Formatter that raises (Twisted #9906)"),
    "syslog-and-file": (v_syslogAndFile, "UDP SysLogHandler to a dead port + failing file"),
    "last-resort": (v_lastResort, "no stdlib handler: logging.lastResort writes to stderr"),
    "fanout": (v_fanout, "seven always-failing Twisted observers"),
}


# -- the child ------------------------------------------------------------------


def _harden(ctx: _Context) -> list[Any]:
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
    ctx = _Context(workdir=workdir, hardened=hardened)
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
        Did the run show the feedback loop: killed unfinished after thousands
        of failing calls (or datagrams)?
        """
        work = self.failingCalls + int(self.extra.get("syslogDatagrams", 0))
        return self.timedOut and not self.done and work >= 1000

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

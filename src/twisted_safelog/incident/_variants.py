# -*- test-case-name: tests.test_incident -*-
"""
Every measured shape of the Twisted/stdlib logging feedback loop, as set-up
functions for a child process (see L{twisted_safelog.incident.runIncident}).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from attrs import define, field, frozen

__all__ = ["VARIANTS", "Context", "Variant"]

H = TypeVar("H", bound=logging.Handler)


@define
class Context:
    """
    What a variant's set-up gets and gives back.

    @ivar workdir: The run's own directory: log files, the status file.
    @ivar hardened: Is this the twisted-safelog run (or plain Twisted)?
    @ivar failingCalls: A one-item list: how often the failing sinks were
        called (the loop's heartbeat).
    @ivar observers: Observers to begin logging to, besides the healthy
        witness file observer.
    @ivar log: Logs one application event, given its number.
    @ivar extra: Variant-specific counters, copied into the status.
    """

    workdir: Path
    hardened: bool
    failingCalls: list[int] = field(factory=lambda: [0])
    observers: list[Any] = field(factory=list)
    log: Callable[[int], None] | None = None
    extra: dict[str, Callable[[], int]] = field(factory=dict)


@frozen
class Variant:
    """
    One shape of the loop, and what each side is expected to do with it.

    @ivar setup: Sets the variant up in the child process.
    @ivar description: What it is, in a few words.
    @ivar plainLoops: Does plain Twisted loop for ever on it (rather than
        nest a bounded number of failing calls per event and finish)?
    @ivar failingSinks: How many always-failing sinks it has.
    @ivar perEvent: Calls of the failing sink that each application event
        makes even when hardened (C{logging.lastResort} is called once per
        warning: it works, its output is the echo that is stopped).
    """

    setup: Callable[[Context], None]
    description: str
    plainLoops: bool = True
    failingSinks: int = 1
    perEvent: int = 0

    #: Calls of one failing sink a hardened run may make: its first few
    #: successes, five failures, and a probe or two if the run is slow.
    QUARANTINE_LIMIT = 20

    def hardenedLimit(self, events: int) -> int:
        """
        The most calls of the failing sinks a hardened run of C{events}
        application events may make: what the demo and the suite both check.

        @param events: application events in the run.
        """
        return self.QUARANTINE_LIMIT * self.failingSinks + self.perEvent * events


def _counting(base: type[H], ctx: Context) -> type[H]:
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


def _twistedApp(ctx: Context) -> None:
    from twisted.logger import Logger

    log = Logger(namespace="app.charts")
    ctx.log = lambda n: log.warn("chart-data request {n} served", n=n)


def _stdlibBridge(ctx: Context) -> None:
    from twisted.logger import STDLibLogObserver

    ctx.observers.append(STDLibLogObserver())


def _legacyBridge(ctx: Context) -> None:
    from twisted.python.log import PythonLoggingObserver

    ctx.observers.append(PythonLoggingObserver().emit)  # type: ignore[no-untyped-call]


def _renameFailingRotatingHandler(ctx: Context) -> logging.Handler:
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


def _missingDirectoryRotatingHandler(ctx: Context) -> logging.Handler:
    """
    Stock C{RotatingFileHandler} whose log directory was deleted.
    """
    logs = ctx.workdir / "logs"
    logs.mkdir()
    Counting = _counting(logging.handlers.RotatingFileHandler, ctx)
    handler = Counting(str(logs / "app.log"), maxBytes=200, backupCount=3)
    shutil.rmtree(logs)
    return handler


def v_incident(ctx: Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_missingDirectory(ctx: Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_missingDirectoryRotatingHandler(ctx))


def v_legacyBridge(ctx: Context) -> None:
    _twistedApp(ctx)
    _legacyBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_bothBridges(ctx: Context) -> None:
    _twistedApp(ctx)
    _stdlibBridge(ctx)
    _legacyBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))


def v_stdlibApplication(ctx: Context) -> None:
    _stdlibBridge(ctx)
    logging.getLogger().addHandler(_renameFailingRotatingHandler(ctx))
    # The stdlib side's healthy sink, the counterpart of the Twisted witness.
    logging.getLogger().addHandler(logging.FileHandler(ctx.workdir / "other-stdlib.log"))
    log = logging.getLogger("app.charts")
    ctx.log = lambda n: log.warning("chart-data request %d served", n)


def v_py27HandleError(ctx: Context) -> None:
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


def v_raisingFormatter(ctx: Context) -> None:
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


def v_syslogAndFile(ctx: Context) -> None:
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


def v_lastResort(ctx: Context) -> None:
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


def v_fanout(ctx: Context) -> None:
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


#: Every variant by name; the first is the demo's default.
VARIANTS: dict[str, Variant] = {
    "incident": Variant(v_incident, "rotating handler whose rollover rename() fails (bpo-18940)"),
    "missing-directory": Variant(
        v_missingDirectory, "stock RotatingFileHandler, log directory deleted"
    ),
    "legacy-bridge": Variant(v_legacyBridge, "twisted.python.log.PythonLoggingObserver bridge"),
    "both-bridges": Variant(v_bothBridges, "STDLibLogObserver and PythonLoggingObserver together"),
    "stdlib-application": Variant(v_stdlibApplication, "application logs through stdlib logging"),
    "py27-handleError": Variant(v_py27HandleError, "handler with a Python-2.7-style handleError"),
    "raising-formatter": Variant(
        v_raisingFormatter, "a logging.Formatter that raises (Twisted #9906)"
    ),
    "syslog-and-file": Variant(v_syslogAndFile, "UDP SysLogHandler to a dead port + failing file"),
    "last-resort": Variant(
        v_lastResort,
        "no stdlib handler: logging.lastResort writes to stderr",
        plainLoops=False,
        failingSinks=0,
        perEvent=1,
    ),
    "fanout": Variant(v_fanout, "seven always-failing Twisted observers", failingSinks=7),
}

# -*- test-case-name: tests.test_twistd -*-
"""
The factory behind C{twistd --logger=twisted_safelog.observer}.

twistd resolves C{--logger} with C{namedAny} and calls the result with no
arguments from C{AppLogger.start}, before it daemonizes; with C{--logger} it
ignores its own C{--logfile}. So L{observer} reads twistd's command line
itself, with twistd's own option parser
(L{twistdOptions<twisted_safelog._twistdoptions.twistdOptions>}), to honour C{--logfile} and
C{-n/--nodaemon} the way twistd's default logger does; starts no thread and
no timer (the double fork would lose them); and hardens the whole process
with L{install}.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from zope.interface import implementer

from ._errors import ConfigurationError
from ._file import formatJSONLine, formatTextLine, safeFileLogObserver
from ._fork import handOverAtFork
from ._install import install
from ._nonblocking import NonBlockingObserver
from ._operations import FirstThatWorks, reportsFallback, serveMetrics, statusFileFor
from ._policy import Policy
from ._registry import IHardenedSink
from ._report import FileDescriptorWriter, Reporter, setDefaultReporter
from ._rotationwatch import rotationWatcher
from ._safe import SafeObserver
from ._settings import Settings
from ._stall import watchdog
from ._statusfile import RecentReports, StatusFile
from ._twistdoptions import twistdOptions

__all__ = ["buildObserver", "observer", "twistdOptions"]


class _Tee:
    """
    Write report lines to several places; one that fails does not stop the
    others.
    """

    def __init__(self, *writers: Callable[[str], object]) -> None:
        self.writers = writers

    def __repr__(self) -> str:
        return f"_Tee{self.writers!r}"

    def __call__(self, text: str) -> None:
        for write in self.writers:
            try:
                write(text)
            except Exception:
                pass


def _reportWriter(
    settings: Settings,
    nodaemon: bool,
    logWrite: Callable[[str], object] | None,
    rundir: str | None = None,
) -> Callable[[str], object]:
    where = settings.reports
    if where == "stderr":
        return FileDescriptorWriter(2)
    if where == "logfile":
        if logWrite is None:
            raise ConfigurationError(
                "TWISTED_SAFELOG_REPORTS='logfile' needs a log file; "
                "give twistd --logfile=PATH or use auto or stderr"
            )
        return logWrite
    if where == "auto":
        writers: list[Callable[[str], object]] = []
        if logWrite is not None:
            if nodaemon:
                writers.append(logWrite)
            else:
                # Daemonized, fd 2 is /dev/null: when the log file is the
                # broken sink its reports go to a file in the run directory.
                writers.append(FirstThatWorks(logWrite, reportsFallback(rundir)))
        if nodaemon or logWrite is None:
            writers.append(FileDescriptorWriter(2))
        return _Tee(*writers)
    from ._file import LogFileWriter

    reportFile = LogFileWriter(where, createDirectory=settings.create_directory)
    reportFile.checkPath()
    return reportFile.write


def buildObserver(
    twistd: dict[str, Any],
    settings: Settings,
    installSignalHandler: bool = True,
) -> ILogObserver:
    """
    The observer for twistd options C{twistd} and C{settings}; hardens the
    process (L{install}) and sets the process-wide reporter as a side
    effect.
    """
    logfile = twistd.get("logfile") or ""
    nodaemon = bool(twistd.get("nodaemon"))
    if logfile == "-" and not nodaemon:
        raise ConfigurationError("daemons cannot log to stdout; give --logfile=PATH or run with -n")
    toStdout = logfile == "-" or (nodaemon and not logfile)
    # Daemonizing: start no thread before twistd forks (see
    # _startWhenRunning). In the foreground there is no fork to wait for.
    startNow = nodaemon or not installSignalHandler
    if not startNow:
        handOverAtFork(True)
    formatter = formatJSONLine if settings.format == "json" else formatTextLine
    policy = settings.policy()

    if toStdout:
        sink: SafeObserver = SafeObserver(
            FileLogObserver(sys.stdout, formatter), policy, name="stdout"
        )
        logWrite = None
    else:
        path = logfile or "twistd.log"
        rotate = settings.rotate_length or None
        keep = settings.max_rotated_files or None
        fileSink = safeFileLogObserver(
            path,
            settings.format,
            rotateLength=rotate,
            maxRotatedFiles=keep,
            createDirectory=settings.create_directory,
            policy=policy,
        )
        sink = fileSink
        # Reports into the log file never wait for it (a stuck write holds
        # its lock; a stopped terminal takes nothing).
        logWrite = fileSink.writer.writeReport
        if installSignalHandler:
            _reopenOnSIGUSR1(fileSink.writer.reopen)

    write = _reportWriter(settings, nodaemon, logWrite, twistd.get("rundir"))
    recent = None
    if settings.status_file:
        # The status file carries the last reports: they reach someone even
        # when the log file is the broken sink and fd 2 is /dev/null.
        recent = RecentReports()
        write = _Tee(write, recent)
    statusFile = statusFileFor(settings, recent)
    metrics = serveMetrics(settings)
    if statusFile is not None and metrics is not None:
        statusFile.extra["metrics"] = metrics
    reporter = Reporter(write=write)
    setDefaultReporter(reporter)
    sink.reporter = reporter
    if statusFile is not None:
        statusFile.reporter = reporter

    top: ILogObserver = sink
    workers: list[NonBlockingObserver] = []
    if settings.nonblocking:
        nonBlocking = _nonBlocking(sink, settings, reporter, startNow)
        workers.append(nonBlocking)
        top = nonBlocking
    filtered = FilteringLogObserver(
        top, [LogLevelFilterPredicate(defaultLogLevel=settings.logLevel)]
    )
    installation = install(globalLogPublisher, policy=policy, reporter=reporter)
    workers.extend(_bridge(settings, reporter, policy, startNow))
    if installSignalHandler:
        closers: list[Callable[[], object]] = [w.shutdown for w in workers]
        closers += [installation.close, sink.close, reporter.flush]
        if statusFile is not None:
            closers.append(statusFile.stop)
        _startWhenRunning(workers if not startNow else [], statusFile)
        _closeAtShutdown(*closers)
    return _TwistdObserver(filtered, sink, top, settings.logLevel)


def _startWhenRunning(
    workers: Sequence[NonBlockingObserver], statusFile: StatusFile | None
) -> None:
    """
    Start threads once the reactor runs: twistd has daemonized by then, so
    none is lost in the fork. Until then what is pending at a fork goes with
    the child (twistd's parent exits at once), the non-blocking observers
    deliver on the caller's thread, and the stall watchdog waits.
    """
    from twisted.internet import reactor

    def running() -> None:
        handOverAtFork(False)
        for worker in workers:
            worker.start()
        watchdog.ensureRunning()
        rotationWatcher.ensureRunning()
        if statusFile is not None:
            statusFile.start()

    reactor.callWhenRunning(running)


def _nonBlocking(
    sink: SafeObserver, settings: Settings, reporter: Reporter, startNow: bool
) -> NonBlockingObserver:
    # Under twistd not started here when daemonizing: twistd calls the
    # factory before it forks, and the fork would lose the thread.
    return NonBlockingObserver(
        sink,
        maxQueue=settings.queue_size,
        policy=settings.overflow,
        reporter=reporter,
        start=startNow,
    )


def _closeAtShutdown(*closers: Callable[[], object]) -> None:
    """
    After the reactor has shut down, account for what is still buffered:
    twistd ends itself by re-raising SIGTERM, which skips atexit handlers.
    Under twistd the reactor is installed before the factory runs, so this
    import does not choose one; no timer or thread is started.
    """
    from twisted.internet import reactor

    def closeAll() -> None:
        for close in closers:
            try:
                close()
            except Exception:
                pass

    reactor.addSystemEventTrigger("after", "shutdown", closeAll)


@implementer(ILogObserver, IHardenedSink)
class _TwistdObserver:
    """
    What twistd adds to the global publisher: the level filter in front of
    the hardened sink. Hardened (it provides L{IHardenedSink}), so
    L{install} does not wrap it again; not registered, as its sink is.

    A plain dict event with a C{LogLevel} and a namespace string, and no
    C{log_trace}, gets C{LogLevelFilterPredicate}'s verdict from one set
    lookup (a predicate with only a default level passes an event if and
    only if its level is at least that level and its namespace is not
    empty); any other event goes through C{filtered}, Twisted's own
    C{FilteringLogObserver}, and is passed, dropped or changed exactly as
    Twisted does.
    """

    def __init__(
        self, filtered: ILogObserver, sink: SafeObserver, top: ILogObserver, minimum: LogLevel
    ) -> None:
        self.filtered = filtered
        self.sink = sink
        self.name = sink.name
        self._top = top
        self._passing = frozenset(level for level in LogLevel.iterconstants() if level >= minimum)

    def drain(self) -> None:
        self.sink.drain()

    def close(self) -> None:
        self.sink.close()

    def __repr__(self) -> str:
        return f"<twisted_safelog.observer {self.sink!r}>"

    def __call__(self, event: Any) -> None:
        # Only a plain dict (a subclass or another mapping may answer a
        # subscript otherwise than get(), which Twisted uses: a defaultdict
        # would grow the missing key and pass), without log_trace (Twisted's
        # filter records itself in it), with one of the LogLevel constants
        # (a look-alike equal to one is compared as Twisted compares it).
        if type(event) is dict and "log_trace" not in event:
            try:
                namespace = event["log_namespace"]
                level = event["log_level"]
            except KeyError:
                pass
            else:
                if type(namespace) is str and namespace and type(level) is _CONSTANT:
                    if level in self._passing:
                        self._top(event)
                        return
                    if level in _LEVELS:
                        return
        self.filtered(event)

    def stats(self) -> Any:
        return self.sink.stats()


_LEVELS = frozenset(LogLevel.iterconstants())
#: The type of the LogLevel constants (constantly's NamedConstant).
_CONSTANT = type(LogLevel.info)


def _bridge(
    settings: Settings, reporter: Reporter, policy: Policy, startNow: bool
) -> list[NonBlockingObserver]:
    """
    Add the bridges the settings ask for; return the non-blocking observers
    to start when the reactor runs and to flush at shutdown.
    """
    import logging

    from ._stdlib import StdlibObserver, TwistedHandler

    workers: list[NonBlockingObserver] = []
    if settings.bridge in ("to-stdlib", "both"):
        bridge = SafeObserver(StdlibObserver(), policy, name="stdlib bridge", reporter=reporter)
        if settings.nonblocking:
            nonBlocking = _nonBlocking(bridge, settings, reporter, startNow)
            workers.append(nonBlocking)
            globalLogPublisher.addObserver(nonBlocking)
        else:
            globalLogPublisher.addObserver(bridge)
    if settings.bridge in ("from-stdlib", "both"):
        root = logging.getLogger()
        root.addHandler(TwistedHandler(globalLogPublisher))
        root.setLevel(min(root.level or logging.WARNING, _stdlibLevel(settings.level)))
    return workers


def _stdlibLevel(level: str) -> int:
    import logging

    return {"warn": logging.WARNING}.get(level, getattr(logging, level.upper(), logging.INFO))


def _reopenOnSIGUSR1(reopen: Callable[[], None]) -> None:
    """
    As twistd does for its own log file: SIGUSR1 reopens it (logrotate's
    postrotate), unless the application handles SIGUSR1 itself.
    """
    if not hasattr(signal, "SIGUSR1") or signal.getsignal(signal.SIGUSR1) not in (
        signal.SIG_DFL,
        None,
    ):
        return

    def onSIGUSR1(signum: int, frame: object) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(reopen)  # type: ignore[attr-defined]

    try:
        signal.signal(signal.SIGUSR1, onSIGUSR1)
    except ValueError:
        # Not the main thread: twistd always calls us from it; others may not.
        pass


def observer() -> ILogObserver:
    """
    The zero-argument factory for C{twistd --logger=twisted_safelog.observer}.

    Logs where twistd would (stdout with C{-n} and no C{--logfile}, the file
    given by C{--logfile}, C{twistd.log} when daemonized), hardened; applies
    the C{TWISTED_SAFELOG_*} settings; hardens every observer and stdlib
    handler of the process, now and later. A bad setting ends twistd with
    exit status 1 and one line that says what to fix.
    """
    try:
        return buildObserver(twistdOptions(), Settings.load(os.environ))
    except ConfigurationError as error:
        raise SystemExit(f"twisted-safelog: {error}") from None

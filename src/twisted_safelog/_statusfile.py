# -*- test-case-name: tests.test_statusfile -*-
"""
L{StatusFile}: the process's L{status} as a JSON file that a monitoring
check (C{python -m twisted_safelog status PATH}) or a person reads, and the
last report lines, so reports reach someone even when the log file is the
broken sink and file descriptor 2 is C{/dev/null}.

The file is replaced atomically (a temporary file in the same directory,
then C{os.replace}), so a reader never sees half of it. It is written by one
worker thread, on every state change of any hardened sink and every
C{interval} seconds, so a slow or hung file system can never block the
caller (the reactor); the thread starts on L{start} (the twistd factory calls
it once the reactor runs, after twistd has daemonized, so no thread exists
before the fork).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ._errors import ConfigurationError
from ._report import IReporter
from ._stats import oneLine
from ._status import isHealthy, shownState, status, uniqueNames, watchStateChanges

__all__ = ["FORMAT_VERSION", "RecentReports", "StatusFile", "statusDocument"]

#: The status file's format; readers refuse another.
FORMAT_VERSION = 1

_instances: weakref.WeakSet[StatusFile] = weakref.WeakSet()


def _afterForkInChild() -> None:
    for instance in list(_instances):
        instance._resetAfterFork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_afterForkInChild)


class RecentReports:
    """
    The last C{maxLines} report lines, as a report writer (give it to a
    L{Reporter}, beside the other places reports go): the status file carries
    them, so they reach someone even when every other place is broken.
    Appending never blocks and never fails.

    @param maxLines: how many of the latest report lines are kept.
    """

    def __init__(self, maxLines: int = 50) -> None:
        self.maxLines = maxLines
        self._lines: deque[str] = deque(maxlen=maxLines)

    def __repr__(self) -> str:
        return f"RecentReports(maxLines={self.maxLines})"

    def __call__(self, text: str) -> None:
        for line in text.splitlines():
            self._lines.append(oneLine(line, 400))

    def lines(self) -> list[str]:
        """
        The kept report lines, oldest first.
        """
        return list(self._lines)


def statusDocument(
    interval: float,
    reports: RecentReports | None = None,
    extra: dict[str, Any] | None = None,
    stopped: bool = False,
) -> dict[str, Any]:
    """
    The status file's content: L{status} of every sink (named uniquely), when
    it was written, how often it is rewritten, the recent reports.
    """
    sinks = []
    for name, stats in uniqueNames(status()):
        entry = stats.asDict()
        entry["name"] = name
        entry["breakerState"] = str(stats.state)
        entry["state"] = shownState(stats)
        entry["healthy"] = isHealthy(stats)
        sinks.append(entry)
    document: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "pid": os.getpid(),
        "written": time.time(),
        "interval": interval,
        "stopped": stopped,
        "healthy": all(sink["healthy"] for sink in sinks),
        "sinks": sinks,
        "reports": reports.lines() if reports is not None else [],
    }
    if extra:
        document.update(extra)
    return document


class StatusFile:
    """
    Keep the JSON status document at C{path} up to date from a worker thread.

    @param interval: seconds between two writes when nothing changes; a
        reader calls the file stale after a few of them.
    @param reports: the recent report lines to include.
    @param extra: more top-level keys (the metrics address, say).
    @param path: the status file; a temporary file beside it is renamed over it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        interval: float = 5.0,
        reports: RecentReports | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not (math.isfinite(interval) and interval > 0):
            raise ConfigurationError(
                f"status file interval must be a finite number > 0 seconds, not {interval!r}"
            )
        self.path = os.path.abspath(os.fspath(path))
        self.interval = interval
        self.reports = reports
        self.extra = dict(extra or {})
        #: The last error writing the file, in one line; L{None} after a success.
        self.lastError: str | None = None
        self.writes = 0
        #: Writes that failed.
        self.failures = 0
        #: Told once when the worker cannot write the file, and once when it
        #: can again (the twistd factory gives its reporter); L{None}: nobody.
        self.reporter: IReporter | None = None
        self._stopWatching: Callable[[], None] | None = None
        self._setUpThreading()
        _instances.add(self)

    def __repr__(self) -> str:
        return f"StatusFile({self.path!r}, interval={self.interval:g})"

    def _setUpThreading(self) -> None:
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._dirty = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def _resetAfterFork(self) -> None:
        # The worker did not survive the fork and its lock may be held by a
        # thread that no longer exists. The child does not take over the
        # parent's file (two processes would write one status); it may call
        # start() itself. (Still watching is harmless: changed() only marks
        # the document dirty.)
        self._setUpThreading()

    def checkPath(self) -> None:
        """
        Raise L{ConfigurationError} if the file can never be written (its
        directory is missing or not one, the path is a directory, or the
        temporary file cannot be made there: asking C{os.access} is not
        enough: root is told yes for C{/proc} or a FUSE mount that refuses).
        """
        where = f"status file {self.path}"
        if os.path.isdir(self.path):
            raise ConfigurationError(f"{where} is a directory; give a file path")
        parent = os.path.dirname(self.path)
        if not os.path.isdir(parent):
            raise ConfigurationError(f"{where}: directory {parent} does not exist; create it")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigurationError(f"{where}: directory {parent} is not writable")
        temporary = self._temporaryPath()
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            # Left by a process that was killed while writing; write()
            # truncates it.
            pass
        except OSError as error:
            reason = error.strerror or error
            raise ConfigurationError(
                f"{where}: cannot create a file in {parent} ({reason})"
            ) from None
        else:
            try:
                os.unlink(temporary)
            except OSError:
                pass

    def _temporaryPath(self) -> str:
        directory, base = os.path.split(self.path)
        return os.path.join(directory, f".{base}.{os.getpid()}.tmp")

    # -- writing ------------------------------------------------------------------

    def write(self, stopped: bool = False) -> None:
        """
        Write the document now, on the caller's thread: a temporary file in
        the same directory, then C{os.replace}. Raises C{OSError}.

        @param stopped: say that the process stopped (the last write).
        """
        document = statusDocument(self.interval, self.reports, self.extra, stopped)
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        temporary = self._temporaryPath()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.replace(temporary, self.path)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        self.writes += 1

    def changed(self) -> None:
        """
        Something changed: write soon, from the worker. Never blocks for
        longer than it takes to take an uncontended lock; never raises.
        """
        with self._lock:
            self._dirty = True
            self._wake.notify()

    def start(self) -> None:
        """
        Write now and then on every state change and every C{interval}
        seconds, from a daemon thread; idempotent.
        """
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._dirty = True
            thread = threading.Thread(
                target=self._work, name=f"twisted-safelog status file {self.path}", daemon=True
            )
            self._thread = thread
        if self._stopWatching is None:
            self._stopWatching = watchStateChanges(self.changed)
        thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """
        Stop the worker (waiting at most C{timeout} seconds for it), then
        write a last document saying the process stopped, unless the worker
        is stuck in a write. Returns whether the last document was written.

        @param timeout: the longest wait, in seconds, for the worker to write the last status.
        @return: whether it ended in time.
        """
        if self._stopWatching is not None:
            self._stopWatching()
            self._stopWatching = None
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return False
        with self._lock:
            self._thread = None
        try:
            self.write(stopped=True)
        except OSError as error:
            self.lastError = oneLine(str(error))
            return False
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._dirty and not self._stopping:
                    self._wake.wait(self.interval)
                if self._stopping:
                    return
                self._dirty = False
            try:
                self.write()
            except Exception as error:
                # Tried again at the next change or interval; the file's age
                # tells the reader it is stale meanwhile, and the report why.
                self.failures += 1
                if self.lastError is None:
                    self._note(f"status file {self.path} cannot be written ({oneLine(str(error))})")
                self.lastError = oneLine(str(error))
            else:
                if self.lastError is not None:
                    self._note(f"status file {self.path} written again")
                self.lastError = None

    def _note(self, line: str) -> None:
        if self.reporter is None:
            return
        try:
            self.reporter.note(line)
        except Exception:
            # The reporter is the last resort.
            pass

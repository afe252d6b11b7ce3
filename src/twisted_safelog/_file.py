# -*- test-case-name: tests.test_file -*-
"""
File sinks that survive what log files go through: an external logrotate,
a deleted directory, a full disk, a permission change, a rotation whose
rename fails.

L{LogFileWriter} does the writing and raises C{OSError} when it cannot;
L{safeFileLogObserver} puts it behind a L{SafeObserver}, whose breaker turns
those errors into a quarantine with a replay buffer, and which recovers on
its own once the cause is gone.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from twisted.logger import ILogObserver, LogEvent
from zope.interface import implementer

from ._errors import ConfigurationError
from ._formats import FORMATS, formatJSONLine, formatTextLine
from ._logfile import DEFAULT_CHECK_EVERY, DEFAULT_CHECK_INTERVAL, LogFileWriter
from ._report import defaultReporter
from ._rotationwatch import RotationWatcher, rotationWatcher
from ._safe import SafeObserver

__all__ = [
    "DEFAULT_CHECK_EVERY",
    "DEFAULT_CHECK_INTERVAL",
    "FileSink",
    "LogFileWriter",
    "SafeFileObserver",
    "formatJSONLine",
    "formatTextLine",
    "safeFileLogObserver",
]


#: The errors of a file that tell nothing about the event being written: a
#: full disk or quota, an I/O error, a missing directory, a permission or
#: read-only mount not fixed yet, a link swapped in at the path. Events that
#: fail with them are replayed when the file works again.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EIO",
        "ENOENT",
        "EACCES",
        "EPERM",
        "EROFS",
        "EAGAIN",
        "EINTR",
        "ESTALE",
        "ELOOP",
    )
    if hasattr(errno, name)
)


@implementer(ILogObserver)
class FileSink:
    """
    An L{ILogObserver} that formats each event and writes it with a
    L{LogFileWriter}, raising C{OSError} on failure (wrap it: see
    L{safeFileLogObserver}).

    @param writer: the file the lines are written to.
    @param formatter: turns one event into one line (L{formatTextLine}, L{formatJSONLine}).
    """

    def __init__(self, writer: LogFileWriter, formatter: Callable[[LogEvent], str]) -> None:
        self.writer = writer
        self.formatter = formatter

    def __repr__(self) -> str:
        return f"FileSink({self.writer.path!r})"

    def __call__(self, event: LogEvent) -> None:
        text = self.formatter(event)
        if text:
            self.writer.write(text)


@implementer(ILogObserver)
class SafeFileObserver(SafeObserver):
    """
    The L{SafeObserver} that L{safeFileLogObserver} returns: the same, plus
    the file's L{LogFileWriter} and its controls.

    The parameters not listed here are L{SafeObserver}'s.
    """

    writer: LogFileWriter

    def isTransient(self, error: BaseException) -> bool:
        """
        A full disk, an I/O error, a missing directory and the like are the
        file's trouble, not the event's: such events are replayed, in
        order and exactly once, when the file works again.

        @param error: the exception the file writer raised.
        """
        return isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS

    def reopen(self) -> None:
        """
        Reopen the file on the next event (signal-driven rotation).
        """
        self.writer.reopen()

    def rotate(self) -> None:
        """
        Rotate the file now.
        """
        self.writer.rotate()

    def close(self) -> None:
        """
        L{SafeObserver.close}, then close the file (a later event opens it
        again).
        """
        super().close()
        self.writer.close()


def safeFileLogObserver(
    path: str | os.PathLike[str],
    format: str = "text",
    *,
    rotateLength: int | None = None,
    maxRotatedFiles: int | None = None,
    createDirectory: bool = False,
    mode: int = 0o644,
    checkInterval: float = DEFAULT_CHECK_INTERVAL,
    checkEvery: int = DEFAULT_CHECK_EVERY,
    watcher: RotationWatcher | None = rotationWatcher,
    **safeObserverArguments: Any,
) -> SafeFileObserver:
    """
    A hardened observer that writes events to the file at C{path}, as text
    (C{format="text"}, Twisted's classic format) or JSON lines
    (C{format="json"}).

    It survives an external logrotate (reopens when the path's inode
    changes, checked at most every C{checkEvery} events or C{checkInterval}
    seconds, and at once on C{reopen()}), a missing directory (quarantined until it is back, or
    recreated with C{createDirectory=True}), ENOSPC, EACCES and EIO
    (quarantined, events buffered, replayed in order on recovery), and a
    rotation whose rename fails (keeps writing, reports it).

    A path that can never work (a directory) raises L{ConfigurationError}
    with one line that says what to fix. A path that may work later (its
    directory does not exist yet) starts quarantined and the report says so.

    The returned L{SafeFileObserver} has the writer as C{.writer}, and
    C{.reopen()} for signal-driven rotation.

    @param safeObserverArguments: passed to L{SafeObserver} (C{bufferSize},
        C{fallback}, C{failureThreshold}, C{reporter}, C{clock}, ...).
    @param path: the log file.
    @param format: C{"text"} (Twisted's classic lines) or C{"json"} (JSON lines).
    @param rotateLength: rotate at this many bytes (C{path.1} ... C{path.N}); L{None}: never.
    @param maxRotatedFiles: rotated files to keep; L{None}: all.
    @param createDirectory: create a missing directory instead of waiting for it.
    @param mode: the permissions of a file it creates.
    @param checkInterval: the longest time, in seconds, between two checks of the path's device and
        inode (see L{LogFileWriter}).
    @param checkEvery: the most events between two such checks.
    @param watcher: notices a rotation at once (see L{LogFileWriter}); L{None}: only the checks
        above do.
    """
    formatter = FORMATS.get(format)
    if formatter is None:
        raise ConfigurationError(
            f"format must be one of {', '.join(sorted(FORMATS))}, not {format!r}"
        )
    reporter = safeObserverArguments.get("reporter") or defaultReporter()
    writer = LogFileWriter(
        path,
        rotateLength=rotateLength,
        maxRotatedFiles=maxRotatedFiles,
        createDirectory=createDirectory,
        mode=mode,
        reporter=reporter,
        checkInterval=checkInterval,
        checkEvery=checkEvery,
        watcher=watcher,
    )
    writer.checkPath()
    safeObserverArguments.setdefault("name", writer.path)
    observer = SafeFileObserver(FileSink(writer, formatter), **safeObserverArguments)
    observer.writer = writer
    try:
        with writer._lock:
            writer._current()
    except OSError as error:
        try:
            reporter.note(
                f"log file {writer.path} cannot be opened yet ({type(error).__name__}: "
                f"{error.strerror or error}); starting quarantined, events are buffered "
                "and written when it can be opened"
            )
        except Exception:
            pass
        observer.breaker.trip()
    return observer

# -*- test-case-name: tests.test_file -*-
"""
L{LogFileWriter}: appends lines to a log file and survives what log files
go through (an external logrotate, a deleted directory, a full disk, a
permission change), raising C{OSError} when it cannot write.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from ._errors import ConfigurationError
from ._fdwriter import NonBlockingDescriptor, lostReportsLine
from ._filepath import PathKeeping
from ._fork import registerForFork
from ._pathcheck import CREATE_GRACE as CREATE_GRACE
from ._pathcheck import PathChecking
from ._policy import checkNumber
from ._report import IReporter, defaultReporter, describe
from ._rotationwatch import RotationWatcher, rotationWatcher

__all__ = ["DEFAULT_CHECK_EVERY", "DEFAULT_CHECK_INTERVAL", "LogFileWriter"]

#: Seconds between two checks that the log file is still at its path.
DEFAULT_CHECK_INTERVAL = 0.1
#: Writes between two such checks, at most.
DEFAULT_CHECK_EVERY = 1000
#: The doorbell of a writer without a rotation watcher.
_SILENT = bytearray(1)


class LogFileWriter(PathChecking, PathKeeping):
    """
    Appends text to the file at C{path}, one lock per writer, one
    C{os.write} per event on a file opened with C{O_APPEND} (so each event is
    on disk, not in a Python buffer, when L{write} returns).

    It notices that logrotate (create mode) moved the file away, or that it
    was deleted, by comparing the path's device and inode with the open
    file's, and then reopens the path. Not before every write (a system
    call per event): when C{watcher} (Linux's inotify, see
    L{twisted_safelog._rotationwatch}) saw the file moved, deleted or
    replaced, at the next write; in any case at most every C{checkEvery}
    writes or C{checkInterval} seconds, after a failed write, and at once
    after L{reopen} (SIGUSR1 under twistd, logrotate's C{postrotate}).
    What is written in between goes to the rotated file, where it is not
    lost unless logrotate compresses and removes it; to a deleted file, it
    is lost, and the next check counts (L{writtenToDeletedFile}) and
    reports it. While the path is missing after a move, a watched writer
    waits up to L{CREATE_GRACE} seconds for logrotate to create the new
    file before creating it itself.

    With C{rotateLength}, the file is rotated by size (C{path.1} ...
    C{path.N}, N = C{maxRotatedFiles}); missing files are skipped, and if a
    rename fails the writer keeps writing to the current file and says so
    through C{reporter}, it never ends up closed.

    Errors (a missing directory, ENOSPC, EACCES, EIO) are raised as
    C{OSError}: the caller (a L{SafeObserver}) decides what a failure means.
    A write that fails part way (the disk filled up during it) is rolled
    back, so the file holds whole lines only; if it cannot be (another
    process appended since), the next write starts on a new line, so two
    events are never glued together.

    The first open follows a symbolic link at C{path} (one the administrator
    configured); later opens (after a rotation, a deletion, L{reopen}) do not
    follow a link that was swapped in since (C{O_NOFOLLOW}): they fail with
    C{ELOOP}, said once through C{reporter}, until the link is removed.

    @param path: the log file.
    @param rotateLength: rotate when the file reaches this many bytes; L{None} or 0: never.
    @param maxRotatedFiles: rotated files to keep; L{None} or 0: all.
    @param createDirectory: create the file's directory when it is missing.
    @param mode: the permissions of a file it creates.
    @param reporter: where problems with the file are reported (the default reporter if L{None}).
    @param checkInterval: the longest time, in seconds, between two checks of the path's device and
        inode.
    @param checkEvery: the most writes between two such checks.
    @param clock: returns the time in seconds for C{checkInterval} (C{time.monotonic} by default).
    @param watcher: tells the writer when its file was moved or deleted (the process's inotify
        thread by default); L{None}: the periodic check alone.
    """

    # What write() reads on every event, in slots (see HardenedSink's).
    __slots__ = (
        "_checkAt",
        "_clock",
        "_closeWhenDone",
        "_depth",
        "_doorbell",
        "_fd",
        "_later",
        "_lock",
        "_note",
        "_size",
        "_torn",
        "_unchecked",
        "checkEvery",
        "rotateLength",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        rotateLength: int | None = None,
        maxRotatedFiles: int | None = None,
        createDirectory: bool = False,
        mode: int = 0o644,
        reporter: IReporter | None = None,
        checkInterval: float = DEFAULT_CHECK_INTERVAL,
        checkEvery: int = DEFAULT_CHECK_EVERY,
        clock: Callable[[], float] = time.monotonic,
        watcher: RotationWatcher | None = rotationWatcher,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        checkNumber("checkInterval", checkInterval, minimum=0)
        checkNumber("checkEvery", checkEvery, integer=True, minimum=1)
        self.checkInterval = checkInterval
        self.checkEvery = checkEvery
        self._clock = clock
        self._watcher = watcher
        self._doorbell = _SILENT if watcher is None else watcher.doorbell
        # Writes since the path was last checked, and when the next check is
        # due at the latest.
        self._unchecked = 0
        self._checkAt = 0.0
        #: Writes that went to a file found deleted at the next check.
        self.writtenToDeletedFile = 0
        # A line to report once the lock is released.
        self._note: str | None = None
        if rotateLength is not None:
            checkNumber("rotateLength", rotateLength, integer=True, minimum=1)
        if maxRotatedFiles is not None:
            checkNumber("maxRotatedFiles", maxRotatedFiles, integer=True, minimum=1)
        checkNumber("mode", mode, integer=True, minimum=0)
        self.rotateLength = rotateLength
        self.maxRotatedFiles = maxRotatedFiles
        self.createDirectory = createDirectory
        self.mode = mode
        self.reporter = defaultReporter() if reporter is None else reporter
        # Reentrant, with the depth of the work under it: code that runs on
        # a thread in the middle of the writer's own work (a signal handler
        # that logs or reopens, a finalizer) must not wait for a lock its
        # own thread holds, nor change what that work is half way through:
        # what it asks is done when the work is over (_later).
        self._lock = threading.RLock()
        self._depth = 0
        self._later: deque[Callable[[], object]] = deque()
        #: Lines held that way that could not be written afterwards.
        self.lostLater = 0
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        # Since when the path has been missing while the open file is
        # still linked (see _awaitingCreate).
        self._missingSince: float | None = None
        # When the watcher last saw the file moved or deleted (by the
        # writer's clock): the grace counts from then, not from the next
        # write, which may come long after.
        self._movedAt: float | None = None
        self._size = 0
        self._regular = True
        # The first successful open decides whether a link at the path is
        # the administrator's (followed) or swapped in later (refused).
        self._opened = False
        self._linkOwner: int | None = None
        self._refusedLink = False
        # A partial write could not be rolled back: start the next on a new
        # line.
        self._torn = False
        self.rolledBack = 0
        self.reopened = 0
        self.rotations = 0
        self.failedRotations = 0
        #: Report lines that L{writeReport} could not write.
        self.unwrittenReports = 0
        self._pendingReports = 0
        self._pendingSince = 0.0
        self._closeWhenDone = False
        self._reportTarget: NonBlockingDescriptor | None = None
        registerForFork(self)

    def __repr__(self) -> str:
        return f"LogFileWriter({self.path!r})"

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        # A thread that is gone may have held the lock; the descriptor is
        # shared with the parent (O_APPEND: both may append). What it held
        # for later is the parent's to write.
        self._lock = threading.RLock()
        self._depth = 0
        self._later.clear()
        return None

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def checkPath(self) -> None:
        """
        Raise L{ConfigurationError} if the path can never work (it is a
        directory, or its parent is not one); other problems may pass.
        """
        if os.path.isdir(self.path):
            raise ConfigurationError(f"log file {self.path} is a directory; give a file path")
        parent = os.path.dirname(self.path)
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise ConfigurationError(
                f"log file {self.path}: {parent} is not a directory; give a file path"
            )

    # -- writing ------------------------------------------------------------

    def write(self, text: str) -> None:
        """
        Append C{text}; raise C{OSError} if it could not be written.

        @param text: whole lines, written with one C{os.write}.
        """
        data = text.encode("utf-8", "backslashreplace")
        rotationError = None
        try:
            with self._lock:
                if self._depth:
                    # On this thread in the middle of the writer's work.
                    self._later.append(partial(self.write, text))
                    return
                self._depth = 1
                try:
                    # _current(), inline: the descriptor, unless a check of
                    # the path is due.
                    fd = self._fd
                    self._unchecked += 1
                    if (
                        fd is None
                        or self._unchecked >= self.checkEvery
                        or self._clock() >= self._checkAt
                        or self._doorbell[0]
                    ):
                        fd = self._checkPath()
                    if self._torn:
                        data = b"\n" + data
                    size = len(data)
                    written = 0
                    try:
                        written = os.write(fd, data)
                        if written < size:
                            view = memoryview(data)
                            while written < size:
                                more = os.write(fd, view[written:])
                                if not more:
                                    raise OSError(errno.EIO, "write() wrote nothing")
                                written += more
                    except OSError:
                        if written:
                            self._rollBack(fd, written)
                        raise
                    if self._torn:
                        self._torn = False
                    self._size += size
                    if self.rotateLength is not None and self._size >= self.rotateLength:
                        rotationError = self._rotate()
                except OSError:
                    # The file may have moved or gone: check the path first
                    # thing next time.
                    self._unchecked = self.checkEvery
                    raise
                finally:
                    if self._closeWhenDone:
                        self._closeWhenDone = False
                        self._closeFile()
                    self._depth = 0
        finally:
            # Reported outside the lock: the report may be written to this
            # very file. (Not by a line held for later: the work under way
            # says its notes when it is over.)
            if self._note is not None and not self._depth:
                self._sayNote()
            if self._later:
                self._runLater()
        if rotationError is not None:
            self._report(rotationError)

    def _runLater(self) -> None:
        """
        Do what code run on this thread in the middle of the writer's work
        asked (see C{_lock}), unless that work is still under way.
        """
        later = self._later
        while later and not self._depth:
            try:
                operation = later.popleft()
            except IndexError:
                return
            try:
                operation()
            except Exception as error:
                # A line held for later (already taken by its sink).
                self.lostLater += 1
                try:
                    self.reporter.note(
                        f"log file {self.path}: a line logged during another write "
                        f"(by a signal handler) could not be written: {describe(error)}"
                    )
                except Exception:
                    pass

    def _rollBack(self, fd: int, written: int) -> None:
        """
        Remove the C{written} bytes of a write that failed part way, if
        nothing was appended after them; otherwise remember that the file
        ends in a torn line. Called with the lock held.
        """
        try:
            end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_size == end:
                os.ftruncate(fd, end - written)
                self.rolledBack += 1
                return
        except OSError:
            pass
        self._torn = True

    def _closeFile(self) -> None:
        fd, self._fd, self._identity = self._fd, None, None
        target, self._reportTarget = self._reportTarget, None
        if target is not None:
            target.close()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- control ----------------------------------------------------------------

    def reopen(self) -> None:
        """
        Close the file; the next write opens C{path} afresh (for logrotate's
        C{postrotate} signal, or SIGUSR1 under twistd).
        """
        with self._lock:
            if self._depth:
                # On this thread in the middle of the writer's work (a
                # SIGUSR1 handler that reopens): once that work is over.
                self._later.append(self.reopen)
                return
            self._depth = 1
            try:
                if self._fd is not None:
                    self.reopened += 1
                self._closeFile()
            finally:
                self._depth = 0
        if self._later:
            self._runLater()

    def rotate(self) -> None:
        """
        Rotate now (as C{twisted.python.logfile.LogFile.rotate} does).
        """
        with self._lock:
            if self._depth:
                self._later.append(self.rotate)
                return
            self._depth = 1
            try:
                if self._fd is None:
                    self._current()
                error = self._rotate()
            finally:
                self._depth = 0
        if error is not None:
            self._report(error)
        if self._later:
            self._runLater()

    def writeReport(self, text: str) -> bool:
        """
        Append report lines without ever blocking the caller: not while a
        write is stuck (the lock is busy), and on a device or pipe not while
        it accepts nothing. What cannot be written is counted
        (L{unwrittenReports}) and said in one line by the next report that
        gets through. A regular file on a hung disk can still block.
        Returns whether all of C{text} was written, so a caller can send
        it somewhere else too (a daemon's fallback for reports).

        @param text: one report line.
        @return: whether it was written.
        """
        data = text.encode("utf-8", "backslashreplace")
        if not self._lock.acquire(timeout=0.02):
            self._reportLost(data)
            return False
        if self._depth:
            # On this thread in the middle of the writer's work (a signal
            # handler's report): counted, and said by the next report, as
            # when another thread's write holds the lock.
            self._lock.release()
            self._reportLost(data)
            return False
        self._depth = 1
        try:
            fd = self._current()
            if self._reportTarget is None or self._reportTarget.fd != fd:
                self._reportTarget = NonBlockingDescriptor(fd)
            write = self._reportTarget.write
            if self._pendingReports:
                note = lostReportsLine(self._pendingReports, self._pendingSince, self.path)
                if write(note) < len(note):
                    self._reportLost(data)
                    return False
                self._pendingReports = 0
            written = write(data)
            self._size += written
            if written < len(data):
                self._reportLost(data[written:])
                return False
        except OSError:
            self._reportLost(data)
            return False
        finally:
            self._depth = 0
            self._lock.release()
            if self._later:
                self._runLater()
        return True

    def _reportLost(self, data: bytes) -> None:
        import time

        lines = max(1, data.count(b"\n"))
        if not self._pendingReports:
            self._pendingSince = time.time()
        self._pendingReports += lines
        self.unwrittenReports += lines

    def close(self) -> None:
        """
        Close the file now; if a write is stuck in it, as soon as that write
        returns (never waiting for it more than a tenth of a second).
        """
        if self._watcher is not None:
            self._watcher.unwatch(self)
        if self._lock.acquire(timeout=0.1):
            try:
                if self._depth:
                    # On this thread in the middle of the writer's work.
                    self._later.append(self.close)
                else:
                    self._closeFile()
            finally:
                self._lock.release()
        else:
            self._closeWhenDone = True

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
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import (
    ILogObserver,
    LogEvent,
    eventAsJSON,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)
from zope.interface import implementer

from ._errors import ConfigurationError
from ._escape import escapeControl
from ._fdwriter import NonBlockingDescriptor, lostReportsLine
from ._fork import registerForFork
from ._policy import checkNumber
from ._report import IReporter, defaultReporter, describe
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

#: Seconds between two checks that the log file is still at its path.
DEFAULT_CHECK_INTERVAL = 0.1
#: Writes between two such checks, at most.
DEFAULT_CHECK_EVERY = 1000


class LogFileWriter:
    """
    Appends text to the file at C{path}, one lock per writer, one
    C{os.write} per event on a file opened with C{O_APPEND} (so each event is
    on disk, not in a Python buffer, when L{write} returns).

    It notices that logrotate (create mode) moved the file away, or that it
    was deleted, by comparing the path's device and inode with the open
    file's, and then reopens the path. Not before every write (a system
    call per event): at most every C{checkEvery} writes or C{checkInterval}
    seconds, after a failed write, and at once after L{reopen} (SIGUSR1
    under twistd, logrotate's C{postrotate}). What is written in between
    goes to the rotated file, where it is not lost; to a deleted file, it
    is lost, and the next check counts (L{writtenToDeletedFile}) and
    reports it.

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
    """

    # What write() reads on every event, in slots (see HardenedSink's).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_checkAt",
        "_clock",
        "_closeWhenDone",
        "_deletedNote",
        "_fd",
        "_lock",
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
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        checkNumber("checkInterval", checkInterval, minimum=0)
        checkNumber("checkEvery", checkEvery, integer=True, minimum=1)
        self.checkInterval = checkInterval
        self.checkEvery = checkEvery
        self._clock = clock
        # Writes since the path was last checked, and when the next check is
        # due at the latest.
        self._unchecked = 0
        self._checkAt = 0.0
        #: Writes that went to a file found deleted at the next check.
        self.writtenToDeletedFile = 0
        self._deletedNote: str | None = None
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
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
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
        # shared with the parent (O_APPEND: both may append).
        self._lock = threading.Lock()
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
                try:
                    fd = self._current()
                    if self._torn:
                        data = b"\n" + data
                    written = 0
                    try:
                        written = os.write(fd, data)
                        if written < len(data):
                            view = memoryview(data)
                            while written < len(data):
                                more = os.write(fd, view[written:])
                                if not more:
                                    raise OSError(errno.EIO, "write() wrote nothing")
                                written += more
                    except OSError:
                        if written:
                            self._rollBack(fd, written)
                        raise
                    self._torn = False
                    self._size += len(data)
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
        finally:
            # Reported outside the lock: the report may be written to this
            # very file.
            if self._deletedNote is not None:
                self._noteDeleted()
        if rotationError is not None:
            self._report(rotationError)

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

    def _current(self) -> int:
        """
        The open file descriptor for C{path}; when a check is due, (re)opened
        if the file there is not the one we have open. Called with the lock
        held.
        """
        fd = self._fd
        if fd is not None:
            self._unchecked += 1
            if self._unchecked < self.checkEvery and self._clock() < self._checkAt:
                return fd
        return self._checkPath()

    def _checkPath(self) -> int:
        """
        The slow part of L{_current}: compare the path's device and inode
        with the open file's.
        """
        written, self._unchecked = self._unchecked, 0
        self._checkAt = self._clock() + self.checkInterval
        try:
            st = os.stat(self.path)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            identity = None
        if self._fd is not None and identity == self._identity:
            return self._fd
        if self._fd is not None:
            self.reopened += 1
            self._checkDeleted(self._fd, written)
        self._closeFile()
        return self._open()

    def _checkDeleted(self, fd: int, written: int) -> None:
        """
        The file open on C{fd} is no longer at the path: if it was deleted
        (not moved away by a rotation), the writes since the previous check
        may have gone nowhere; count them and say so once the lock is
        released.
        """
        try:
            deleted = os.fstat(fd).st_nlink == 0
        except OSError:
            return
        if deleted and written:
            # The write that is due now goes to the new file.
            lost = written - 1
            if lost:
                self.writtenToDeletedFile += lost
                self._deletedNote = (
                    f"log file {self.path} was deleted; up to {lost} events written "
                    "since it was last checked went to the deleted file"
                )

    def _noteDeleted(self) -> None:
        note, self._deletedNote = self._deletedNote, None
        if note is not None:
            try:
                self.reporter.note(note)
            except Exception:
                pass

    def _open(self) -> int:
        # O_NONBLOCK: a FIFO nobody reads at the path (put there by mistake
        # or swapped in) fails with ENXIO instead of blocking open() for
        # ever; it is cleared once the file is known to be one we write.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | _O_NONBLOCK
        path = self.path
        if self._opened:
            path, follow = self._reopenPath()
            flags |= follow
        try:
            fd = os.open(path, flags, self.mode)
        except FileNotFoundError:
            if not self.createDirectory:
                raise
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, self.mode)
        except OSError as error:
            if error.errno == errno.ELOOP and flags & _O_NOFOLLOW:
                raise self._swappedLink() from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) and not stat.S_ISCHR(st.st_mode):
                raise OSError(errno.EINVAL, f"{self.path} is not a regular file")
            if _O_NONBLOCK:
                # Writes to a terminal or other device must block as usual.
                os.set_blocking(fd, True)
        except OSError:
            os.close(fd)
            raise
        if not self._opened:
            self._opened = True
            try:
                link = os.lstat(self.path)
                if stat.S_ISLNK(link.st_mode):
                    self._linkOwner = link.st_uid
            except OSError:
                pass
        self._refusedLink = False
        self._torn = False
        self._fd = fd
        self._identity = (st.st_dev, st.st_ino)
        self._unchecked = 0
        self._checkAt = self._clock() + self.checkInterval
        self._size = st.st_size
        # Never rotate a device (/dev/null, /dev/full): renaming it would be
        # a disaster, and its size means nothing.
        self._regular = stat.S_ISREG(st.st_mode)
        return fd

    def _reopenPath(self) -> tuple[str, int]:
        """
        What a reopen opens, and the flag that goes with it: the path with
        C{O_NOFOLLOW}, unless the path was a link when first opened and
        still is one, owned by the same user; then where that very link
        points, read from the link itself (so a link swapped in between a
        check and the open is never followed), again with C{O_NOFOLLOW}.
        Called with the lock held.
        """
        if self._linkOwner is None:
            return self.path, _O_NOFOLLOW
        if not _O_PATH:
            # No way to hold the link itself here: check, then follow.
            return self.path, self._noFollow()
        path = self.path
        # A chain of the same owner's links is followed one hop at a time
        # (too long a chain ends with ELOOP at the open, refused).
        for _ in range(_MAX_LINK_HOPS):
            try:
                link = os.open(path, _O_PATH | _O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                break
            try:
                st = os.fstat(link)
                if not stat.S_ISLNK(st.st_mode):
                    break
                if st.st_uid != self._linkOwner:
                    raise self._swappedLink()
                target = os.readlink("", dir_fd=link)
            finally:
                os.close(link)
            path = os.path.join(os.path.dirname(path), target)
        return path, _O_NOFOLLOW

    def _noFollow(self) -> int:
        """
        The flag for a reopen where links cannot be held (no C{O_PATH}):
        C{O_NOFOLLOW}, unless the path was a link when first opened and
        still is one, owned by the same user. Called with the lock held.
        """
        if self._linkOwner is None:
            return _O_NOFOLLOW
        try:
            link = os.lstat(self.path)
        except OSError:
            return _O_NOFOLLOW
        if stat.S_ISLNK(link.st_mode) and link.st_uid != self._linkOwner:
            raise self._swappedLink()
        return 0

    def _swappedLink(self) -> OSError:
        """
        The error for a symbolic link swapped in at the path since it was
        first opened; said once through the reporter.
        """
        message = (
            f"log file {self.path} is now a symbolic link it was not when first "
            "opened; not following it (remove the link to resume writing)"
        )
        if not self._refusedLink:
            self._refusedLink = True
            try:
                self.reporter.note(message)
            except Exception:
                pass
        return OSError(errno.ELOOP, message)

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

    # -- rotation -------------------------------------------------------------

    def _rotatedName(self, n: int) -> str:
        return f"{self.path}.{n}"

    def _rotate(self) -> OSError | None:
        """
        Shift C{path.N-1} to C{path.N} ... C{path} to C{path.1}, skipping
        missing files. Called with the lock held. If a rename fails the
        current file stays open and in use, and the error is returned for
        the caller to report once the lock is released.
        """
        if not self._regular:
            return None
        keep = self.maxRotatedFiles
        try:
            if keep is not None:
                oldest = self._rotatedName(keep)
                if os.path.exists(oldest):
                    os.remove(oldest)
                start = keep - 1
            else:
                start = 1
                while os.path.exists(self._rotatedName(start)):
                    start += 1
                start -= 1
            for n in range(start, 0, -1):
                source = self._rotatedName(n)
                if os.path.exists(source):
                    os.rename(source, self._rotatedName(n + 1))
            if os.path.exists(self.path):
                os.rename(self.path, self._rotatedName(1))
        except OSError as error:
            self.failedRotations += 1
            # Do not try again on every event: wait for another rotateLength.
            self._size = 0
            return error
        self.rotations += 1
        self._closeFile()
        self._open()
        return None

    def _report(self, error: OSError) -> None:
        try:
            self.reporter.failure(
                describe(self),
                error,
                f"rotation failed ({type(error).__name__}: {error}); "
                "still writing to the current file",
            )
        except Exception:
            pass

    # -- control ----------------------------------------------------------------

    def reopen(self) -> None:
        """
        Close the file; the next write opens C{path} afresh (for logrotate's
        C{postrotate} signal, or SIGUSR1 under twistd).
        """
        with self._lock:
            if self._fd is not None:
                self.reopened += 1
            self._closeFile()

    def rotate(self) -> None:
        """
        Rotate now (as C{twisted.python.logfile.LogFile.rotate} does).
        """
        with self._lock:
            if self._fd is None:
                self._current()
            error = self._rotate()
        if error is not None:
            self._report(error)

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
            self._lock.release()
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
        if self._lock.acquire(timeout=0.1):
            try:
                self._closeFile()
            finally:
                self._lock.release()
        else:
            self._closeWhenDone = True


def formatTextLine(event: LogEvent) -> str:
    """
    An event as one line of classic Twisted log text, never raising.

    Control characters from the event (CR, VT, NEL, U+2028, ANSI escapes:
    see L{escapeControl}) are escaped, so that an event cannot forge or
    hide lines; a newline becomes a new line indented by a tab, as Twisted
    does. An event Twisted's formatter cannot format (a C{log_time} that is
    not a number, a C{log_level} that is not a
    L{twisted.logger.LogLevel}) is written with
    a fallback rendering that says why, never skipped.

    @param event: the event, formatted as C{textFileLogObserver} would.
    """
    try:
        text = formatEventAsClassicLogText(event)
    except Exception as error:
        text = _fallbackTextLine(event, error)
    if text is None:
        # formatEventAsClassicLogText returns None for an empty message (as
        # textFileLogObserver, nothing is written).
        return ""
    return escapeControl(text)


def _fallbackTextLine(event: LogEvent, error: Exception) -> str:
    """
    The classic text line for an event whose time, level or system cannot be
    formatted: what can be, and the reason. Never raises.
    """
    try:
        when = event.get("log_time")
        try:
            timeText = formatTime(when) if isinstance(when, (int, float)) else "-"
        except Exception:
            timeText = "-"
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            levelName = getattr(level, "name", None)
            system = (
                f"{_str(event.get('log_namespace', '-'))}#"
                f"{levelName if isinstance(levelName, str) else describe(level, 40)}"
            )
        message = formatEvent(event)
        reason = (
            f"[unformattable event: {type(error).__name__}: {_str(error)}; "
            f"log_time={describe(when, 60)}]"
        )
        text = f"{timeText} [{_str(system)}] {message} {reason}"
    except Exception:
        text = f"- [-] [unformattable event: {describe(error)}]"
    return text.replace("\n", "\n\t") + "\n"


def formatJSONLine(event: LogEvent) -> str:
    """
    An event as one line of JSON (newline-delimited, no record separator:
    what Fluent Bit, Vector and Loki's agents tail, and what
    L{twisted.logger.eventsFromJSONLogFile} reads back). An event that cannot
    be serialised (a cycle, say) is written with its text and the reason.

    @param event: the event; one that cannot be serialised is written with its text and the reason
        (C{log_unserializable}).
    """
    try:
        return eventAsJSON(event) + "\n"
    except Exception as error:
        fallback: dict[str, Any] = {
            "log_format": "{log_text}",
            "log_text": formatEvent(event),
            "log_namespace": _str(event.get("log_namespace")),
            "log_level": _level(event),
            "log_time": event.get("log_time") if isinstance(event.get("log_time"), float) else None,
            "log_unserializable": f"{type(error).__name__}: {_str(error)}",
        }
        return json.dumps(fallback) + "\n"


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_MAX_LINK_HOPS = 8

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


def _str(thing: object) -> str:
    try:
        return str(thing)
    except Exception:
        return describe(thing)


def _level(event: LogEvent) -> dict[str, str] | None:
    level = event.get("log_level")
    name = getattr(level, "name", None)
    if isinstance(name, str):
        return {"__class_uuid__": "02E59486-F24D-46AD-8224-3ACDF2A5732A", "name": name}
    return None


_FORMATS: dict[str, Callable[[LogEvent], str]] = {
    "text": formatTextLine,
    "json": formatJSONLine,
}


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
    """
    formatter = _FORMATS.get(format)
    if formatter is None:
        raise ConfigurationError(
            f"format must be one of {', '.join(sorted(_FORMATS))}, not {format!r}"
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

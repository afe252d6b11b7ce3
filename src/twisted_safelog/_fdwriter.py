# -*- test-case-name: tests.test_report -*-
"""
Writing report lines to a file descriptor without ever blocking the caller.

A report is written on whatever thread noticed the problem, often the
reactor's. If file descriptor 2 is a pipe nobody reads (a stuck journald or
container log driver), a plain C{os.write} blocks that thread for ever. So
the descriptor is never written in blocking mode:

 - a socket (journald's stream) is written with C{MSG_DONTWAIT};
 - a pipe, FIFO or terminal is written through a second open file
   description of the same object (C{/proc/self/fd/N} reopened with
   C{O_NONBLOCK}), so that the process's own descriptor keeps its blocking
   mode and nothing else sees C{EAGAIN};
 - a regular file is written as it is (C{O_NONBLOCK} means nothing there).

What cannot be written is counted, and said in one line as soon as the
descriptor accepts writes again.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from collections.abc import Callable

from ._fork import registerForFork

__all__ = ["FileDescriptorWriter", "NonBlockingDescriptor", "lostReportsLine"]

_PIPE_BUF = 4096
_BLOCKED = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENXIO)


class NonBlockingDescriptor:
    """
    Writes to file descriptor C{fd} that never wait for room: C{write}
    returns how many bytes went out (a short count when the other side is
    full). Follows C{fd} if it is replaced (C{dup2}, as twistd does when it
    daemonizes).
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._identity: tuple[int, int] | None = None
        self._twin: int | None = None
        self._kind = 0

    def __repr__(self) -> str:
        return f"NonBlockingDescriptor({self.fd})"

    def _refresh(self) -> None:
        st = os.fstat(self.fd)
        identity = (st.st_dev, st.st_ino)
        if identity == self._identity:
            return
        self.close()
        self._identity = identity
        self._kind = stat.S_IFMT(st.st_mode)
        if self._kind in (stat.S_IFIFO, stat.S_IFCHR):
            flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
            try:
                self._twin = os.open(f"/proc/self/fd/{self.fd}", flags)
            except OSError as error:
                if error.errno in _BLOCKED:
                    # A FIFO with no reader: nothing can be written.
                    self._identity = None
                    raise
                self._twin = None

    def write(self, data: bytes) -> int:
        """
        Write as much of C{data} as the descriptor takes now, in pieces of at
        most C{PIPE_BUF} bytes split at line ends (so a line is never torn
        on a pipe); return the number of bytes written.
        """
        try:
            self._refresh()
        except OSError as error:
            if error.errno in _BLOCKED:
                return 0
            raise
        done = 0
        while done < len(data):
            end = len(data)
            if end - done > _PIPE_BUF:
                cut = data.rfind(b"\n", done, done + _PIPE_BUF)
                end = cut + 1 if cut >= done else done + _PIPE_BUF
            try:
                written = self._writeOnce(data[done:end])
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno in _BLOCKED:
                    break
                raise
            if written <= 0:
                break
            done += written
        return done

    def _writeOnce(self, chunk: bytes) -> int:
        if self._kind == stat.S_IFSOCK:
            sock = socket.socket(fileno=self.fd)
            try:
                return sock.send(chunk, socket.MSG_DONTWAIT)
            finally:
                sock.detach()
        if self._twin is not None:
            return os.write(self._twin, chunk)
        if self._kind in (stat.S_IFIFO, stat.S_IFCHR):
            # No /proc: write only what poll says fits.
            import select

            poller = select.poll()
            poller.register(self.fd, select.POLLOUT)
            if not poller.poll(0):
                return 0
            return os.write(self.fd, chunk[:512])
        return os.write(self.fd, chunk)

    def close(self) -> None:
        twin, self._twin, self._identity = self._twin, None, None
        if twin is not None:
            try:
                os.close(twin)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


class FileDescriptorWriter:
    """
    Write report text to a file descriptor (2 by default) with C{os.write},
    bypassing every Python file object (and so any C{sys.stderr}
    replacement), and never blocking: lines the descriptor does not take now
    are counted in L{unwritten}, and the next write that gets through first
    says how many were lost and since when.

    @param fd: the file descriptor written to (2, standard error, by default).
    """

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        #: Report lines that could not be written so far.
        self.unwritten = 0
        self._pending = 0
        self._since = 0.0
        self._lock = threading.Lock()
        self._target = NonBlockingDescriptor(fd)
        registerForFork(self)

    def __repr__(self) -> str:
        return f"FileDescriptorWriter(fd={self.fd})"

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._lock = threading.Lock()
        return None

    def __call__(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        # Held only around non-blocking writes; the timeout only bounds a
        # pathological case (a regular file on a hung disk as fd 2).
        if not self._lock.acquire(timeout=0.05):
            self._lost(data)
            return
        try:
            if self._pending:
                note = lostReportsLine(self._pending, self._since, f"file descriptor {self.fd}")
                if self._target.write(note) < len(note):
                    self._lost(data)
                    return
                self._pending = 0
            written = self._target.write(data)
            if written < len(data):
                self._lost(data[written:])
        except OSError:
            self._lost(data)
        finally:
            self._lock.release()

    def _lost(self, data: bytes) -> None:
        lines = max(1, data.count(b"\n"))
        if not self._pending:
            self._since = time.time()
        self._pending += lines
        self.unwritten += lines


def lostReportsLine(count: int, since: float, where: str) -> bytes:
    """
    The line that says how many report lines could not be written.
    """
    from ._report import REPORT_PREFIX

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    return (
        f"{REPORT_PREFIX} {stamp} {count} report line{'s' if count != 1 else ''} could not "
        f"be written to {where} since {began} (it was not accepting writes)\n"
    ).encode()

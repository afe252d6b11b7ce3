# -*- test-case-name: tests.test_rotationwatch -*-
"""
The Linux calls the rotation watcher makes through ctypes: inotify, and
sched_setattr for the watcher thread's short time slice.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys
import threading

__all__ = [
    "DIRECTORY_EVENTS",
    "HEADER",
    "IN_IGNORED",
    "IN_Q_OVERFLOW",
    "NAME_EVENTS",
    "Inotify",
    "limitHint",
    "shortSlice",
]

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

#: A name in the directory now means another file (or none).
NAME_EVENTS = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
#: The directory itself is gone or somewhere else: every file in it.
DIRECTORY_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_MASK = NAME_EVENTS | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
HEADER = struct.Struct("iIII")


class Inotify:
    """
    The three libc calls, through ctypes, or the reason they are missing.
    """

    def __init__(self) -> None:
        self.missing: str | None = None
        if not sys.platform.startswith("linux"):
            self.missing = f"inotify is Linux only (this is {sys.platform})"
            return
        if sys.byteorder != "little":
            # The doorbell is the low byte of epoll_event.events.
            self.missing = "the rotation watcher needs a little-endian machine"
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._init1 = libc.inotify_init1
            self._addWatch = libc.inotify_add_watch
            self._rmWatch = libc.inotify_rm_watch
            #: epoll_wait(), called without the GIL (a ctypes function).
            self.epollWait = libc.epoll_wait
        except (OSError, AttributeError) as error:
            self.missing = f"no inotify in the C library ({error})"
            return
        self._init1.argtypes = [ctypes.c_int]
        self._init1.restype = ctypes.c_int
        self._addWatch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._addWatch.restype = ctypes.c_int
        self._rmWatch.argtypes = [ctypes.c_int, ctypes.c_int]
        self._rmWatch.restype = ctypes.c_int
        self.epollWait.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        self.epollWait.restype = ctypes.c_int

    def init(self) -> int:
        fd: int = self._init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _oserror()
        return fd

    def addWatch(self, fd: int, directory: str) -> int:
        wd: int = self._addWatch(fd, os.fsencode(directory), _MASK)
        if wd < 0:
            raise _oserror()
        return wd

    def rmWatch(self, fd: int, wd: int) -> None:
        self._rmWatch(fd, wd)


#: sched_setattr's system call number, where known.
_SCHED_SETATTR = (
    {"x86_64": 314, "aarch64": 274}.get(platform.machine())
    # A 32-bit (or x32) interpreter on a 64-bit kernel: other numbers.
    if ctypes.sizeof(ctypes.c_void_p) == 8
    else None
)
#: The thread's time slice, in nanoseconds (the shortest Linux allows).
_SLICE = 100_000
_SCHED_FLAG_KEEP_POLICY = 0x08


def _unfiltered() -> bool:
    """
    Is the process free of seccomp filters? Under one, a system call it
    does not allow may kill the process (systemd's
    C{SystemCallFilter=~@resources}, which C{systemd-analyze security}
    recommends, sends SIGSYS on C{sched_setattr} unless
    C{SystemCallErrorNumber=} is set), and there is no asking a filter
    what it would do: a short time slice is not worth that.
    """
    try:
        with open("/proc/thread-self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Seccomp:"):
                    return line.split()[1:2] == [b"0"]
    except (OSError, IndexError):
        pass
    return False


def shortSlice() -> None:
    """
    Ask Linux (6.12 and later, EEVDF) for a short time slice for the calling
    thread: woken by an event it then runs at once, instead of after the
    slice of whatever runs on a busy CPU (up to a few milliseconds, time
    enough for logrotate to start compressing). It runs for microseconds
    at a time, so it takes nothing from anyone. Unprivileged; where
    unknown or refused, nothing changes; under a seccomp filter (which
    might kill the process for it) and on a 32-bit interpreter, it is not
    asked.
    """
    if _SCHED_SETATTR is None or not sys.platform.startswith("linux"):
        return
    if not _unfiltered():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # The thread's nice value and policy stay what they are.
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        # struct sched_attr (version 1): size, policy, flags, nice,
        # priority, runtime, deadline, period.
        attr = struct.pack("IIQiIQQQ", 48, 0, _SCHED_FLAG_KEEP_POLICY, nice, 0, _SLICE, 0, 0)
        libc.syscall(_SCHED_SETATTR, 0, ctypes.c_char_p(attr), 0)
    except Exception:
        pass


def _oserror() -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


def limitHint(error: OSError) -> str:
    if error.errno == errno.EMFILE:
        return "; the limit is the sysctl fs.inotify.max_user_instances"
    if error.errno == errno.ENOSPC:
        return "; the limit is the sysctl fs.inotify.max_user_watches"
    return ""

# -*- test-case-name: tests.test_rotationwatch -*-
"""
Notice at once that a log file was moved away or deleted (logrotate), with
no system call on the writing thread: one thread per process blocks on a
Linux inotify descriptor that watches the directories of the open log
files, and when a file's name is moved, deleted or replaced there it
flags its writer, whose next write then checks the path (one C{stat}).

This closes the gap the periodic check leaves with logrotate's C{create}
and C{compress} without C{delaycompress}: logrotate renames the file and
compresses it a few milliseconds later; what the writer appends to it
after the compressor has read it is lost. With the flag set within
microseconds of the rename, the writer has moved to the new file long
before the compressor starts.

Where inotify is not available (not Linux, the per-user limits
C{fs.inotify.max_user_instances} or C{max_user_watches} reached), writers
keep the periodic check alone, and each says so once through its
reporter. The periodic check also stays for what inotify does not see:
a change made on another machine (NFS), or to the target of a symbolic
link at the path. The thread is a L{ProcessThread}: it holds writers weakly, ends
when none is left, ends before every C{os.fork()} and starts again after
it in both processes (the child with an inotify descriptor of its own),
and never starts while the twistd factory waits for twistd to daemonize.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import select
import struct
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from ._background import ProcessThread

__all__ = ["IWatchedFile", "RotationWatcher", "rotationWatcher"]

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
_NAME_EVENTS = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
#: The directory itself is gone or somewhere else: every file in it.
_DIRECTORY_EVENTS = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED
_MASK = _NAME_EVENTS | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
_HEADER = struct.Struct("iIII")

#: Longest wait of the thread, in seconds, before it looks whether any
#: writer is left (it is woken at once for a fork).
_IDLE = 1.0


class IWatchedFile(Protocol):
    #: The log file's absolute path.
    path: str

    def _pathMoved(self) -> None:
        """
        The file at C{path} may not be the open one any more: check the
        path at the next write. Called from the watcher's thread; sets a
        flag, nothing else.
        """


class _Inotify:
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
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}.get(platform.machine())
#: The thread's time slice, in nanoseconds (the shortest Linux allows).
_SLICE = 100_000
_SCHED_FLAG_KEEP_POLICY = 0x08


def _shortSlice() -> None:
    """
    Ask Linux (6.12 and later, EEVDF) for a short time slice for the calling
    thread: woken by an event it then runs at once, instead of after the
    slice of whatever runs on a busy CPU (up to a few milliseconds, time
    enough for logrotate to start compressing). It runs for microseconds
    at a time, so it takes nothing from anyone. Unprivileged; where
    unknown or refused, nothing changes.
    """
    if _SCHED_SETATTR is None or not sys.platform.startswith("linux"):
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


def _limitHint(error: OSError) -> str:
    if error.errno == errno.EMFILE:
        return "; the limit is the sysctl fs.inotify.max_user_instances"
    if error.errno == errno.ENOSPC:
        return "; the limit is the sysctl fs.inotify.max_user_watches"
    return ""


class RotationWatcher(ProcessThread[IWatchedFile]):
    """
    The process's one inotify thread over every open log file's directory.
    """

    threadName = "twisted-safelog rotation watcher"

    def __init__(self, inotify: Callable[[], _Inotify] = _Inotify) -> None:
        self._inotify = inotify()
        #: Where the kernel writes the thread's epoll_wait() result: not
        #: zero at index 0 (the low byte of the events, EPOLLIN) from the
        #: moment a watched directory changed (or the thread is woken) until
        #: the thread has flagged the writers concerned (microseconds later,
        #: or milliseconds while another thread holds the GIL). Writers check
        #: their path at each write meanwhile, so that gap is not left open.
        #: A bytearray: the cheapest thing to read on every write (never
        #: resized: ctypes holds it).
        self.doorbell = bytearray(16)
        self._bellBuffer = (ctypes.c_char * len(self.doorbell)).from_buffer(self.doorbell)
        self._bellAddress = ctypes.addressof(self._bellBuffer)
        self._fd: int | None = None
        self._epoll: select.epoll | None = None
        self._wakeRead: int | None = None
        self._wakeWrite: int | None = None
        # Watch descriptor -> file name -> writers of that file.
        self._table: dict[int, dict[str, weakref.WeakSet[IWatchedFile]]] = {}
        self._directories: dict[int, str] = {}
        self._where: weakref.WeakKeyDictionary[IWatchedFile, tuple[int, str]] = (
            weakref.WeakKeyDictionary()
        )
        # Writers told that they are not watched (once each).
        self._told: weakref.WeakSet[IWatchedFile] = weakref.WeakSet()
        super().__init__()

    def __repr__(self) -> str:
        return (
            f"<RotationWatcher files={len(self._where)} directories={len(self._table)} "
            f"running={self.running}>"
        )

    @property
    def watchedDirectories(self) -> frozenset[str]:
        """
        The directories with an inotify watch now.
        """
        with self._lock:
            return frozenset(self._directories[wd] for wd in self._table)

    def watches(self, writer: IWatchedFile) -> bool:
        """
        Is C{writer}'s path watched now?
        """
        return writer in self._where

    def watch(self, writer: IWatchedFile) -> str | None:
        """
        Watch the directory of C{writer}'s path (again: the directory may
        be a new one since), for as long as the writer lives or until
        L{unwatch}. Returns, the first time it cannot, a line saying why,
        for the writer to report once its lock is released; else L{None}.
        Never raises.
        """
        try:
            directory, name = os.path.split(writer.path)
            with self._lock:
                self._addLocked(writer, directory, name)
        except OSError as error:
            if writer in self._told:
                return None
            self._told.add(writer)
            return (
                f"log file {writer.path}: cannot watch it for logrotate with inotify "
                f"({error.strerror or error}{_limitHint(error)}); a rotated or deleted file "
                "is noticed at the next periodic check instead, so with logrotate's compress "
                "use delaycompress or a postrotate that reopens the file"
            )
        except Exception:
            return None
        self._add(writer)
        return None

    def unwatch(self, writer: IWatchedFile) -> None:
        """
        Stop watching C{writer}'s path (it was closed).
        """
        with self._lock:
            self._removeLocked(writer)
            self._pruneLocked()
        self._discard(writer)

    def _addLocked(self, writer: IWatchedFile, directory: str, name: str) -> None:
        missing = self._inotify.missing
        if missing is not None:
            raise OSError(errno.ENOSYS, missing)
        if self._fd is None:
            self._open()
        assert self._fd is not None
        wd = self._inotify.addWatch(self._fd, directory)
        if self._where.get(writer) != (wd, name):
            self._removeLocked(writer)
            self._where[writer] = (wd, name)
            self._table.setdefault(wd, {}).setdefault(name, weakref.WeakSet()).add(writer)
            self._directories[wd] = directory
        self._pruneLocked()

    def _removeLocked(self, writer: IWatchedFile) -> None:
        where = self._where.pop(writer, None)
        if where is not None:
            writers = self._table.get(where[0], {}).get(where[1])
            if writers is not None:
                writers.discard(writer)

    def _pruneLocked(self) -> None:
        """
        Remove the watches of directories where no writer is left (closed,
        or let go by the application).
        """
        for wd, names in list(self._table.items()):
            for name, writers in list(names.items()):
                if not writers:
                    del names[name]
            if not names:
                del self._table[wd]
                self._directories.pop(wd, None)
                if self._fd is not None:
                    self._inotify.rmWatch(self._fd, wd)

    def _open(self) -> None:
        fd = self._inotify.init()
        opened = [fd]
        try:
            wakeRead, wakeWrite = os.pipe()
            opened += [wakeRead, wakeWrite]
            os.set_blocking(wakeRead, False)
            os.set_blocking(wakeWrite, False)
            epoll = select.epoll()
            epoll.register(fd, select.EPOLLIN)
            epoll.register(wakeRead, select.EPOLLIN)
        except BaseException:
            for opened_ in opened:
                os.close(opened_)
            raise
        self._fd, self._wakeRead, self._wakeWrite = fd, wakeRead, wakeWrite
        self._epoll = epoll

    # -- the thread ---------------------------------------------------------

    def wait(self, members: list[IWatchedFile]) -> float:
        # Called on the thread as it starts.
        _shortSlice()
        return 0.0

    def visit(self, members: list[IWatchedFile]) -> float:
        # The list holds the writers strongly; waiting with it would keep a
        # writer the application let go alive for as long as the wait.
        members.clear()
        fd, wake, epoll = self._fd, self._wakeRead, self._epoll
        if fd is None or wake is None or epoll is None:
            return _IDLE
        epollWait, epollFd, bell = self._inotify.epollWait, epoll.fileno(), self.doorbell
        address, milliseconds = self._bellAddress, int(_IDLE * 1000)
        # The writers concerned by what rang the bell were flagged by the
        # previous visit: they may stop checking. Nothing between the two
        # lines lets go of the GIL (no Python call, no loop), so a writer
        # runs again only once this thread waits, and a change that came
        # meanwhile rings the bell again at once.
        bell[0] = 0
        epollWait(epollFd, address, 1, milliseconds)
        try:
            try:
                while os.read(wake, 512):
                    pass
            except OSError:
                pass
            self._readEvents(fd)
            with self._lock:
                self._pruneLocked()
        except Exception:
            pass
        return 0.0

    def _readEvents(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        moved: list[IWatchedFile] = []
        offset = 0
        with self._lock:
            while offset + _HEADER.size <= len(data):
                wd, mask, _, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size : offset + _HEADER.size + length]
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    moved.extend(self._where.keys())
                elif mask & _DIRECTORY_EVENTS:
                    for writers in self._table.get(wd, {}).values():
                        moved.extend(writers)
                    if mask & IN_IGNORED:
                        # The directory is gone: its writers watch the next
                        # one when they reopen.
                        self._directories.pop(wd, None)
                        for writers in self._table.pop(wd, {}).values():
                            for writer in list(writers):
                                self._where.pop(writer, None)
                elif mask & _NAME_EVENTS:
                    key = os.fsdecode(name.rstrip(b"\0"))
                    moved.extend(self._table.get(wd, {}).get(key, ()))
        for writer in moved:
            try:
                writer._pathMoved()
            except Exception:
                pass

    def _ending(self) -> None:
        # Writers let go since the last visit leave their watches behind;
        # with no watch left, nothing is kept open either (a writer that
        # comes later opens it all again).
        try:
            self._pruneLocked()
            if not self._table and not self._members:
                self._closeLocked()
        except Exception:
            pass

    def _closeLocked(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
        for fd in (self._fd, self._wakeRead, self._wakeWrite):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._wakeRead = self._wakeWrite = None
        self._epoll = None
        self.doorbell[0] = 0

    # -- forks ----------------------------------------------------------------

    def _interrupt(self) -> None:
        # Under the lock: the thread may be closing the pipe as it ends.
        with self._lock:
            wake = self._wakeWrite
            if wake is not None:
                try:
                    os.write(wake, b"\0")
                except OSError:
                    pass

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        # The inotify descriptor is shared with the parent (whichever reads
        # an event takes it from the other): the child gets its own, with
        # the same watches.
        writers = [(writer, where[1]) for writer, where in list(self._where.items())]
        self._closeLocked()
        self._table = {}
        self._directories = {}
        self._where = weakref.WeakKeyDictionary()
        then = super()._afterForkInChild(keepPending)
        for writer, name in writers:
            try:
                self._addLocked(writer, os.path.dirname(writer.path), name)
            except Exception:
                self._discard(writer)
        return then


#: The process-wide watcher.
rotationWatcher = RotationWatcher()
rotationWatcher.pauseAroundForks()

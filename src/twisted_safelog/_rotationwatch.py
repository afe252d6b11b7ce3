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
reporter. A path that is a symbolic link is watched both where the
link is and where the file it leads to is (logrotate renames the file).
The periodic check also stays for what inotify does not see: a change
made on another machine (NFS), or a link at the path pointed elsewhere.
The thread is a L{ProcessThread}: it holds writers weakly, ends when
none is left, ends before every C{os.fork()} and starts again after it
in both processes (the child with an inotify descriptor of its own, once
it writes), and never starts while the twistd factory waits for twistd
to daemonize.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import stat
import weakref
from collections.abc import Callable
from typing import Protocol

from ._background import ProcessThread
from ._inotify import (
    DIRECTORY_EVENTS,
    HEADER,
    IN_IGNORED,
    IN_Q_OVERFLOW,
    NAME_EVENTS,
    Inotify,
    limitHint,
    shortSlice,
)

__all__ = ["IWatchedFile", "RotationWatcher", "rotationWatcher"]


#: Epoll objects whose descriptor number the application took over (it
#: closed ours, as a daemonizing library does): never closed, since that
#: would close the application's file; kept here so that no finalizer does.
_abandoned: list[select.epoll] = []

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


class RotationWatcher(ProcessThread[IWatchedFile]):
    """
    The process's one inotify thread over every open log file's directory.
    """

    threadName = "twisted-safelog rotation watcher"

    def __init__(self, inotify: Callable[[], Inotify] = Inotify) -> None:
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
        # What fstat() said of the four descriptors when they were opened.
        self._identities: tuple[tuple[int, int, int], ...] | None = None
        # Watch descriptor -> file name -> writers of that file.
        self._table: dict[int, dict[str, weakref.WeakSet[IWatchedFile]]] = {}
        self._directories: dict[int, str] = {}
        # Writer -> (watch descriptor, name) of its path, and of the file a
        # symbolic link in the path leads to if there is one.
        self._where: weakref.WeakKeyDictionary[IWatchedFile, tuple[tuple[int, str], ...]] = (
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
                f"({error.strerror or error}{limitHint(error)}); a rotated or deleted file "
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
        places = [(wd, name, directory)]
        # A symbolic link in the path (one the administrator made): logrotate
        # renames the file it leads to, in that file's directory.
        target = os.path.realpath(os.path.join(directory, name))
        targetDirectory, targetName = os.path.split(target)
        if target != os.path.join(directory, name):
            try:
                targetWd = self._inotify.addWatch(self._fd, targetDirectory)
            except OSError:
                pass
            else:
                if (targetWd, targetName) != (wd, name):
                    places.append((targetWd, targetName, targetDirectory))
        where = tuple((wd_, name_) for wd_, name_, _ in places)
        if self._where.get(writer) != where:
            self._removeLocked(writer)
            self._where[writer] = where
            for wd_, name_, directory_ in places:
                self._table.setdefault(wd_, {}).setdefault(name_, weakref.WeakSet()).add(writer)
                self._directories[wd_] = directory_
        self._pruneLocked()

    def _removeLocked(self, writer: IWatchedFile) -> None:
        for wd, name in self._where.pop(writer, ()):
            writers = self._table.get(wd, {}).get(name)
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
        self._identities = self._identify()

    def _identify(self) -> tuple[tuple[int, int, int], ...] | None:
        """
        The device, inode and type of the four descriptors, or L{None} if
        one is closed. The two ends of the wake pipe are unique to it.
        """
        epoll = self._epoll
        try:
            fds = [self._fd, self._wakeRead, self._wakeWrite, epoll and epoll.fileno()]
            found = []
            for fd in fds:
                if fd is None:
                    return None
                st = os.fstat(fd)
                found.append((st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)))
        except (OSError, ValueError):
            return None
        return tuple(found)

    def _ours(self) -> bool:
        """
        Are the descriptors still the ones we opened? The application may
        have closed them (a daemonizing library closes every descriptor
        after its fork) and their numbers may be its files now.
        """
        return self._identities is not None and self._identify() == self._identities

    def _forgetLocked(self) -> list[tuple[IWatchedFile, str]]:
        """
        The descriptors are not ours any more: forget them without closing
        them (their numbers may be the application's now) and every watch
        with them. Returns the writers that were watched, with their names.
        """
        writers = [(writer, where[0][1]) for writer, where in list(self._where.items())]
        if self._epoll is not None:
            _abandoned.append(self._epoll)
        self._fd = self._wakeRead = self._wakeWrite = None
        self._epoll = None
        self._identities = None
        self._table = {}
        self._directories = {}
        self._where = weakref.WeakKeyDictionary()
        return writers

    def _watchAgainLocked(self, writers: list[tuple[IWatchedFile, str]]) -> None:
        """
        Watch C{writers} again, with descriptors of our own; those that
        cannot be are left to the periodic check.
        """
        for writer, name in writers:
            try:
                self._addLocked(writer, os.path.dirname(writer.path), name)
            except Exception:
                self._members.discard(writer)

    # -- the thread ---------------------------------------------------------

    def wait(self, members: list[IWatchedFile]) -> float:
        # Called on the thread as it starts.
        shortSlice()
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
            with self._lock:
                lost = [] if self._ours() else self._forgetLocked()
                if lost:
                    # What came meanwhile went unseen: each checks its path.
                    self._watchAgainLocked(lost)
            if lost:
                for writer, _ in lost:
                    writer._pathMoved()
                return 0.0
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
            while offset + HEADER.size <= len(data):
                wd, mask, _, length = HEADER.unpack_from(data, offset)
                name = data[offset + HEADER.size : offset + HEADER.size + length]
                offset += HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    moved.extend(self._where.keys())
                elif mask & DIRECTORY_EVENTS:
                    for writers in self._table.get(wd, {}).values():
                        moved.extend(writers)
                    if mask & IN_IGNORED:
                        # The directory is gone: its writers watch the next
                        # one when they reopen.
                        self._directories.pop(wd, None)
                        for writers in self._table.pop(wd, {}).values():
                            for writer in list(writers):
                                self._where.pop(writer, None)
                elif mask & NAME_EVENTS:
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
        if not self._ours():
            self._forgetLocked()
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
        self._identities = None
        self.doorbell[0] = 0

    # -- forks ----------------------------------------------------------------

    def _interrupt(self) -> None:
        # Under the lock: the thread may be closing the pipe as it ends.
        with self._lock:
            wake = self._wakeWrite
            if wake is not None and self._ours():
                try:
                    os.write(wake, b"\0")
                except OSError:
                    pass

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        # The inotify descriptor is shared with the parent (whichever reads
        # an event takes it from the other): the child gets its own, but
        # only once it writes. A forked worker that never logs holds no
        # inotify instance (fs.inotify.max_user_instances is 128 a user by
        # default, shared with every program of that user) and no thread.
        # Each writer checks its path at its next write, so a move made
        # before it watches again is seen too, and watches again then.
        writers = list(self._where.keys())
        self._closeLocked()
        self._table = {}
        self._directories = {}
        self._where = weakref.WeakKeyDictionary()
        then = super()._afterForkInChild(keepPending)
        self._members = weakref.WeakSet()
        for writer in writers:
            try:
                writer._pathMoved()
            except Exception:
                pass
        return then


#: The process-wide watcher.
rotationWatcher = RotationWatcher()
rotationWatcher.pauseAroundForks()

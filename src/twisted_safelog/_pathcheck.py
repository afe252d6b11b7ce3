# -*- test-case-name: tests.test_file,tests.test_rotationwatch -*-
"""
Which file a L{LogFileWriter} writes to: it opens its path, and notices
when the file there is no longer the one it has open (logrotate moved it
away, or it was deleted) by the periodic check of the path's device and
inode or the rotation watcher's flag, then reopens the path. A watched
writer gives logrotate's C{create} a moment to make the new file first;
writes that went to a deleted file are counted.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

from ._filepath import O_NOFOLLOW

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._report import IReporter
    from ._rotationwatch import RotationWatcher

__all__ = ["CREATE_GRACE", "PathChecking"]

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

#: Seconds a watched writer waits for a file to be created at the path
#: (logrotate's create) before it creates one itself.
CREATE_GRACE = 0.05
#: A check time always past.
_CHECK_NOW = float("-inf")


class PathChecking:
    """
    Opening and checking the path, L{LogFileWriter}'s (a mixin: the state
    it uses is L{LogFileWriter}'s, set up by its constructor;
    L{LogFileWriter.write} does the cheap part of L{_current} inline).
    """

    if TYPE_CHECKING:
        path: str
        reporter: IReporter
        createDirectory: bool
        mode: int
        checkInterval: float
        checkEvery: int
        reopened: int
        writtenToDeletedFile: int
        _clock: Callable[[], float]
        _watcher: RotationWatcher | None
        _unchecked: int
        _checkAt: float
        _fd: int | None
        _identity: tuple[int, int] | None
        _missingSince: float | None
        _movedAt: float | None
        _note: str | None
        _size: int
        _regular: bool
        _opened: bool
        _linkOwner: int | None
        _refusedLink: bool
        _torn: bool

        def _closeFile(self) -> None: ...

        def _reopenPath(self) -> tuple[str, int]: ...

        def _swappedLink(self) -> OSError: ...

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
        # Taken before the stat: a move flagged from now on is kept.
        movedAt, self._movedAt = self._movedAt, None
        now = self._clock()
        self._checkAt = now + self.checkInterval
        try:
            st = os.stat(self.path)
            identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            identity = None
        if self._fd is not None and identity == self._identity:
            self._missingSince = None
            watcher = self._watcher
            if watcher is not None and not watcher.watches(self):
                # Not watched (yet) in a forked child, or no more since
                # the directory went: watch again.
                note = watcher.watch(self)
                if note is not None:
                    self._addNote(note)
            return self._fd
        if (
            self._fd is not None
            and identity is None
            and self._awaitingCreate(self._fd, now, movedAt)
        ):
            return self._fd
        if self._fd is not None:
            self.reopened += 1
            self._checkDeleted(self._fd, written)
        self._closeFile()
        return self._open()

    def _awaitingCreate(self, fd: int, now: float, movedAt: float | None) -> bool:
        """
        The path is missing: should the writer keep writing to the file it
        has open (still linked, so moved away) for a moment? Yes while
        watched, for at most L{CREATE_GRACE} seconds: logrotate's
        C{create} makes the new file microseconds after the rename, with
        C{O_EXCL}; a writer that made it first would make logrotate fail
        (it moves the writer's file aside as C{path-DATE.backup}, and
        says so as an error). The watcher flags the writer when the new
        file is there. The grace counts from C{movedAt}, when the watcher
        saw the move, if it did: after a plain C{mv} and nothing else, the
        next event of a quiet application goes to a new file at the path,
        not to the moved one.
        """
        watcher = self._watcher
        if watcher is None or not watcher.watches(self):
            return False
        try:
            if os.fstat(fd).st_nlink == 0:
                return False
        except OSError:
            return False
        if self._missingSince is None:
            self._missingSince = now if movedAt is None else min(movedAt, now)
        if now - self._missingSince >= CREATE_GRACE:
            return False
        self._checkAt = min(self._checkAt, self._missingSince + CREATE_GRACE)
        return True

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
                self._addNote(
                    f"log file {self.path} was deleted; up to {lost} events written "
                    "since it was last checked went to the deleted file"
                )

    def _addNote(self, note: str) -> None:
        self._note = note if self._note is None else f"{self._note}\n{note}"

    def _sayNote(self) -> None:
        notes, self._note = self._note, None
        for note in (notes or "").splitlines():
            try:
                self.reporter.note(note)
            except Exception:
                pass

    def _open(self) -> int:
        # O_NONBLOCK: a FIFO nobody reads at the path (put there by mistake
        # or swapped in) fails with ENXIO instead of blocking open() for
        # ever; it is cleared once the file is known to be one we write.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | _O_NONBLOCK
        # Before the open: a rotation the watcher flags from now on (see
        # _pathMoved) is not overwritten.
        self._unchecked = 0
        self._checkAt = self._clock() + self.checkInterval
        self._movedAt = None
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
            if error.errno == errno.ELOOP and flags & O_NOFOLLOW:
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
        self._missingSince = None
        self._size = st.st_size
        # Never rotate a device (/dev/null, /dev/full): renaming it would be
        # a disaster, and its size means nothing.
        self._regular = stat.S_ISREG(st.st_mode)
        if self._watcher is not None:
            note = self._watcher.watch(self)
            if note is not None:
                self._addNote(note)
        return fd

    def _pathMoved(self) -> None:
        """
        The rotation watcher saw the file at the path moved, deleted or
        replaced: check the path at the next write. Only a flag and
        the time (called from the watcher's thread; the next check sets it
        again).
        """
        if self._movedAt is None:
            try:
                self._movedAt = self._clock()
            except Exception:
                pass
        self._checkAt = _CHECK_NOW

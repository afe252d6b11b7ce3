# -*- test-case-name: tests.test_file -*-
"""
What a L{LogFileWriter} does at its path besides writing: rotation by size,
and which symbolic links a reopen may follow.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

from ._report import describe

if TYPE_CHECKING:
    from ._report import IReporter

__all__ = ["O_NOFOLLOW", "PathKeeping"]

O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_MAX_LINK_HOPS = 8


class PathKeeping:
    """
    Rotation and link handling, L{LogFileWriter}'s (a mixin: the state it
    uses is L{LogFileWriter}'s, set up by its constructor).
    """

    if TYPE_CHECKING:
        path: str
        reporter: IReporter
        maxRotatedFiles: int | None
        failedRotations: int
        rotations: int
        _regular: bool
        _size: int
        _linkOwner: int | None
        _refusedLink: bool

        def _closeFile(self) -> None: ...

        def _open(self) -> int: ...

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
            return self.path, O_NOFOLLOW
        if not _O_PATH:
            # No way to hold the link itself here: check, then follow.
            return self.path, self._noFollow()
        path = self.path
        # A chain of the same owner's links is followed one hop at a time
        # (too long a chain ends with ELOOP at the open, refused).
        for _ in range(_MAX_LINK_HOPS):
            try:
                link = os.open(path, _O_PATH | O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
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
        return path, O_NOFOLLOW

    def _noFollow(self) -> int:
        """
        The flag for a reopen where links cannot be held (no C{O_PATH}):
        C{O_NOFOLLOW}, unless the path was a link when first opened and
        still is one, owned by the same user. Called with the lock held.
        """
        if self._linkOwner is None:
            return O_NOFOLLOW
        try:
            link = os.lstat(self.path)
        except OSError:
            return O_NOFOLLOW
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

# -*- test-case-name: tests.test_guard -*-
"""
The per-thread reentry guard every hardened sink shares.

A sink is "being delivered to" on a thread from the moment its wrapper calls
it until the call returns. Anything that reaches the same wrapper on the same
thread in between was caused by that delivery (the sink logged, or wrote to a
redirected C{sys.stderr}), so it must not be delivered to the sink again:
that is the whole feedback loop, cut at its first turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from ._fork import registerForFork

__all__ = ["ReentryGuard", "currentThread", "looksLikeErrorOutput"]

#: The identity of the calling thread; what the guard keys on.
currentThread = threading.get_ident


class ReentryGuard:
    """
    One per hardened sink: which threads are delivering to it right now, and
    which of those saw it write error output.

    Sets of thread identities rather than a C{threading.local}: adding to and
    removing from a set is atomic under the GIL and costs about half as much
    as two C{threading.local} attribute writes, and this runs for every
    event. The hot paths of the sinks inline L{enter} and L{exit}.
    """

    __slots__ = ("__weakref__", "active", "errorSeen")

    def __init__(self, resetAtFork: bool = True) -> None:
        """
        @param resetAtFork: forget other threads' deliveries in a forked
            child by itself; an owner that counts those deliveries (a
            hardened sink) passes C{False} and calls L{forgetOtherThreads}.
        """
        self.active: set[int] = set()
        self.errorSeen: set[int] = set()
        if resetAtFork:
            registerForFork(self)

    def __repr__(self) -> str:
        return f"<ReentryGuard active={len(self.active)}>"

    def entered(self) -> bool:
        """
        Is the calling thread already delivering to this sink?
        """
        return currentThread() in self.active

    def enter(self) -> int:
        """
        Mark the calling thread as delivering; returns its identity for
        L{exit}.
        """
        tid = currentThread()
        self.active.add(tid)
        return tid

    def enterOnce(self) -> int | None:
        """
        Mark the calling thread as delivering and return its identity, or
        return L{None} if it already is (the call is a reentry).
        """
        tid = currentThread()
        if tid in self.active:
            return None
        self.active.add(tid)
        return tid

    def exit(self, tid: int) -> bool:
        """
        The delivery on thread C{tid} is over. Returns whether the sink wrote
        error output during it (see L{sawErrorOutput}).
        """
        self.active.discard(tid)
        if self.errorSeen and tid in self.errorSeen:
            self.errorSeen.discard(tid)
            return True
        return False

    def forgetOtherThreads(self) -> int:
        """
        In a forked child: every thread but this one is gone, and a new
        thread may be given a dead one's identity; forget them all. Returns
        how many deliveries were in flight on them.
        """
        me = currentThread()
        gone = len(self.active - {me})
        self.active.intersection_update({me})
        self.errorSeen.intersection_update({me})
        return gone

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self.forgetOtherThreads()
        return None

    def sawErrorOutput(self) -> None:
        """
        The sink being delivered to on this thread wrote error output.
        """
        self.errorSeen.add(currentThread())


# First lines of what CPython writes when a handler fails or an error is
# printed: logging.Handler.handleError, traceback.print_exc and the
# "unraisable" hook.
_ERROR_OUTPUT_PREFIXES = (
    "--- Logging error ---",
    "Traceback (most recent call last):",
    "Exception ignored",
)


def looksLikeErrorOutput(event: Mapping[str, Any]) -> bool:
    """
    Is C{event} a line of error output written to a redirected C{sys.stderr}
    (a L{twisted.logger.LoggingFile})? Used to notice a sink that reports its
    own failure on stderr instead of raising, as stdlib handlers do.
    """
    try:
        if event.get("log_namespace") != "stderr":
            return False
        line = event.get("log_io")
        return isinstance(line, str) and line.startswith(_ERROR_OUTPUT_PREFIXES)
    except Exception:
        return False

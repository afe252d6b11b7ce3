# -*- test-case-name: tests.test_lifecycle -*-
"""
Fork safety for every part that keeps state across calls.

After C{os.fork()} only the forking thread exists in the child. Every other
thread is gone mid-call: a lock it held stays held for ever, its thread id
stays marked as "delivering" in a reentry guard (and the child's next thread
may get the same id), and an event it was delivering, or that waited in a
queue or replay buffer, exists in both processes. Each stateful part
registers here and is reset in the child by one C{os.register_at_fork}
hook, in two phases: first every lock is replaced (so that no report can
wait on a dead thread's lock), then whatever the parts have to say about
the fork is reported.

What was pending at the fork (queued, buffered, in flight on a thread that
is gone) is delivered by exactly one process. By default the parent keeps
it and the child counts it as dropped with reason C{"fork"}, without a report:
nothing is lost, and a healthy application that forks while a thread logs
(or a child that forks only to exec) must not see a line of ours.
While L{handOverAtFork} is on (the twistd factory turns it on until the
reactor runs, because twistd's parent exits right after forking to
daemonize), the child keeps it instead.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "IForkAware",
    "IQuiescent",
    "childKeepsPending",
    "handOverAtFork",
    "quiesceForFork",
    "registerForFork",
]


class IForkAware(Protocol):
    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        """
        Start clean in a forked child: new locks, no dead thread marked as
        busy. C{keepPending}: keep what was pending at the fork (the parent
        is about to exit) rather than count it as dropped. Return something
        to call once every registered part is reset (a report), or L{None}.
        """


_registered: weakref.WeakSet[IForkAware] = weakref.WeakSet()
_handOver = False


def registerForFork(part: IForkAware) -> None:
    """
    Reset C{part} in the child after every C{os.fork()}, for as long as it
    lives (it is held weakly).
    """
    _registered.add(part)


def handOverAtFork(on: bool) -> None:
    """
    While on, a forked child keeps the events pending at the fork (queued,
    buffered) and the parent is expected to exit without delivering them, as
    twistd's parent does when it daemonizes.
    """
    global _handOver
    _handOver = on


def childKeepsPending() -> bool:
    """
    Is L{handOverAtFork} on?
    """
    return _handOver


def _afterForkInChild() -> None:
    keep = _handOver
    later: list[Callable[[], object]] = []
    for part in list(_registered):
        try:
            then = part._afterForkInChild(keep)
        except Exception:
            continue
        if then is not None:
            later.append(then)
    for then in later:
        try:
            then()
        except Exception:
            pass


#: Parts that also quiesce before a fork (an idle worker thread ends, so
#: that the process forks without it) and resume in the parent after it.
_quiescing: weakref.WeakSet[IQuiescent] = weakref.WeakSet()


class IQuiescent(Protocol):
    def _beforeFork(self) -> None: ...

    def _afterForkInParent(self) -> None: ...


def quiesceForFork(part: IQuiescent) -> None:
    """
    Call C{part._beforeFork()} just before every C{os.fork()} and
    C{part._afterForkInParent()} in the parent after it, for as long as it
    lives (held weakly).
    """
    _quiescing.add(part)


def _beforeFork() -> None:
    for part in list(_quiescing):
        try:
            part._beforeFork()
        except Exception:
            pass


def _afterForkInParent() -> None:
    for part in list(_quiescing):
        try:
            part._afterForkInParent()
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_beforeFork,
        after_in_parent=_afterForkInParent,
        after_in_child=_afterForkInChild,
    )

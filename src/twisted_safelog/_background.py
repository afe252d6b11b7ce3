# -*- test-case-name: tests.test_lifecycle -*-
"""
The process's background threads (the stall watchdog, the summary timer):
each is one daemon thread over a weak set of members. It starts with the
first member, ends when no member is left (they are held weakly), ends just
before every C{os.fork()} and starts again after it in both processes, and
never starts while the twistd factory waits for twistd to daemonize (see
L{twisted_safelog._fork.handOverAtFork}).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from ._fork import childKeepsPending, registerForFork

__all__ = ["ProcessThread"]

M = TypeVar("M")


class ProcessThread(Generic[M]):
    """
    One daemon thread over C{members}: every C{wait} seconds (or when a
    member is added) it calls L{visit} with a copy of them. Subclasses say
    what a visit does and how long to wait.
    """

    #: The thread's name.
    threadName = "twisted-safelog"

    def __init__(self) -> None:
        self._members: weakref.WeakSet[M] = weakref.WeakSet()
        self._setUp()
        registerForFork(self)

    def _setUp(self) -> None:
        # Reentrant: a signal handler that logs runs on a thread that holds
        # it, between any two bytecodes (its log call may schedule another
        # filter's summaries); and a finalizer run by the garbage collector
        # there (a collected handler's hardening is closed) leaves the
        # watchdog. A plain lock deadlocked that thread on itself, and every
        # thread making a sink after it.
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._paused = False

    def pauseAroundForks(self) -> None:
        """
        End the thread just before every C{os.fork()} and start it again
        after it in the parent (the child's is started by L{_fork}). For the
        process-wide instances only: the hooks keep it alive for good.
        """
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._pauseForFork, after_in_parent=self._resumeAfterFork)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _add(self, member: M) -> None:
        """
        Add C{member} (the thread is woken to look at it at once) and make
        sure the thread runs.
        """
        with self._lock:
            if member not in self._members:
                self._members.add(member)
                self._wake.notify()
        self.ensureRunning()

    def _discard(self, member: M) -> None:
        with self._lock:
            self._members.discard(member)

    def ensureRunning(self) -> None:
        """
        Start the thread if it has members, it is not running, and the
        process is not about to daemonize. Never raises: a thread that
        cannot start means no background work, not a failing caller.
        """
        if childKeepsPending():
            return
        with self._lock:
            if self._thread is not None or self._paused or not self._members:
                return
            thread = threading.Thread(target=self._run, name=self.threadName, daemon=True)
            self._thread = thread
            try:
                thread.start()
            except Exception:
                self._thread = None

    def wait(self, members: list[M]) -> float:
        """
        How long to wait before the first visit, given C{members}.
        """
        raise NotImplementedError()

    def visit(self, members: list[M]) -> float:
        """
        Do the work for C{members}; return how long to wait before the next
        visit. Never raises.
        """
        raise NotImplementedError()

    def _run(self) -> None:
        wait: float | None = None
        while True:
            with self._lock:
                if not self._members or self._paused:
                    self._thread = None
                    self._ending()
                    return
                if wait is None:
                    wait = self.wait(self._copy())
                self._wake.wait(wait)
                if self._paused:
                    self._thread = None
                    self._ending()
                    return
                # Under the lock: members are added from other threads, and
                # a WeakSet changed while it is copied raises (the thread
                # would die, and its work with it).
                members = self._copy()
            wait = self.visit(members)
            del members

    def _copy(self) -> list[M]:
        """
        With the lock held: the members, copied. The copy allocates, so the
        garbage collector may run a finalizer on this thread meanwhile, which
        may discard a member (the lock is reentrant): the set changed while
        it is copied raises C{RuntimeError}, and it is copied again.
        """
        for _ in range(3):
            try:
                return list(self._members)
            except RuntimeError:
                continue
        return []

    def _pauseForFork(self) -> None:
        """
        Just before C{os.fork()}: end the thread, so that the process forks
        with no thread of ours (nothing to inherit half-way, and no "this
        process is multi-threaded" warning on Python 3.12 and later caused
        by us). Waits at most a second; a visit never blocks for longer.
        """
        with self._lock:
            self._paused = True
            thread = self._thread
            self._wake.notify_all()
        self._interrupt()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _ending(self) -> None:
        """
        The thread is about to end (no member left, or a fork): tidy up
        what members left behind. Called on the thread, with the lock held.
        Nothing by default.
        """

    def _interrupt(self) -> None:
        """
        Make a visit that waits for something else than the condition (a
        descriptor) return now: the thread is to end. Nothing by default.
        """

    def _resumeAfterFork(self) -> None:
        with self._lock:
            self._paused = False
        self.ensureRunning()

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        # A fresh set as well as a fresh lock: the parent's may have been
        # half-way through a change on a thread the child does not have.
        members = list(self._members)
        self._setUp()
        self._members = weakref.WeakSet(members)
        return self.ensureRunning

# -*- test-case-name: tests.test_lifecycle -*-
"""
Stalled deliveries: one watchdog thread per process notices a sink whose
delivery has not returned for C{stallTimeout} seconds (an NFS write that
never returns, a pipe nobody reads) and reports it once, as "stalled for N
s", and once more when it returns.

The delivering thread pays nothing for this: a hardened sink already marks
the threads delivering to it (its reentry guard) and counts every delivery
that ends. The watchdog samples both; a sink with a delivery in progress
and no delivery ended since the previous samples, for C{stallTimeout}
seconds, is stalled. (So a sink where one thread is stuck while others keep
delivering is not called stalled: the sink as a whole is still moving.)

The thread starts with the first watched sink, ends when no watched sink is
left (they are held weakly), ends just before every C{os.fork()} and starts
again after it in both processes, and never starts while the twistd factory
waits for twistd to daemonize (see L{twisted_safelog._fork.handOverAtFork}).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from ._fork import childKeepsPending, registerForFork

__all__ = ["DEFAULT_STALL_TIMEOUT", "IStallCheck", "StallWatchdog", "watchdog"]

#: Seconds a delivery may take before its sink is reported as stalled.
DEFAULT_STALL_TIMEOUT = 5.0


class IStallCheck(Protocol):
    #: Seconds without progress before it is stalled; 0 turns it off.
    stallTimeout: float

    def _checkStall(self, now: float) -> None:
        """
        Sample progress at C{now} (C{time.monotonic()}); report a stall or
        its end.
        """


class StallWatchdog:
    """
    The process's one watchdog thread over every watched sink.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._watched: weakref.WeakSet[IStallCheck] = weakref.WeakSet()
        self._setUp()
        registerForFork(self)

    def _setUp(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._paused = False

    def __repr__(self) -> str:
        return f"<StallWatchdog watching={len(self._watched)} running={self.running}>"

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def watch(self, sink: IStallCheck) -> None:
        """
        Watch C{sink} for as long as it lives or until L{unwatch}.
        """
        with self._lock:
            self._watched.add(sink)
            self._wake.notify()
        self.ensureRunning()

    def unwatch(self, sink: IStallCheck) -> None:
        with self._lock:
            self._watched.discard(sink)

    def ensureRunning(self) -> None:
        """
        Start the thread if anything is watched, it is not running, and the
        process is not about to daemonize. Never raises: a thread that
        cannot start means no stall reports, not a failing caller.
        """
        if childKeepsPending():
            return
        with self._lock:
            if self._thread is not None or self._paused or not self._watched:
                return
            thread = threading.Thread(
                target=self._run, name="twisted-safelog stall watchdog", daemon=True
            )
            self._thread = thread
            try:
                thread.start()
            except Exception:
                self._thread = None

    def _interval(self) -> float:
        timeouts = [s.stallTimeout for s in list(self._watched) if s.stallTimeout > 0]
        return min(max(min(timeouts, default=1.0) / 4, 0.01), 1.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._watched or self._paused:
                    self._thread = None
                    return
                interval = self._interval()
                self._wake.wait(interval)
                if self._paused:
                    self._thread = None
                    return
                # Under the lock: watch() adds from other threads, and a
                # WeakSet changed while it is copied raises (the thread
                # would die, and stall detection with it).
                watched = list(self._watched)
            now = self.clock()
            for sink in watched:
                try:
                    sink._checkStall(now)
                except Exception:
                    pass
                del sink
            del watched

    def _pauseForFork(self) -> None:
        """
        Just before C{os.fork()}: end the thread, so that the process forks
        with no thread of ours (nothing to inherit half-way, and no "this
        process is multi-threaded" warning on Python 3.12 and later caused
        by us). Waits at most a second; sampling never blocks.
        """
        with self._lock:
            self._paused = True
            thread = self._thread
            self._wake.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def _resumeAfterFork(self) -> None:
        with self._lock:
            self._paused = False
        self.ensureRunning()

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._setUp()
        return self.ensureRunning


#: The process-wide watchdog.
watchdog = StallWatchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=watchdog._pauseForFork, after_in_parent=watchdog._resumeAfterFork)


class StallTracker:
    """
    Per-sink stall state, fed by the watchdog's samples: C{active} says
    whether a delivery is in progress, C{progress} how many have ended.
    """

    __slots__ = ("progress", "reported", "since")

    def __init__(self) -> None:
        self.progress = -1
        self.since: float | None = None
        self.reported = False

    def sample(self, now: float, active: bool, progress: int, timeout: float) -> str | None:
        """
        Returns a line to report: "stalled for N s" when the sink has just
        been stalled for C{timeout} seconds, "resumed after N s" when a
        reported stall ended; else L{None}.
        """
        if not active or progress != self.progress:
            since, reported = self.since, self.reported
            self.progress = progress
            self.since = now if active else None
            if reported:
                self.reported = False
                return f"resumed after {now - (since or now):.3g} s"
            return None
        if self.since is None:
            self.since = now
        if not self.reported and timeout > 0 and now - self.since >= timeout:
            self.reported = True
            return (
                f"stalled for {now - self.since:.3g} s: a delivery has not returned "
                "and none has completed since"
            )
        return None

    def stalledFor(self, now: float) -> float:
        """
        Seconds the sink has been stalled, once reported; else 0.
        """
        since = self.since
        if not self.reported or since is None:
            return 0.0
        return max(0.0, now - since)

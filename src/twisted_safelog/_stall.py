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

The thread is a L{ProcessThread}: it starts with the first watched sink,
ends when none is left (they are held weakly) and around every fork.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from ._background import ProcessThread

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


class StallWatchdog(ProcessThread[IStallCheck]):
    """
    The process's one watchdog thread over every watched sink.
    """

    threadName = "twisted-safelog stall watchdog"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        super().__init__()

    def __repr__(self) -> str:
        return f"<StallWatchdog watching={len(self._members)} running={self.running}>"

    def watch(self, sink: IStallCheck) -> None:
        """
        Watch C{sink} for as long as it lives or until L{unwatch}.
        """
        self._add(sink)

    def unwatch(self, sink: IStallCheck) -> None:
        self._discard(sink)

    def wait(self, members: list[IStallCheck]) -> float:
        timeouts = [s.stallTimeout for s in members if s.stallTimeout > 0]
        return min(max(min(timeouts, default=1.0) / 4, 0.01), 1.0)

    def visit(self, members: list[IStallCheck]) -> float:
        now = self.clock()
        for sink in members:
            try:
                sink._checkStall(now)
            except Exception:
                pass
        return self.wait(members)


#: The process-wide watchdog.
watchdog = StallWatchdog()
watchdog.pauseAroundForks()


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

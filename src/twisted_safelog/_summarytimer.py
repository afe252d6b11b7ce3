# -*- test-case-name: tests.test_repeats -*-
"""
Summaries of held-back identical events, delivered when their interval
ends even if the sink gets nothing else: one timer thread per process over
the L{RepeatFilter}s that hold copies back.

The thread runs only while some filter holds copies back or watches a
repeating event; it holds them weakly (a sink nobody references is freed,
and its filter leaves the timer with it), ends before every C{os.fork()}
and starts again after it in both processes, and never starts while the
twistd factory waits for twistd to daemonize (a L{ProcessThread}, as the
stall watchdog is).
While a Twisted reactor runs, a summary is handed to it
(C{callFromThread}), to be delivered on the reactor thread where the
sink's other events come from; otherwise the thread delivers it itself.
Either way no caller ever waits for it; and each wait of the thread has a
deadline (the next interval's end). A summary due is delivered by a helper
thread the timer waits for at most L{TICK_DEADLINE} seconds: a sink that
has stalled (a pipe nobody reads) holds up its own summaries, never the
other sinks', and is not ticked again until its delivery returns.
"""

from __future__ import annotations

import sys
import threading
import weakref
from typing import Any, Protocol

from ._background import ProcessThread

__all__ = ["TICK_DEADLINE", "ITimed", "SummaryTimer", "summaryTimer"]

#: The shortest and longest waits between two ticks, in seconds.
_SHORTEST = 0.01
_LONGEST = 1.0
#: How long the timer waits for one filter's summaries to be delivered
#: before it goes on without them (their sink has stalled).
TICK_DEADLINE = 0.5


class ITimed(Protocol):
    #: Whether its summaries may be handed to a running reactor (a filter
    #: whose summaries only go into a queue is ticked on the thread).
    useReactor: bool

    def tick(self) -> float | None:
        """
        Deliver the summaries due now; return how many seconds until the
        next may be due, or L{None} if nothing is held back or watched any
        more (it leaves the timer until it is scheduled again).
        """

    def dueIn(self) -> float | None:
        """
        Seconds until its next summaries may be due (zero or less: now), or
        L{None} if nothing is held back or watched any more. Never delivers,
        never waits.
        """


class SummaryTimer(ProcessThread[ITimed]):
    """
    The process's one summary thread.
    """

    threadName = "twisted-safelog repeat summaries"

    def _setUp(self) -> None:
        super()._setUp()
        # Filters handed to the reactor and not yet ticked there.
        self._handed: weakref.WeakSet[ITimed] = weakref.WeakSet()
        # Filters whose tick has not returned within TICK_DEADLINE (a
        # helper thread is still delivering into their stalled sink).
        self._stalled: weakref.WeakSet[ITimed] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<SummaryTimer timed={len(self._members)} running={self.running}>"

    def schedule(self, timed: ITimed) -> None:
        """
        Tick C{timed} until it says nothing is due any more. Never raises,
        never waits for a tick.
        """
        self._add(timed)

    def wait(self, members: list[ITimed]) -> float:
        return _SHORTEST

    def visit(self, members: list[ITimed]) -> float:
        reactor = _runningReactor()
        wait = _LONGEST
        for each in members:
            following: float | None
            try:
                if reactor is not None and each.useReactor:
                    following = self._handToReactor(reactor, each)
                else:
                    following = self._tickWithDeadline(each)
            except Exception:
                following = None
            if following is None:
                self._discard(each)
            else:
                wait = min(wait, max(following, _SHORTEST))
        return wait

    def _tickWithDeadline(self, timed: ITimed) -> float | None:
        """
        Tick C{timed} if its summaries are due, on a helper thread waited for
        at most L{TICK_DEADLINE} seconds (the sink may block); one whose last
        tick has not returned is left alone until it does.
        """
        following = timed.dueIn()
        if following is None or following > 0:
            return following
        with self._lock:
            if timed in self._stalled:
                return _LONGEST
            self._stalled.add(timed)
        reference = weakref.ref(timed)
        result: list[float | None] = []
        done = threading.Event()

        def tickThere() -> None:
            alive = reference()
            try:
                if alive is not None:
                    result.append(alive.tick())
            except Exception:
                pass
            finally:
                if alive is not None:
                    with self._lock:
                        self._stalled.discard(alive)
                del alive
                done.set()

        helper = threading.Thread(
            target=tickThere, name="twisted-safelog repeat summary", daemon=True
        )
        try:
            helper.start()
        except Exception:
            # No thread to be had (interpreter exit): tick here.
            with self._lock:
                self._stalled.discard(timed)
            return timed.tick()
        if not done.wait(TICK_DEADLINE):
            return _LONGEST
        return result[0] if result else None

    def _handToReactor(self, reactor: Any, timed: ITimed) -> float:
        """
        Have the reactor tick C{timed} (once at a time: a reactor that is
        blocked does not pile up calls).
        """
        with self._lock:
            if timed in self._handed:
                return _LONGEST
            self._handed.add(timed)
        reference = weakref.ref(timed)

        def tickThere() -> None:
            alive = reference()
            if alive is None:
                return
            with self._lock:
                self._handed.discard(alive)
            following: float | None = None
            try:
                following = alive.tick()
            except Exception:
                pass
            if following is None:
                self._discard(alive)

        reactor.callFromThread(tickThere)
        return _LONGEST


def _runningReactor() -> Any:
    """
    The global reactor, if it is imported and running.
    """
    module = sys.modules.get("twisted.internet.reactor")
    if module is None:
        return None
    return module if getattr(module, "running", False) else None


#: The process-wide timer.
summaryTimer = SummaryTimer()
summaryTimer.pauseAroundForks()

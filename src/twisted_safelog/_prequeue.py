# -*- test-case-name: tests.test_repeats -*-
"""
Identical-event suppression in front of L{NonBlockingObserver}'s queue, on
the caller's thread: a flood's copies beyond the burst allowance are held
back before they are queued, so a flood larger than the queue costs only
its own copies, never the distinct lines logged with it (they would have
been dropped as the queue overflowed).

The observer takes over the wrapped sink's L{RepeatFilter} settings (and
turns the sink's own filter off: every event the sink gets comes through
the queue). What the caller pays while nothing repeats is one comparison:
the observer's count of received events, which it keeps anyway, against
the filter's gate.

Events let through while one repeats are queued with the observer's
delivery mark, and the worker delivers them inside it, so an event that a
delivery causes on another thread (C{deferToThread}, an executor that copies
the context) is known as its echo when it comes back, before it is queued.
"""

from __future__ import annotations

import weakref
from typing import Any

from twisted.logger import LogEvent

from ._repeats import ECHO, MARKED, SUPPRESS, RepeatFilter
from ._stats import DropReason

__all__ = ["MarkToken", "Marked", "PreQueueSuppression"]

#: Never: the gate of a filter that is off.
_NEVER = 1 << 63


class MarkToken:
    """
    What the deliveries of one non-blocking observer are marked with: held
    by the observer, by the events queued with its mark, and weakly by its
    filter (never the observer itself: the worker must not keep it alive).
    """

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<delivery mark of {self.name}>"


class Marked:
    """
    A queued event the worker delivers inside C{token}'s delivery mark.
    """

    __slots__ = ("event", "token")

    def __init__(self, event: LogEvent, token: MarkToken) -> None:
        self.event = event
        self.token = token


class PreQueueSuppression:
    """
    L{NonBlockingObserver}'s half of suppression before the queue (see the
    module's docstring).
    """

    #: A copy of C{repeats.gate} (0 while every event must be looked at),
    #: compared with the count of received events on the caller's path.
    _repeatGate: int
    repeats: RepeatFilter[LogEvent]
    _markToken: MarkToken

    def _setUpRepeats(self) -> None:
        """
        Take over the wrapped sink's suppression settings.
        """
        nb: Any = self
        inner = nb.observer.repeats
        self._markToken = token = MarkToken(nb.name)
        self._repeatGate = _NEVER
        me = weakref.proxy(self)
        received = nb._received
        filters: list[RepeatFilter[LogEvent]] = []
        reporter, name = nb.reporter, nb.name
        self.repeats = repeats = RepeatFilter(
            inner.burst,
            inner.interval,
            inner.identity,
            token,
            nb.name,
            deliver=lambda summary: me._summaryDue(summary),
            drop=lambda n: me._drops.add(DropReason.repeated, n),
            report=lambda line: me._note(line),
            dropped=lambda n: me._reportDropped(DropReason.repeated, n),
            whenGone=lambda n: reporter.dropped(name, DropReason.repeated.value, n),
            # Every received event is counted, looked at or not.
            position=lambda: received.value - filters[0].looked,
            setGate=lambda gate: me._gateMoved(gate),
            clock=inner.clock,
        )
        filters.append(repeats)
        # Summaries only go into the queue: ticked on the timer thread.
        repeats.useReactor = False
        self._gateMoved(repeats.gate)
        # Every event the sink gets comes through the queue, already
        # looked at here.
        inner.turnOff()

    def _gateMoved(self, gate: int) -> None:
        # (Also called while the filter is made, before it is self.repeats.)
        repeats = getattr(self, "repeats", None)
        self._repeatGate = 0 if repeats is not None and repeats.due else gate

    def _heldBack(self, event: LogEvent) -> bool | None:
        """
        Ask the filter about C{event}: C{None} if it is dealt with here
        (held back, or dropped as an echo); otherwise whether to queue it
        with the delivery mark.
        """
        repeats = self.repeats
        try:
            verdict = repeats.check(event)
        finally:
            self._repeatGate = 0 if repeats.due else repeats.gate
        if verdict == SUPPRESS:
            return None
        if verdict == ECHO:
            nb: Any = self
            nb._drop(DropReason.reentry, 1)
            repeats.echo(event)
            return None
        return verdict == MARKED

    def _summaryDue(self, summary: LogEvent) -> None:
        """
        A summary of held-back copies: received like any event, and queued.
        """
        nb: Any = self
        nb._received.increment()
        if nb._direct or not nb._channel.alive:
            nb._slowCall(summary)
        else:
            nb._enqueue(summary)

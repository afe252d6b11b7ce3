# -*- test-case-name: tests.test_testing -*-
"""
Fakes for your own tests: observers that misbehave in the ways real sinks
do. Each provides L{ILogObserver}, records what it was given in C{events},
and counts its calls in C{calls}.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat

from twisted.logger import ILogObserver, LogEvent, Logger, LogPublisher, globalLogPublisher
from zope.interface import implementer

__all__ = [
    "FlakyObserver",
    "RaisingObserver",
    "RecordingObserver",
    "ReentrantObserver",
    "SlowObserver",
]


@implementer(ILogObserver)
class RecordingObserver:
    """
    Keeps every event it is given, in order.
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []
        self.calls = 0

    def __call__(self, event: LogEvent) -> None:
        self.calls += 1
        self.events.append(event)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} calls={self.calls}>"


@implementer(ILogObserver)
class RaisingObserver(RecordingObserver):
    """
    Raises on every call, after recording the event.

    @param exception: a factory for what to raise (an exception class, or a
        zero-argument callable returning an exception instance).
    """

    def __init__(self, exception: Callable[[], BaseException] | None = None) -> None:
        super().__init__()
        self.exception = exception or (lambda: OSError("observer is broken"))

    def __call__(self, event: LogEvent) -> None:
        super().__call__(event)
        raise self.exception()


@implementer(ILogObserver)
class FlakyObserver(RecordingObserver):
    """
    Fails on a schedule: the n-th call raises if the n-th item of
    C{schedule} is true. Once the schedule is used up, C{then} decides
    (C{False}, the default: it keeps working). Only successful calls are
    recorded in C{events}; C{failures} counts the others. For example::

        FlakyObserver([True] * 5)            # five failures, then healthy
        FlakyObserver([False, True], then=True)  # fails from the 2nd call on

    @param schedule: for each call in turn, whether it fails.
    @param then: whether calls after the schedule fail.
    @param exception: makes the exception a failing call raises (an C{OSError} by default).
    """

    def __init__(
        self,
        schedule: Iterable[bool],
        then: bool = False,
        exception: Callable[[], BaseException] | None = None,
    ) -> None:
        super().__init__()
        self._schedule: Iterator[bool] = chain(schedule, repeat(then))
        self.failures = 0
        self.exception = exception or (lambda: OSError("observer failed (scheduled)"))

    def __call__(self, event: LogEvent) -> None:
        if next(self._schedule):
            self.calls += 1
            self.failures += 1
            raise self.exception()
        super().__call__(event)


@implementer(ILogObserver)
class ReentrantObserver(RecordingObserver):
    """
    Logs a new event into C{publisher} (the global one by default) every time
    it handles one: the shape of a sink that logs its own trouble, or of a
    bridge whose output comes back to it.

    @param publisher: where it logs from inside its own delivery (the global publisher if L{None}).
    """

    def __init__(self, publisher: LogPublisher | None = None) -> None:
        super().__init__()
        self.publisher = globalLogPublisher if publisher is None else publisher
        self.log = Logger(namespace="twisted_safelog.testing.reentrant", observer=self.publisher)

    def __call__(self, event: LogEvent) -> None:
        super().__call__(event)
        self.log.info("handled an event ({calls} so far)", calls=self.calls)


@implementer(ILogObserver)
class SlowObserver(RecordingObserver):
    """
    Takes C{delay} seconds per event (by calling C{sleep}, C{time.sleep} by
    default; pass a fake to keep tests instant).

    @param delay: seconds each call takes.
    @param sleep: how it waits (C{time.sleep}; a fake in tests).
    """

    def __init__(self, delay: float, sleep: Callable[[float], object] = time.sleep) -> None:
        super().__init__()
        self.delay = delay
        self.sleep = sleep

    def __call__(self, event: LogEvent) -> None:
        self.sleep(self.delay)
        super().__call__(event)

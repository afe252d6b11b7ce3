# -*- test-case-name: tests.test_breaker -*-
"""
A circuit breaker for log sinks: closed, open (quarantined), half-open.

The breaker never calls the sink itself and never holds its lock while the
caller does, so a slow or hanging sink cannot serialise other threads. It
owns no timers: it only compares the injected clock's ``seconds()`` with the
time it may next let a probe through, which makes it usable before the
reactor runs, from any thread, and under ``twisted.internet.task.Clock`` in
tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._compat import StringEnum
from ._fork import registerForFork
from ._policy import checkNumber

__all__ = ["BreakerState", "CircuitBreaker", "IClock", "MonotonicClock"]


class IClock(Protocol):
    """
    The part of L{twisted.internet.interfaces.IReactorTime} the breaker uses.
    """

    def seconds(self) -> float:
        """
        The current time in seconds; only differences between two readings
        matter.
        """
        ...


class MonotonicClock:
    """
    The default clock: C{time.monotonic}, which wall-clock changes do not
    move. The reactor is not the default because importing it would install
    the default reactor before C{twistd} chose one.
    """

    # The builtin itself, not a method calling it: a quarantined sink reads
    # the clock on every event.
    seconds = staticmethod(time.monotonic)

    def __repr__(self) -> str:
        return "MonotonicClock()"


class BreakerState(StringEnum):
    """
    The states of a L{CircuitBreaker}. Each compares equal to its string
    value, so C{stats().state == "open"} reads naturally.
    """

    closed = "closed"
    open = "open"
    halfOpen = "half-open"


BreakerListener = Callable[["CircuitBreaker", BreakerState, BreakerState], None]

_CLOSED = BreakerState.closed
_OPEN = BreakerState.open
_HALF_OPEN = BreakerState.halfOpen


class CircuitBreaker:
    """
    Decide whether a sink may be called, from its recent successes and
    failures.

    Closed: every call is allowed; C{failureThreshold} consecutive failures
    open the breaker. Open: no call is allowed until C{resetTimeout} seconds
    have passed; then exactly one caller is let through as a probe
    (half-open). A successful probe closes the breaker; a failed one opens it
    again for C{backoffFactor} times longer, up to C{maxResetTimeout}.

    Callers ask L{allow} before calling the sink and report the outcome with
    L{success} or L{failure}. A caller that was allowed in half-open state
    I{must} report an outcome, or give the probe back with L{release}, or no
    further probe will be let through.

    With C{earlyProbes}, a breaker that has just opened lets up to that many
    probes through at once, one at a time, instead of after C{resetTimeout}:
    the caller probes with the next, different item, which tells items the
    sink cannot take (poison events) from a sink that cannot take anything.
    A failed early probe does not back off; a failure reported with
    C{itemFault=False} ends them (the caller knows the sink itself is at
    fault).

    Listeners are called on every state change, outside the lock; an
    exception from a listener is swallowed so it cannot break the caller.

    @param failureThreshold: consecutive failures that open the breaker.
    @param resetTimeout: seconds an opened breaker waits before its first probe.
    @param maxResetTimeout: the longest wait between probes, however often they fail.
    @param backoffFactor: what each failed probe multiplies the wait by.
    @param clock: provides C{seconds()}; a L{MonotonicClock} if L{None}.
    @param earlyProbes: how many probes, one at a time, a breaker that has
        just opened lets through before its first C{resetTimeout} (0: none).
    """

    def __init__(
        self,
        failureThreshold: int = 5,
        resetTimeout: float = 1.0,
        maxResetTimeout: float = 60.0,
        backoffFactor: float = 2.0,
        clock: IClock | None = None,
        earlyProbes: int = 0,
    ) -> None:
        checkNumber("failureThreshold", failureThreshold, integer=True, minimum=1)
        checkNumber("resetTimeout", resetTimeout, above=0)
        checkNumber("maxResetTimeout", maxResetTimeout, minimum=resetTimeout)
        checkNumber("backoffFactor", backoffFactor, minimum=1)
        self.failureThreshold = failureThreshold
        self.resetTimeout = resetTimeout
        self.maxResetTimeout = maxResetTimeout
        self.backoffFactor = backoffFactor
        checkNumber("earlyProbes", earlyProbes, integer=True, minimum=0)
        self.earlyProbes = earlyProbes
        self.clock: IClock = MonotonicClock() if clock is None else clock
        self._lock = threading.RLock()
        #: The current state (read-only for callers). Reading it never
        #: changes it: an open breaker whose timeout has passed stays open
        #: until a caller asks L{allow}. A plain attribute, read without the
        #: lock on every event; written only under the lock.
        self.state = _CLOSED
        #: Failures since the last success (read-only for callers).
        self.consecutiveFailures = 0
        self._currentTimeout = resetTimeout
        self._retryAt = 0.0
        self._openedAt = 0.0
        # Early probes left (armed when the breaker opens from closed), and
        # whether the probe in flight is one.
        self._earlyLeft = 0
        self._probingEarly = False
        self._listeners: list[BreakerListener] = []
        registerForFork(self)

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        """
        A forked child: the lock may be held by a thread that is gone, and a
        probe let through on such a thread will never report back, which
        would leave the breaker half-open for ever. Let the next caller
        probe instead.
        """
        self._lock = threading.RLock()
        if self.state is _HALF_OPEN:
            self.state = _OPEN
            self._probingEarly = False
            try:
                self._retryAt = self.clock.seconds()
            except Exception:
                self._retryAt = float("-inf")
        return None

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.state.value} "
            f"failures={self.consecutiveFailures}/{self.failureThreshold} "
            f"timeout={self._currentTimeout:g}s>"
        )

    @property
    def currentTimeout(self) -> float:
        """
        How long the breaker stays open after its most recent opening.
        """
        return self._currentTimeout

    @property
    def retryAt(self) -> float:
        """
        The clock time from which an open breaker lets a probe through.
        """
        return self._retryAt

    @property
    def openedAt(self) -> float:
        """
        The clock time at which the breaker last left the closed state.
        """
        return self._openedAt

    @property
    def earlyProbesLeft(self) -> int:
        """
        How many early probes an open breaker still lets through at once.
        """
        return self._earlyLeft

    @property
    def probingEarly(self) -> bool:
        """
        Is the probe in flight (half-open state) an early one?
        """
        return self.state is _HALF_OPEN and self._probingEarly

    def addListener(self, listener: BreakerListener) -> None:
        """
        Call C{listener(breaker, oldState, newState)} on every state change.

        @param listener: called with the breaker, the old state and the new one.
        """
        self._listeners.append(listener)

    def removeListener(self, listener: BreakerListener) -> None:
        """
        Stop calling C{listener} (added with L{addListener}).

        @param listener: a listener added before.
        """
        self._listeners.remove(listener)

    def allow(self) -> bool:
        """
        May the caller call the sink now? In half-open state this returns
        C{True} to exactly one caller (the probe) until it reports back.
        """
        if self.state is _CLOSED:
            return True
        with self._lock:
            if self.state is _CLOSED:
                return True
            if self.state is _HALF_OPEN:
                return False
            early = self._earlyLeft > 0
            if not early and self.clock.seconds() < self._retryAt:
                return False
            if early:
                self._earlyLeft -= 1
            self._probingEarly = early
            self.state = _HALF_OPEN
        self._notify(_OPEN, _HALF_OPEN)
        return True

    def release(self) -> None:
        """
        Give back a probe that L{allow} let through but that had nothing to
        deliver (another thread emptied the buffer meanwhile): the breaker is
        open again, and the next caller may probe at once. No listener is
        told, since nothing was tried.
        """
        with self._lock:
            if self.state is not _HALF_OPEN:
                return
            self.state = _OPEN
            if self._probingEarly:
                self._earlyLeft += 1
            self._probingEarly = False

    def success(self) -> None:
        """
        The sink took an event. Closes a half-open breaker.
        """
        if self.state is _CLOSED and not self.consecutiveFailures:
            return
        with self._lock:
            old = self.state
            self.consecutiveFailures = 0
            if old is not _HALF_OPEN:
                # Closed: the failure run is over. Open: a call allowed
                # before the breaker opened finished late; the sink stays
                # quarantined until a real probe succeeds.
                return
            self.state = _CLOSED
            self._probingEarly = False
            self._currentTimeout = self.resetTimeout
        self._notify(old, _CLOSED)

    def failure(self, itemFault: bool = True) -> None:
        """
        The sink failed. May open the breaker (or re-open it, backing off).

        @param itemFault: whether the failure may be the item's fault (an
            event the sink cannot format); if not (a full disk, a dead
            socket), no early probes are made with other items.
        """
        with self._lock:
            old = self.state
            self.consecutiveFailures += 1
            now = self.clock.seconds()
            if not itemFault:
                self._earlyLeft = 0
            if old is _HALF_OPEN and self._probingEarly:
                # The early probe failed too: the sink, not one item, is
                # broken. Wait the reset timeout that already runs.
                self._probingEarly = False
                self.state = _OPEN
            else:
                if old is _HALF_OPEN:
                    self._currentTimeout = min(
                        self._currentTimeout * self.backoffFactor, self.maxResetTimeout
                    )
                elif old is _CLOSED and self.consecutiveFailures >= self.failureThreshold:
                    self._currentTimeout = self.resetTimeout
                    self._openedAt = now
                    self._earlyLeft = self.earlyProbes if itemFault else 0
                else:
                    return
                self.state = _OPEN
                self._retryAt = now + self._currentTimeout
        self._notify(old, _OPEN)

    def trip(self) -> None:
        """
        Open the breaker now, whatever its state: for a sink known to be
        unusable before it was ever called (its directory is not there yet).
        """
        with self._lock:
            old = self.state
            if old is _OPEN:
                return
            now = self.clock.seconds()
            self._currentTimeout = self.resetTimeout
            self._openedAt = now
            self._retryAt = now + self._currentTimeout
            self._earlyLeft = 0
            self._probingEarly = False
            self.state = _OPEN
        self._notify(old, _OPEN)

    def _notify(self, old: BreakerState, new: BreakerState) -> None:
        for listener in list(self._listeners):
            try:
                listener(self, old, new)
            except Exception:
                # A listener must not break the sink's caller (guarantee 1).
                pass

# -*- test-case-name: tests.test_safe -*-
"""
L{HardenedSink}: the hardening every safe sink shares, around any
one-argument callable: its healthy path and how an event leaves it.

Its replay buffer is L{ReplayBuffer}'s part, its failures, reports and
lifecycle L{SinkState}'s.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from inspect import getattr_static
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Generic, TypeVar

from zope.interface import implementer

from ._accounts import SinkAccounts
from ._breaker import BreakerState, CircuitBreaker, IClock
from ._fork import registerForFork
from ._guard import ReentryGuard, currentThread
from ._policy import Policy
from ._registry import IHardenedSink, register
from ._repeats import DELIVER, ECHO, EVENTS, MARKED, Identity, RepeatFilter, deliverMarked
from ._replay import ReplayBuffer, _Retry
from ._report import IReporter, defaultReporter, describe, uniqueName
from ._sinkstate import SinkState, describeError, weakListener
from ._sizes import approximateSize
from ._stall import StallTracker, watchdog
from ._stats import DropReason

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = ["HardenedSink"]

T = TypeVar("T")

_ERROR_OUTPUT = "wrote error output to stderr while being called"
_CLOSED = BreakerState.closed
_OPEN = BreakerState.open


@implementer(IHardenedSink)
class HardenedSink(ReplayBuffer[T], SinkState[T], Generic[T]):
    """
    The hardening shared by every safe sink: a per-thread reentry guard, a
    L{CircuitBreaker}, a bounded replay buffer, a fallback, out-of-band
    reports and exact counters, around any one-argument callable C{sink}.

    L{SafeObserver} is this around an L{twisted.logger.ILogObserver}; L{SafeHandler} uses it
    around a stdlib handler; the file sinks around a writer.

     - Calling it never raises an C{Exception}; C{BaseException}s that are not
       C{Exception}s (C{KeyboardInterrupt}, C{SystemExit}) propagate.
     - An item that arrives while this thread is delivering to C{sink} (the
       sink logged, or wrote to a redirected C{sys.stderr}) is not delivered
       to it again; it is dropped with reason C{"reentry"}. Error output
       written to a redirected C{sys.stderr} during a delivery counts as a
       failure of that delivery even if the sink returned.
     - After C{failureThreshold} consecutive failures the sink is quarantined
       (the breaker opens): it is not called, items go to a replay buffer of
       C{bufferSize} items and C{bufferBytes} bytes (oldest dropped first,
       counted) and to C{fallback}. Unless the failure was an C{OSError}
       (the sink's own trouble: a disk, a socket) or error output, the next
       items, up to C{failureThreshold} of them, are tried at once, one at a
       time (early probes): if the failures were the items' fault (poison
       events, such as records a formatter cannot format) the sink is back
       at the first good item and only the poison items were lost (counted
       failed). Otherwise, after C{resetTimeout} seconds one probe is let
       through (the oldest buffered item) and, if it succeeds, the buffer is
       replayed in order.
     - An item that failed for a reason L{SinkState.isTransient} recognises (a full
       disk, say) is kept at the head of the buffer and replayed, in order
       and exactly once, when the sink recovers, instead of being counted
       failed.
     - Failures and state changes go to C{reporter} (file descriptor 2 by
       default), never to a publisher, C{sys.stderr} or stdlib logging.
     - L{SinkState.stats} accounts for every item:
       C{received == delivered + failed + dropped + buffered} when quiet.

    No lock is held while C{sink} or C{fallback} is called, so it is safe to
    call from any number of threads.

    @param policy: the hardening settings (L{Policy}); keyword C{settings}
        (C{failureThreshold=3}, ...) override its fields. An unknown setting
        is a C{TypeError}, a nonsensical value a L{ConfigurationError}, both
        raised here.
    @param name: what reports and L{SinkState.stats} call the sink.
    @param fallback: receives, already hardened, the items the sink cannot
        take (quarantined or failed).
    @param reporter: where failures and state changes are reported
        (L{defaultReporter} if L{None}).
    @param clock: provides C{seconds()}; a monotonic clock by default.
    @param identity: how to tell identical items apart (L{EVENTS} for Twisted
        events), for identical-event suppression (L{RepeatFilter}, set by the
        policy's C{repeatBurst} and C{repeatInterval}); L{None}: items of a
        kind it cannot tell apart, never suppressed.
    @param sink: any one-argument callable: an observer, a handler's C{emit}, a file writer.
    @param settings: L{Policy} fields (C{failureThreshold}, C{resetTimeout}, C{maxResetTimeout},
        C{backoffFactor}, C{bufferSize}, C{retryFailed}, C{maxAttempts}, ...), overriding
        C{policy}'s.
    """

    # What the healthy and quarantine paths read on every event, in slots:
    # an instance with more than 30 attributes in its __dict__ (as these
    # have) makes every attribute read a dict lookup on CPython 3.11+.
    # Everything else lives in __dict__ as usual.
    __slots__ = (
        "_active",
        "_bigItems",
        "_buffer",
        "_degraded",
        "_fastTicks",
        "_probeAt",
        "_repeatGate",
        "_seconds",
        "_shedGate",
        "_shedTicks",
        "_sizes",
        "_slotBytes",
        "_target",
        "breaker",
        "bufferSize",
        "fallback",
        "repeats",
    )

    def __init__(
        self,
        sink: Callable[[T], object],
        policy: Policy | None = None,
        *,
        name: str | None = None,
        fallback: Callable[[T], object] | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
        identity: Identity[T] | None = None,
        **settings: Unpack[PolicySettings],
    ) -> None:
        if not callable(sink):
            raise TypeError(f"{type(self).__name__} needs a callable sink, not {sink!r}")
        self.policy = policy = Policy.of(policy, settings, f"{type(self).__name__}()")
        self._sink = sink
        # What is called: an instance of a class whose __call__ is a Python
        # function is called through that method, bound once here, which
        # CPython calls inline, without the C-level detour of calling an
        # instance (the same code runs, for a few hundred instructions less).
        call = getattr_static(type(sink), "__call__", None)
        self._target = MethodType(call, sink) if isinstance(call, FunctionType) else sink
        self.name = name if name is not None else uniqueName(describe(sink), self)
        self.bufferSize = policy.bufferSize
        self.bufferBytes = policy.bufferBytes
        self.retryFailed = policy.retryFailed
        self.maxAttempts = policy.maxAttempts
        self.reporter = defaultReporter() if reporter is None else reporter
        self.breaker = CircuitBreaker(
            failureThreshold=policy.failureThreshold,
            resetTimeout=policy.resetTimeout,
            maxResetTimeout=policy.maxResetTimeout,
            backoffFactor=policy.backoffFactor,
            clock=clock,
            earlyProbes=policy.failureThreshold,
        )
        self.fallback = fallback
        self._guard = ReentryGuard(resetAtFork=False)
        self._active = self._guard.active
        # The threads in _deliver (the slow path), whose events are counted
        # as received already; the others in _active are on the healthy
        # path, whose events are counted when they end (see SinkAccounts).
        self._slowActive: set[int] = set()
        # Events a signal handler logged on the main thread in the middle of
        # a delivery there, delivered once it returns (_afterSignal).
        self._interrupting: deque[T] = deque()
        self._lock = threading.RLock()
        # Items waiting for replay, oldest first. Bounded: appending to a
        # full buffer drops the oldest item by itself, and SinkAccounts
        # counts those drops without a lock or a check per event.
        self._buffer: deque[T | _Retry[T]] = deque(maxlen=policy.bufferSize)
        # The estimated size of each buffered item, in step with _buffer.
        # An item within its share of bufferBytes (bufferBytes / bufferSize)
        # is appended without a lock while no bigger one is buffered: then
        # the bound in events is the bound in bytes. Bigger items, and every
        # item while one is buffered, are placed under the lock, dropping
        # the oldest until they fit.
        self._sizes: deque[int] = deque(maxlen=policy.bufferSize)
        self._slotBytes = policy.bufferBytes // policy.bufferSize if policy.bufferSize else 0
        self._bigItems = 0
        # While big items are buffered: the sizes' total, and how many items
        # until it is counted again (see _bufferItem).
        self._bufferedTotal = 0
        self._untilRecount = 0
        self._draining = False
        #: True whenever an event must not take the healthy path: the
        #: breaker is not closed, items are buffered, a failure run is under
        #: way, or error output was seen during a delivery. Set (under the
        #: lock) I{after} the change it announces; cleared only by
        #: L{_settle}, under the lock, once none of these holds. So it may
        #: be True for nothing (one slow-path event clears it), never False
        #: when one of them holds.
        self._degraded = False
        #: While the breaker is open, the clock time before which no probe
        #: is due (infinite while a probe is in flight): until then an event
        #: is only buffered and counted (C{_shed}).
        self._probeAt = 0.0
        self._seconds = self.breaker.clock.seconds
        self._accounts = accounts = SinkAccounts()
        self._drops = accounts.drops
        self._fastTicks = accounts.fast.ticks
        self._shedTicks = accounts.shed.ticks
        self._countReceived = accounts.received.increment
        self._countDelivered = accounts.delivered.increment
        # Weakly: a sink nobody references is freed at once, not left in
        # status() until the cycle collector runs.
        self.breaker.addListener(weakListener(self))
        # For status(): written on the failure and state-change paths only.
        self._since = time.time()
        self._lastError: str | None = None
        # A copy of self.repeats.gate (set by it), for the healthy path.
        self._repeatGate = 0
        # The same gate for the count of events a quarantined sink sheds:
        # a flood while quarantined is held back too, not buffered.
        self._shedGate = 0
        # The filter's callbacks reach this sink through a weak proxy: the
        # sink holds its filter, and a sink nobody references must be freed
        # at once (and leave status()), not when the cycle collector runs.
        me = weakref.proxy(self)
        reporter, name = self.reporter, self.name
        self.repeats: RepeatFilter[T] = RepeatFilter(
            policy.repeatBurst if identity is not None else 0,
            policy.repeatInterval,
            identity if identity is not None else EVENTS,  # type: ignore[arg-type]
            self,
            self.name,
            deliver=me,
            drop=lambda n: me._countRepeated(n),
            report=lambda line: me._report(me.reporter.note, line),
            dropped=lambda n: me._report(me.reporter.dropped, me.name, "repeated", n),
            whenGone=lambda n: reporter.dropped(name, "repeated", n),
            # The events that took a cheap path: healthy, or shed.
            position=lambda: accounts.fast.value + accounts.shed.value,
            setGate=lambda gate: me._gateMoved(gate),
            clock=self.breaker.clock,
        )
        register(self)
        #: Seconds a delivery may not return before the sink is reported as
        #: stalled (by the watchdog thread: the delivering thread pays
        #: nothing); 0 turns it off.
        self.stallTimeout = policy.stallTimeout
        self._stall = StallTracker()
        registerForFork(self)
        watchdog.watch(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.breaker.state.value}>"

    @property
    def sink(self) -> Callable[[T], object]:
        """
        The callable this hardens.
        """
        return self._sink

    def delivering(self) -> bool:
        """
        Is the calling thread delivering to the sink right now (so that
        anything it logs is an echo of that delivery)?
        """
        return self._guard.entered()

    # -- delivery -----------------------------------------------------------

    def __call__(self, event: T) -> None:
        # The healthy path, which every event of the process pays for (see
        # benchmarks/run.py): the thread's id, the reentry guard (a set add
        # and discard), one flag checked before and after the call, one
        # counter. It comes first in this code: Twisted's STDLibLogObserver
        # (a bridge) asks each record's caller's line number, which is the
        # frame of this method, and CPython finds it by reading the code's
        # line table from its start to the call, for every record. A
        # quarantined sink with no probe due and nothing being delivered
        # pays a clock read, a few checks, a size estimate and a counter
        # (_shed, inline below). Everything else -- this thread is already
        # delivering (reentry) or another one is, a probe is due, the sink
        # is replaying, a failure run is under way -- is _slowPath's, and
        # error output seen during the call is _afterDelivery's.
        active = self._active
        if not (active or self._degraded):
            tid = currentThread()
            active.add(tid)
            try:
                self._target(event)
            except Exception as error:
                self._guard.exit(tid)
                self._countReceived()
                self._failure(event, error, describeError(error), first=True)
                self._afterSignal()
                return
            except BaseException:
                self._guard.exit(tid)
                self._countReceived()
                self._interrupted()
                self._afterSignal()
                raise
            active.discard(tid)
            if self._degraded:
                self._afterDelivery(event, tid)
                return
            # Received and delivered: one count for both (see
            # SinkAccounts). Identical-event suppression costs one
            # comparison more, until the sink has had more than its burst
            # allowance in an interval.
            if next(self._fastTicks) >= self._repeatGate:
                self._repeatsDue()
            return
        if (
            not active
            and self.breaker.state is _OPEN
            and self._seconds() < self._probeAt
            and not self.repeats.due
        ):
            # Shed: _shed, inline (a quarantined sink pays for this on every
            # event): the event is appended, the oldest making room for it,
            # and counted; _afterShed only when the count reaches the
            # suppression gate, a probe has been let through meanwhile, or
            # there is a fallback.
            size = approximateSize(event)
            if size <= self._slotBytes and not self._bigItems:
                self._buffer.append(event)
                self._sizes.append(size)
            else:
                self._bufferItem(event, size)
            tick = next(self._shedTicks)
            if (
                tick >= self._shedGate
                or self.breaker.state is not _OPEN
                or self.fallback is not None
            ):
                self._afterShed(event, tick)
            return
        self._slowPath(event, currentThread())
        if self._interrupting:
            self._afterSignal()

    def _slowPath(self, event: T, tid: int) -> None:
        """
        An event that cannot take the healthy path.
        """
        if tid in self._active:
            self._reentered(event)
            return
        if self.repeats.due and self._heldBack(event):
            self._settle()
            return
        breaker = self.breaker
        if breaker.state is not _CLOSED and self._seconds() < self._probeAt:
            self._shed(event)
            return
        self._countReceived()
        if breaker.state is not _CLOSED or self._buffer:
            self._quarantined(event)
        else:
            # Closed and nothing buffered: a failure run under way, another
            # thread delivering, or a flag not yet cleared.
            self._deliver(event)
        self._settle()

    def _afterDelivery(self, event: T, tid: int) -> None:
        """
        The sink returned while the sink was degraded: did it write error
        output during the call (a failure), or end a failure run?
        """
        self._countReceived()
        errorSeen = self._guard.errorSeen
        if tid in errorSeen:
            errorSeen.discard(tid)
            self._failure(event, None, _ERROR_OUTPUT, first=True)
        else:
            self._countDelivered()
            self.breaker.success()
            self._settle()
        if self._interrupting:
            self._afterSignal()

    def _degrade(self) -> None:
        with self._lock:
            self._degraded = True

    def _settle(self) -> None:
        """
        Let events take the healthy path again if nothing keeps them off it.
        """
        if self._degraded and self._healthy():
            with self._lock:
                if self._healthy():
                    self._degraded = False

    def _healthy(self) -> bool:
        breaker = self.breaker
        return (
            breaker.state is _CLOSED
            and not breaker.consecutiveFailures
            and not self._buffer
            and not self._guard.errorSeen
            and not self.repeats.due
            and not self._interrupting
        )

    def _gateMoved(self, gate: int) -> None:
        # The healthy path compares its count with this copy of the filter's
        # gate (which counts healthy and shed events), a quarantined sink
        # its count of shed events with the other.
        accounts = self._accounts
        self._repeatGate = gate - accounts.shed.value
        self._shedGate = gate - accounts.fast.value

    def _repeatsDue(self) -> None:
        """
        The L{RepeatFilter} wants to look at the next event: send it (and,
        while an event repeats, every event) down the slow path.
        """
        self.repeats.due = True
        self._degrade()

    def _heldBack(self, event: T) -> bool:
        """
        Ask the L{RepeatFilter} about C{event}. Returns whether it has been
        dealt with here: held back, dropped as an echo of a delivery to this
        sink, or delivered inside the delivery mark.
        """
        verdict = self.repeats.check(event)
        if verdict == DELIVER:
            return False
        if verdict == MARKED and (self.breaker.state is not _CLOSED or self._buffer):
            return False
        self._countReceived()
        if verdict == ECHO:
            self._drops.add(DropReason.reentry)
            self._report(self.reporter.dropped, self.name, DropReason.reentry.value, 1)
            self.repeats.echo(event)
        elif verdict == MARKED:
            # So that what it causes on other threads is known as its echo.
            self._deliver(event, marked=True)
        return True

    def _countRepeated(self, count: int) -> None:
        self._drops.add(DropReason.repeated, count)

    def _deliver(
        self,
        event: T,
        attempt: int = 1,
        early: bool = False,
        size: int | None = None,
        marked: bool = False,
    ) -> bool | None:
        """
        Call the observer once, with the guard up (and the delivery mark, if
        C{marked}); count and report the outcome. Returns whether the
        observer took the event: C{True}, or C{False} if it failed, or
        L{None} if it failed and the event was put back at the head of the
        buffer to be retried.
        """
        guard = self._guard
        tid = guard.enter()
        slowActive = self._slowActive
        slowActive.add(tid)
        try:
            if marked:
                deliverMarked(self, self._target, event)
            else:
                self._target(event)
        except Exception as error:
            guard.exit(tid)
            slowActive.discard(tid)
            return self._failure(event, error, describeError(error), attempt, early, size)
        except BaseException:
            guard.exit(tid)
            slowActive.discard(tid)
            self._interrupted()
            self._afterSignal()
            raise
        slowActive.discard(tid)
        if guard.exit(tid):
            return self._failure(event, None, _ERROR_OUTPUT, attempt, early, size)
        self._countDelivered()
        self.breaker.success()
        return True


# The code of the methods that call the sink (see SinkState._reentered).
HardenedSink._deliveries = frozenset(
    {id(HardenedSink.__call__.__code__), id(HardenedSink._deliver.__code__)}
)

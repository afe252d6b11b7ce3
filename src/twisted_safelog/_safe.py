# -*- test-case-name: tests.test_safe -*-
"""
L{SafeObserver}: an L{ILogObserver} around any observer that can neither
raise into its publisher, nor be re-entered by what it causes, nor cost much
once it is broken.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from twisted.logger import ILogObserver, LegacyLogObserverWrapper, LogEvent
from twisted.python import log as legacyLog
from zope.interface import implementer

from ._accounts import SinkAccounts
from ._breaker import BreakerState, CircuitBreaker, IClock
from ._fork import registerForFork
from ._guard import ReentryGuard, currentThread, looksLikeErrorOutput
from ._policy import DEFAULT_BUFFER_SIZE, Policy
from ._registry import IHardenedSink, isHardened, register
from ._repeats import DELIVER, ECHO, EVENTS, MARKED, Identity, RepeatFilter, deliverMarked
from ._report import IReporter, defaultReporter, describe, releaseName, uniqueName
from ._sizes import approximateSize
from ._stall import StallTracker, watchdog
from ._stats import DropReason, SinkStats
from ._status import stateChanged

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = ["DEFAULT_BUFFER_SIZE", "HardenedSink", "SafeObserver"]

T = TypeVar("T")

_ERROR_OUTPUT = "wrote error output to stderr while being called"
_CLOSED = BreakerState.closed
_OPEN = BreakerState.open
_HALF_OPEN = BreakerState.halfOpen
_NEVER = float("inf")
#: The longest exception text a failure description keeps (reports cap
#: their lines too; this spares formatting megabytes first).
_DESCRIPTION_LIMIT = 2000


def _isLegacyObserver(observer: object) -> bool:
    """
    Is C{observer} a L{twisted.python.log} observer that expects old-style
    event dicts? New-style observers and anything undeclared are not.
    """
    if ILogObserver.providedBy(observer):
        return False
    if legacyLog.ILogObserver.providedBy(observer):
        return True
    owner = getattr(observer, "__self__", None)
    return isinstance(owner, legacyLog._GlobalStartStopObserver)


@implementer(IHardenedSink)
class HardenedSink(Generic[T]):
    """
    The hardening shared by every safe sink: a per-thread reentry guard, a
    L{CircuitBreaker}, a bounded replay buffer, a fallback, out-of-band
    reports and exact counters, around any one-argument callable C{sink}.

    L{SafeObserver} is this around an L{ILogObserver}; L{SafeHandler} uses it
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
     - An item that failed for a reason L{isTransient} recognises (a full
       disk, say) is kept at the head of the buffer and replayed, in order
       and exactly once, when the sink recovers, instead of being counted
       failed.
     - Failures and state changes go to C{reporter} (file descriptor 2 by
       default), never to a publisher, C{sys.stderr} or stdlib logging.
     - L{stats} accounts for every item:
       C{received == delivered + failed + dropped + buffered} when quiet.

    No lock is held while C{sink} or C{fallback} is called, so it is safe to
    call from any number of threads.

    @param policy: the hardening settings (L{Policy}); keyword C{settings}
        (C{failureThreshold=3}, ...) override its fields. An unknown setting
        is a C{TypeError}, a nonsensical value a L{ConfigurationError}, both
        raised here.
    @param name: what reports and L{stats} call the sink.
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
        "__dict__",
        "__weakref__",
        "_active",
        "_bigItems",
        "_buffer",
        "_countShed",
        "_degraded",
        "_fastTicks",
        "_probeAt",
        "_repeatGate",
        "_seconds",
        "_sizes",
        "_slotBytes",
        "_target",
        "breaker",
        "fallback",
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
        self._target = sink
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
        #: is only buffered and counted (L{_shed}).
        self._probeAt = 0.0
        self._seconds = self.breaker.clock.seconds
        self._accounts = accounts = SinkAccounts()
        self._drops = accounts.drops
        self._fastTicks = accounts.fast.ticks
        self._countShed = accounts.shed.increment
        self._countReceived = accounts.received.increment
        self._countDelivered = accounts.delivered.increment
        # Weakly: a sink nobody references is freed at once, not left in
        # status() until the cycle collector runs.
        self.breaker.addListener(_weakListener(self))
        # For status(): written on the failure and state-change paths only.
        self._since = time.time()
        self._lastError: str | None = None
        # A copy of self.repeats.gate (set by it), for the healthy path.
        self._repeatGate = 0
        self.repeats: RepeatFilter[T] = RepeatFilter(
            policy.repeatBurst if identity is not None else 0,
            policy.repeatInterval,
            identity if identity is not None else EVENTS,  # type: ignore[arg-type]
            self,
            self.name,
            deliver=self,
            drop=self._countRepeated,
            report=lambda line: self._report(self.reporter.note, line),
            dropped=lambda n: self._report(self.reporter.dropped, self.name, "repeated", n),
            position=lambda: accounts.fast.value,
            setGate=self._gateMoved,
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
        return self._target

    @property
    def buffered(self) -> int:
        """
        How many items wait in the replay buffer.
        """
        return len(self._buffer)

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
        # counter. Everything else -- this thread is already delivering
        # (reentry) or another one is, the sink is quarantined or replaying,
        # a failure run is under way -- is _slowPath's, and error output
        # seen during the call is _afterDelivery's.
        tid = currentThread()
        active = self._active
        if active or self._degraded:
            self._slowPath(event, tid)
            return
        active.add(tid)
        try:
            self._target(event)
        except Exception as error:
            self._guard.exit(tid)
            self._countReceived()
            self._failure(event, error, _describeError(error), first=True)
            return
        except BaseException:
            self._guard.exit(tid)
            self._countReceived()
            self._interrupted()
            raise
        active.discard(tid)
        if self._degraded:
            self._afterDelivery(event, tid)
            return
        # Received and delivered: one count for both (see SinkAccounts).
        # Identical-event suppression costs one comparison more, until the
        # sink has had more than its burst allowance in an interval.
        if next(self._fastTicks) >= self._repeatGate:
            self._repeatsDue()

    def _slowPath(self, event: T, tid: int) -> None:
        """
        An event that cannot take the healthy path.
        """
        if tid in self._active:
            self._countReceived()
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
            return
        self._countDelivered()
        self.breaker.success()
        self._settle()

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
        )

    def _shed(self, event: T) -> None:
        """
        Quarantined with no probe due: the price of a size estimate and a
        counter. The event goes to the buffer (oldest items dropped to make
        room, in events and in bytes), one count says so, and nothing is
        reported: drops are reported together, with exact counts, at the
        next state change (L{_reportDrops}).
        """
        size = approximateSize(event)
        if size <= self._slotBytes and not self._bigItems:
            self._buffer.append(event)
            self._sizes.append(size)
        else:
            self._bufferItem(event, size)
        self._countShed()
        fallback = self.fallback
        if fallback is not None:
            fallback(event)

    def _bufferItem(self, item: T | _Retry[T], size: int) -> None:
        """
        Append C{item} to the replay buffer, dropping the oldest items until
        it fits in C{bufferSize} items and C{bufferBytes} bytes; an item
        larger than C{bufferBytes} on its own is not kept. (What is put in
        and neither taken out nor still there is counted as an overflow
        drop: see L{SinkAccounts}.)
        """
        if not self.bufferSize or size > self.bufferBytes:
            return
        buffer = self._buffer
        sizes = self._sizes
        with self._lock:
            total = sum(sizes)
            while buffer and (len(buffer) >= self.bufferSize or total + size > self.bufferBytes):
                buffer.popleft()
                total -= sizes.popleft() if sizes else 0
            buffer.append(item)
            sizes.append(size)
            slot = self._slotBytes
            self._bigItems = sum(1 for each in sizes if each > slot)

    @property
    def bufferedBytes(self) -> int:
        """
        The estimated size of what waits in the replay buffer, in bytes.
        """
        return sum(self._sizes)

    def _gateMoved(self, gate: int) -> None:
        # The healthy path compares with this copy of the filter's gate.
        self._repeatGate = gate

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
            return self._failure(event, error, _describeError(error), attempt, early, size)
        except BaseException:
            guard.exit(tid)
            slowActive.discard(tid)
            self._interrupted()
            raise
        slowActive.discard(tid)
        if guard.exit(tid):
            return self._failure(event, None, _ERROR_OUTPUT, attempt, early, size)
        self._countDelivered()
        self.breaker.success()
        return True

    def _interrupted(self) -> None:
        """
        A C{BaseException} (C{KeyboardInterrupt}, C{SystemExit}) came out of
        the observer. Not the sink's fault, but the event did not arrive, and
        a probe in flight must be settled or no other would follow.
        """
        self._accounts.failed.increment()
        if self.breaker.state is _HALF_OPEN:
            self.breaker.failure()

    def _reentered(self, event: T) -> None:
        self._drops.add(DropReason.reentry)
        if looksLikeErrorOutput(event):  # type: ignore[arg-type]
            self._guard.sawErrorOutput()
            self._degrade()
        self._report(self.reporter.dropped, self.name, DropReason.reentry.value, 1)

    def isTransient(self, error: BaseException) -> bool:
        """
        Did the sink fail for a passing reason that says nothing about the
        item (a full disk, a missing directory)? Such an item is kept for
        replay without using up an attempt. Nothing is, here; the file sinks
        recognise their transient C{OSError}s.

        @param error: the exception the sink raised.
        """
        return False

    def _failure(
        self,
        event: T,
        error: BaseException | None,
        description: str,
        attempt: int = 1,
        early: bool = False,
        size: int | None = None,
        first: bool = False,
    ) -> bool | None:
        """
        Count, report and settle a failed delivery; returns C{False}, or
        L{None} if the event was put back in the buffer for a retry.
        """
        self._lastError = description
        transient = False
        if error is not None:
            try:
                transient = self.isTransient(error)
            except Exception:
                pass
        requeued = (transient or (self.retryFailed and attempt < self.maxAttempts)) and (
            self._requeue(event, attempt - 1 if transient else attempt, size)
        )
        if not requeued:
            # Counted before the breaker hears of it, so that the state
            # change report's counts include this failure.
            self._accounts.failed.increment()
        # An OSError (a disk, a socket) or error output is the sink's own
        # trouble, not the item's: no point probing early with other items.
        self.breaker.failure(
            itemFault=not (error is None or transient or isinstance(error, OSError))
        )
        self._degrade()
        self._report(self.reporter.failure, self.name, error, description)
        if self.fallback is not None and (first or not requeued):
            self.fallback(event)
        return None if requeued else False

    def _requeue(self, event: T, attempts: int, size: int | None = None) -> bool:
        """
        Put a failed item back at the head of the buffer, to be retried
        first; C{False} if the buffer is full (or there is none).
        """
        if size is None:
            size = approximateSize(event)
        with self._lock:
            if len(self._buffer) >= self.bufferSize or sum(self._sizes) + size > self.bufferBytes:
                return False
            self._buffer.appendleft(_Retry(event, attempts))
            self._sizes.appendleft(size)
            if size > self._slotBytes:
                self._bigItems += 1
            self._accounts.queued.increment()
            return True

    def _quarantined(self, event: T) -> None:
        """
        The breaker is not closed and a probe may be due, or events wait in
        the buffer and must keep their order.
        """
        if not self.bufferSize:
            if self.breaker.allow():
                self._deliver(event)
            else:
                self._drops.add(DropReason.quarantine)
                if self.fallback is not None:
                    self.fallback(event)
            return
        size = approximateSize(event)
        if size <= self._slotBytes and not self._bigItems:
            self._buffer.append(event)
            self._sizes.append(size)
        else:
            self._bufferItem(event, size)
        self._accounts.queued.increment()
        self.drain()
        # After the drain: if a probe succeeded the event has been delivered
        # and the fallback does not need it.
        if self.fallback is not None and self.breaker.state is not _CLOSED:
            self.fallback(event)

    def drain(self) -> None:
        """
        Replay buffered events to the observer, oldest first, for as long as
        the breaker allows. Called on every event that arrives while events
        are buffered and a probe may be due; call it yourself (from a
        C{LoopingCall}, say) to replay without waiting for the next event.
        Only one thread drains at a time.
        Summaries of held-back identical events that are due are delivered
        first.
        """
        if self.repeats.watching:
            self.repeats.flush()
        lock = self._lock
        buffer = self._buffer
        breaker = self.breaker
        with lock:
            if self._draining or not buffer:
                return
            self._draining = True
        try:
            while True:
                if not breaker.allow():
                    break
                early = breaker.probingEarly
                with lock:
                    # Checked again under the lock: close() (or an overflow)
                    # may have emptied the buffer since.
                    if buffer:
                        item = buffer.popleft()
                        size = self._sizes.popleft() if self._sizes else 0
                        if size > self._slotBytes and self._bigItems:
                            self._bigItems -= 1
                        self._accounts.unqueued.increment()
                    else:
                        self._draining = False
                        item = _NOTHING
                if item is _NOTHING:
                    # A probe we were given must not be kept with nothing to
                    # try, or the breaker would stay half-open for ever.
                    breaker.release()
                    self._probeAt = 0.0
                    break
                if isinstance(item, _Retry):
                    event, attempts = item.event, item.attempts
                else:
                    event, attempts = item, 0
                outcome = self._deliver(event, attempts + 1, early, size)
                if outcome is None or (outcome is False and self.retryFailed):
                    # Retried at the next event (or drain), not in a hot loop.
                    break
        finally:
            with lock:
                self._draining = False
        self._settle()

    def _reportDrops(self, stats: SinkStats | None = None) -> None:
        """
        Report the drops not reported yet, one line per reason with its
        exact count (reentry drops are reported as they happen).
        """
        pending = self._accounts.unreported(self.stats() if stats is None else stats)
        for reason, count in pending:
            self._report(self.reporter.dropped, self.name, reason, count)

    def _report(self, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:
            # The reporter is the last resort; if it breaks there is nowhere
            # safe to say so, and the caller must not see it (guarantee 1).
            pass

    def _stateChanged(self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        if new is _OPEN:
            # Early probes (see CircuitBreaker) are due at once.
            self._probeAt = 0.0 if breaker.earlyProbesLeft else breaker.retryAt
        elif new is _HALF_OPEN:
            self._probeAt = _NEVER
        if new is not _CLOSED:
            self._degrade()
        if old is _CLOSED or new is _CLOSED:
            # Since when it is quarantined (or healthy again): the probes of
            # one quarantine (open <-> half-open) do not move it.
            self._since = time.time()
        try:
            self._reportStateChange(breaker, old, new)
        finally:
            stateChanged()

    def _reportStateChange(
        self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState
    ) -> None:
        now = breaker.clock.seconds()
        stats = self.stats()
        self._reportDrops(stats)
        counts = stats.summary()
        if new is _OPEN and old is _CLOSED:
            detail = (
                f"quarantined after {breaker.consecutiveFailures} consecutive "
                f"failures; next probe in {breaker.currentTimeout:g}s ({counts})"
            )
        elif new is _OPEN:
            detail = (
                f"probe failed; still quarantined, next probe in "
                f"{breaker.currentTimeout:g}s ({counts})"
            )
        elif new is _HALF_OPEN:
            detail = f"probing after {now - breaker.openedAt:.3g}s in quarantine ({counts})"
        else:
            detail = (
                f"restored after {now - breaker.openedAt:.3g}s; replaying "
                f"{len(self._buffer)} buffered events ({counts})"
            )
        self._report(self.reporter.stateChanged, self.name, old.value, new.value, detail)

    # -- lifecycle ------------------------------------------------------------

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        """
        A forked child starts clean: a new lock, no drain in progress, no
        thread that is gone marked as delivering. Deliveries that were in
        flight on those threads, and (unless C{keepPending}) the replay
        buffer, belong to the parent: counted here as dropped (C{"fork"}).
        """
        self._lock = threading.RLock()
        self._draining = False
        # The breaker may have given back a probe in flight on a thread that
        # is gone: let the next event ask it.
        self._probeAt = 0.0
        self._stall = StallTracker()
        # A delivery on the healthy path is counted as received when it
        # ends; one that never will is counted here.
        me = currentThread()
        for _ in self._guard.active - self._slowActive - {me}:
            self._countReceived()
        self._slowActive.intersection_update({me})
        gone = self._guard.forgetOtherThreads()
        buffered = 0
        if not keepPending:
            buffered = len(self._buffer)
            self._buffer.clear()
            self._sizes.clear()
            self._bigItems = 0
            for _ in range(buffered):
                self._accounts.unqueued.increment()
        if gone + buffered:
            # Not lost: the parent delivers them. Counted so that this
            # process's accounts balance; not reported, as a healthy
            # application that forks while a thread logs must not see a
            # line of ours (nor a child that only forks to exec).
            self._drops.add(DropReason.fork, gone + buffered)
        return None

    def _checkStall(self, now: float) -> None:
        """
        The watchdog's sample: a delivery in progress and none ended for
        C{stallTimeout} seconds is reported once as stalled.
        """
        line = self._stall.sample(
            now,
            bool(self._guard.active),
            self._accounts.ended(),
            self.stallTimeout,
        )
        if line is not None:
            # Stalled, or resumed: status files and metrics hear of it as
            # of a state change.
            self._since = time.time()
            self._report(self.reporter.note, f"sink {self.name} {line}")
            stateChanged()

    # -- accounting ---------------------------------------------------------

    def stats(self) -> SinkStats:
        """
        An immutable snapshot of this observer's counters and state (the
        breaker's; C{stalledFor} says whether a delivery is stalled).
        """
        return self._accounts.snapshot(
            self.name,
            self.breaker.state,
            len(self._buffer),
            self.bufferSize > 0,
            since=self._since,
            lastError=self._lastError,
            stalledFor=self._stall.stalledFor(time.monotonic()),
        )

    def close(self) -> None:
        """
        Replay what the breaker allows, then drop whatever is still buffered
        with reason C{"shutdown"}, and report the drops not reported yet.
        """
        self.drain()
        with self._lock:
            remaining = len(self._buffer)
            self._buffer.clear()
            self._sizes.clear()
            self._bigItems = 0
            for _ in range(remaining):
                self._accounts.unqueued.increment()
            self._drops.add(DropReason.shutdown, remaining)
        self._reportDrops()
        watchdog.unwatch(self)
        # A sink alike made after this one may have the plain name again.
        releaseName(self.name, self)
        self._report(self.reporter.flush)


class _Retry(Generic[T]):
    """
    A buffered item whose delivery failed C{attempts} times (retryFailed).
    """

    __slots__ = ("attempts", "event")

    def __init__(self, event: T, attempts: int) -> None:
        self.event = event
        self.attempts = attempts


#: What drain() pops from a buffer that was emptied under it.
_NOTHING: Any = object()


def _weakListener(
    sink: HardenedSink[Any],
) -> Callable[[CircuitBreaker, BreakerState, BreakerState], None]:
    """
    A breaker listener that calls C{sink._stateChanged} while the sink is
    alive, without keeping it alive (its breaker is its own).
    """
    reference = weakref.ref(sink)

    def listener(breaker: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        alive = reference()
        if alive is not None:
            alive._stateChanged(breaker, old, new)

    return listener


def _describeError(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "<exception with a broken __str__>"
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[:_DESCRIPTION_LIMIT] + f"... [{len(text) - _DESCRIPTION_LIMIT} characters cut]"
    name = type(error).__qualname__
    return f"{name}: {text}" if text else name


@implementer(ILogObserver)
class SafeObserver(HardenedSink[LogEvent]):
    """
    An L{ILogObserver} around any observer, with every guarantee of
    L{HardenedSink}: it never raises into its publisher (so Twisted's
    "Temporarily disabling observer" re-emission never happens), it is never
    re-entered by what it causes, and once broken it is quarantined, its
    events buffered for replay, and the breakage reported out of band.
    The parameters not listed here are L{HardenedSink}'s.

    @param observer: a new-style L{ILogObserver}, or a legacy
        L{twisted.python.log} observer (detected, or forced with
        C{legacy=True}), which is adapted with L{LegacyLogObserverWrapper}.
    @param fallback: an observer that also receives the events this one
        cannot take (quarantined or failed); it is wrapped in a
        L{SafeObserver} of its own (same policy, no buffer) unless it is one.
    @param legacy: C{True} to adapt C{observer} as a legacy observer, C{False} never to, L{None} to
        detect it.
    """

    def __init__(
        self,
        observer: ILogObserver | Callable[[LogEvent], None],
        policy: Policy | None = None,
        *,
        name: str | None = None,
        fallback: ILogObserver | Callable[[LogEvent], None] | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
        legacy: bool | None = None,
        **settings: Unpack[PolicySettings],
    ) -> None:
        if not callable(observer):
            raise TypeError(f"SafeObserver needs a callable observer, not {observer!r}")
        policy = Policy.of(policy, settings, "SafeObserver()")
        if legacy or (legacy is None and _isLegacyObserver(observer)):
            observer = LegacyLogObserverWrapper(observer)  # type: ignore[arg-type]
        self.observer = observer
        name = name if name is not None else uniqueName(describe(observer), self)
        reporter = defaultReporter() if reporter is None else reporter
        if fallback is not None and not isHardened(fallback):
            fallback = SafeObserver(
                fallback,
                policy.replace(bufferSize=0),
                name=f"{name} (fallback)",
                reporter=reporter,
                clock=clock,
            )
        super().__init__(
            observer,
            policy,
            name=name,
            fallback=fallback,
            reporter=reporter,
            clock=clock,
            identity=EVENTS,
        )

# -*- test-case-name: tests.test_safe -*-
"""
What a L{HardenedSink} does when a delivery fails, what it says (drops,
failures, state changes, stalls), its statistics, and what it does at a fork
and at close.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._breaker import BreakerState, CircuitBreaker
from ._guard import currentThread, looksLikeErrorOutput
from ._report import releaseName
from ._signals import afterSignal, interruptedDelivery
from ._stall import StallTracker, watchdog
from ._stats import DropReason, SinkStats
from ._status import stateChanged

if TYPE_CHECKING:
    from collections import deque

    from ._accounts import SinkAccounts
    from ._guard import ReentryGuard
    from ._hardened import HardenedSink
    from ._report import IReporter
    from ._stats import Drops

__all__ = ["SinkState", "describeError", "weakListener"]

T = TypeVar("T")

_CLOSED = BreakerState.closed
_OPEN = BreakerState.open
_HALF_OPEN = BreakerState.halfOpen
_NEVER = float("inf")
#: The longest exception text a failure description keeps (reports cap
#: their lines too; this spares formatting megabytes first).
_DESCRIPTION_LIMIT = 2000


class SinkState(Generic[T]):
    """
    The failures, reports, statistics and lifecycle of L{HardenedSink} (a mixin: the
    state it uses is L{HardenedSink}'s, set up by its constructor).
    """

    if TYPE_CHECKING:
        name: str
        reporter: IReporter
        breaker: CircuitBreaker
        bufferSize: int
        stallTimeout: float
        _buffer: deque[Any]
        _sizes: deque[int]
        _bigItems: int
        _bufferedTotal: int
        _draining: bool
        _lock: threading.RLock
        _accounts: SinkAccounts
        _drops: Drops
        _guard: ReentryGuard
        _slowActive: set[int]
        _probeAt: float
        _since: float
        _lastError: str | None
        _stall: StallTracker
        _countReceived: Callable[[], object]
        _active: set[int]
        _interrupting: deque[T]
        retryFailed: bool
        maxAttempts: int
        fallback: Callable[[T], object] | None

        def _degrade(self) -> None: ...

        def __call__(self, event: T) -> None: ...

        def drain(self) -> None: ...

        def _requeue(self, event: T, attempts: int, size: int | None = None) -> bool: ...

    def _interrupted(self) -> None:
        """
        A C{BaseException} (C{KeyboardInterrupt}, C{SystemExit}) came out of
        the observer. Not the sink's fault, but the event did not arrive, and
        a probe in flight must be settled or no other would follow.
        """
        self._accounts.failed.increment()
        if self.breaker.state is _HALF_OPEN:
            self.breaker.failure()

    #: The code of the methods that call the sink, by identity (set by
    #: L{HardenedSink}).
    _deliveries: frozenset[int] = frozenset()

    def _reentered(self, event: T) -> None:
        """
        C{event} reached the sink on a thread that is delivering to it:
        caused by that delivery, it is dropped (C{"reentry"}); logged by a
        signal handler that interrupted it (twistd's SIGTERM handler), it is
        delivered once that delivery returns (L{_afterSignal}).
        """
        if interruptedDelivery(self, self._deliveries):
            self._interrupting.append(event)
            self._degrade()
            return
        self._countReceived()
        self._drops.add(DropReason.reentry)
        if looksLikeErrorOutput(event):  # type: ignore[arg-type]
            self._guard.sawErrorOutput()
            self._degrade()
        self._report(self.reporter.dropped, self.name, DropReason.reentry.value, 1)

    def _afterSignal(self) -> None:
        """
        Deliver the events signal handlers logged during deliveries on this
        thread, unless it is still inside one. (Not counted until then: a
        delivery that never returns holds them, as it holds its own event.)
        """
        afterSignal(self._interrupting, self, self._active)

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
        # Held by a thread that is gone, it would hang stats() for ever.
        self._accounts.reportLock = threading.RLock()
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
        if me not in self._guard.active:
            # Held for a delivery on a thread that is gone (not counted
            # yet): the parent delivers them.
            self._interrupting.clear()
        self._slowActive.intersection_update({me})
        gone = self._guard.forgetOtherThreads()
        buffered = 0
        if not keepPending:
            buffered = self._emptyBuffer()
        # Not lost: the parent delivers them. Counted so that this
        # process's accounts balance; not reported, as a healthy
        # application that forks while a thread logs must not see a line
        # of ours (nor a child that only forks to exec).
        self._drops.add(DropReason.fork, gone + buffered)
        self._drops.add(DropReason.fork, self._settleCountsAfterFork(me))
        return None

    def _settleCountsAfterFork(self, me: int) -> int:
        """
        The events other threads had half counted when the process forked
        (counted as received, their outcome not yet; or appended to the
        buffer, their count not yet) will never be counted the rest of the
        way here: complete their counts so that this process's accounts
        balance. Returns how many were received and left without an outcome
        (dropped: C{"fork"}, by the caller).
        """
        accounts = self._accounts
        # A snapshot of the parent's shown nothing here: this is a new
        # process, whose counters start from what it inherited.
        accounts.overflowShown = 0
        if self.bufferSize:
            appended = len(self._buffer) - (
                accounts.shed.value + accounts.queued.value - accounts.unqueued.value
            )
            for _ in range(max(appended, 0)):
                accounts.queued.increment()
        stats = self.stats()
        pending = stats.received - (stats.delivered + stats.failed + stats.dropped + stats.buffered)
        # This thread's own delivery on the slow path, if it forked from
        # inside one, is counted when it returns.
        pending -= 1 if me in self._slowActive else 0
        for _ in range(max(-pending, 0)):
            self._countReceived()
        return max(pending, 0)

    def _emptyBuffer(self) -> int:
        """
        Take the items in the replay buffer out, each counted out before it
        leaves (not a C{clear()}: an item appended without the lock after
        the length was read would go uncounted); returns how many. Items
        appended meanwhile may stay, counted as buffered. Called with the
        lock held.
        """
        buffer = self._buffer
        unqueued = self._accounts.unqueued.increment
        taken = len(buffer)
        for _ in range(taken):
            unqueued()
            buffer.popleft()
        self._sizes.clear()
        self._bigItems = 0
        self._bufferedTotal = 0
        return taken

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
            self._buffer,
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
            remaining = self._emptyBuffer()
            self._drops.add(DropReason.shutdown, remaining)
        self._reportDrops()
        watchdog.unwatch(self)
        # A sink alike made after this one may have the plain name again.
        releaseName(self.name, self)
        self._report(self.reporter.flush)


def weakListener(
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


def describeError(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = "<exception with a broken __str__>"
    if len(text) > _DESCRIPTION_LIMIT:
        text = text[:_DESCRIPTION_LIMIT] + f"... [{len(text) - _DESCRIPTION_LIMIT} characters cut]"
    name = type(error).__qualname__
    return f"{name}: {text}" if text else name

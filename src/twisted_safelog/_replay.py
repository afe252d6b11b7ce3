# -*- test-case-name: tests.test_safe -*-
"""
The replay buffer of a L{HardenedSink}: where items wait, bounded in items
and in bytes, while the sink is quarantined or replaying, and how they are
replayed in order once it recovers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._breaker import BreakerState
from ._sizes import approximateSize
from ._stats import DropReason

if TYPE_CHECKING:
    import threading

    from ._accounts import SinkAccounts
    from ._breaker import CircuitBreaker
    from ._repeats import RepeatFilter
    from ._stats import Drops

__all__ = ["ReplayBuffer"]

T = TypeVar("T")

_CLOSED = BreakerState.closed
_OPEN = BreakerState.open


class ReplayBuffer(Generic[T]):
    """
    The replay buffer's part of L{HardenedSink} (a mixin: the state it uses
    is L{HardenedSink}'s, set up by its constructor).
    """

    if TYPE_CHECKING:
        _buffer: deque[T | _Retry[T]]
        _sizes: deque[int]
        _slotBytes: int
        _bigItems: int
        _bufferedTotal: int
        _untilRecount: int
        _draining: bool
        _lock: threading.RLock
        _accounts: SinkAccounts
        _shedTicks: Iterator[int]
        _shedGate: int

        def _repeatsDue(self) -> None: ...

        _drops: Drops
        _degraded: bool
        _probeAt: float
        bufferSize: int
        bufferBytes: int
        retryFailed: bool
        breaker: CircuitBreaker
        fallback: Callable[[T], object] | None
        repeats: RepeatFilter[T]

        def _deliver(
            self,
            event: T,
            attempt: int = 1,
            early: bool = False,
            size: int | None = None,
            marked: bool = False,
        ) -> bool | None: ...

        def _settle(self) -> None: ...

        def _degrade(self) -> None: ...

        _interrupting: deque[T]

        def _afterSignal(self) -> None: ...

    @property
    def buffered(self) -> int:
        """
        How many items wait in the replay buffer.
        """
        return len(self._buffer)

    def _shed(self, event: T) -> None:
        """
        Quarantined with no probe due: the event goes to the buffer
        (C{_keep}: the oldest items make room for it); one count says so
        (see C{SinkAccounts}), and nothing is reported: drops are reported
        together, with exact counts, at the next state change
        (C{_reportDrops}). L{HardenedSink.__call__} does the same inline.
        """
        self._keep(event)
        tick = next(self._shedTicks)
        if tick >= self._shedGate or self.breaker.state is not _OPEN or self.fallback is not None:
            self._afterShed(event, tick)

    def _afterShed(self, event: T, tick: int) -> None:
        """
        What follows the append of a shed event, its count C{tick}, when
        there is anything to do.
        """
        # Past the gate, suppression looks at the next events (a flood's
        # copies are then held back instead of filling the buffer).
        if tick >= self._shedGate:
            self.repeats.due = True
            if not self._degraded:
                # (Quarantined, it nearly always is already: no lock then.)
                self._repeatsDue()
        if self.breaker.state is not _OPEN:
            # The sink was probed (and may have recovered and replayed the
            # buffer) since this event was found quarantined: a replay that
            # ended before the append would leave it behind, buffered while
            # later events are delivered. Replay it now.
            self._degrade()
            self.drain()
            if self.breaker.state is _CLOSED:
                return
        fallback = self.fallback
        if fallback is not None:
            fallback(event)

    def _keep(self, item: T) -> None:
        """
        Append C{item} to the replay buffer, the oldest items dropped to
        make room for it in C{bufferSize} items and C{bufferBytes} bytes
        (the buffer keeps the newest: overflow drops the oldest). The caller
        counts the item as put in: what is counted in and neither taken out
        nor still there is an overflow drop (see C{SinkAccounts}).
        """
        size = approximateSize(item)
        if size <= self._slotBytes and not self._bigItems:
            # Within its share of bufferBytes, as every buffered item is:
            # the deques' maxlen pushes the oldest out, without the lock.
            self._buffer.append(item)
            self._sizes.append(size)
        else:
            self._bufferItem(item, size)

    def _bufferItem(self, item: T, size: int) -> None:
        """
        Append C{item}, whose estimated size is C{size}, under the lock,
        dropping the oldest items until it fits in C{bufferSize} items and
        C{bufferBytes} bytes; an item larger than C{bufferBytes} on its own
        is not kept.
        """
        if not self.bufferSize or size > self.bufferBytes:
            return
        buffer = self._buffer
        sizes = self._sizes
        slot = self._slotBytes
        with self._lock:
            self._untilRecount -= 1
            if not self._bigItems or self._untilRecount <= 0:
                # Counted when the first big item comes (until then no total
                # is kept) and once every bufferSize items after that: an
                # append without the lock racing with the first big item's
                # may have pushed an item out unseen (the count then errs
                # high, which only drops a little early). In between the
                # total and the big items are kept up to date here, so that
                # each item costs the same with a big one buffered as
                # without (a sum over the buffer for every event made it 50
                # times dearer).
                self._bufferedTotal, self._bigItems = _count(sizes, slot)
                self._untilRecount = self.bufferSize
            total = self._bufferedTotal
            big = self._bigItems
            while buffer and (len(buffer) >= self.bufferSize or total + size > self.bufferBytes):
                buffer.popleft()
                if sizes:
                    gone = sizes.popleft()
                    total -= gone
                    big -= gone > slot
            buffer.append(item)
            sizes.append(size)
            self._bufferedTotal = total + size
            self._bigItems = max(big + (size > slot), 0)

    @property
    def bufferedBytes(self) -> int:
        """
        The estimated size of what waits in the replay buffer, in bytes.
        """
        return sum(self._sizes)

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
            self._bufferedTotal += size
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
        self._keep(event)
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
                        # Counted out before it leaves, so that a snapshot
                        # taken meanwhile never counts it as dropped (see
                        # SinkAccounts.snapshot).
                        self._accounts.unqueued.increment()
                        item = buffer.popleft()
                        size = self._sizes.popleft() if self._sizes else 0
                        self._bufferedTotal -= size
                        if size > self._slotBytes and self._bigItems:
                            self._bigItems -= 1
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
        if self._interrupting:
            # Logged by a signal handler during a replayed delivery.
            self._afterSignal()


def _count(sizes: deque[int], slot: int) -> tuple[int, int]:
    """
    The total of C{sizes} and how many of them are over C{slot}.

    Other threads append to C{sizes} without the lock meanwhile, so it is
    counted in a snapshot (iterating the deque itself raised C{RuntimeError:
    deque mutated during iteration} into the caller, and the event went
    uncounted), and the snapshot is taken again if even that meets an
    append. Should it keep meeting them, the count errs high (never 0 big
    items), which only sends appends through the lock until the next count.
    """
    for _ in range(3):
        try:
            snapshot = tuple(sizes)
        except RuntimeError:
            continue
        return sum(snapshot), sum([each > slot for each in snapshot])
    return len(sizes) * slot, max(len(sizes), 1)


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

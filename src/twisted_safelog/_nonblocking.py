# -*- test-case-name: tests.test_nonblocking -*-
"""
L{NonBlockingObserver}: hand events to one worker thread through a bounded
queue, so that a sink that blocks (an NFS file, a stalled syslog or network
collector) never makes the reactor wait.

Every event is accounted for, as in L{SafeObserver}:
C{received == delivered + failed + dropped + buffered} when quiet, where
C{buffered} is what waits in the queue and every drop has a reason
(C{overflow}, C{discarded}, C{reentry}, C{shutdown}, C{fork}).
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from twisted.logger import ILogObserver, LogEvent, LogLevel
from zope.interface import implementer

from ._breaker import IClock, MonotonicClock
from ._compat import StringEnum
from ._fork import quiesceForFork, registerForFork
from ._guard import currentThread
from ._nbshutdown import QueueShutdown, _instances
from ._nbworker import WorkerLifecycle
from ._prequeue import Marked, PreQueueSuppression
from ._registry import IHardenedSink, register
from ._report import IReporter, defaultReporter
from ._safe import HardenedSink, SafeObserver
from ._stall import DEFAULT_STALL_TIMEOUT
from ._stats import Counter, DropReason, Drops, SinkStats
from ._worker import Channel

__all__ = ["NonBlockingObserver", "OverflowPolicy"]


class OverflowPolicy(StringEnum):
    """
    What a L{NonBlockingObserver} does with an event when its queue is full.
    """

    #: Drop the event that just arrived (log4j2's and logback's default).
    dropNewest = "drop-newest"
    #: Drop the oldest queued event to make room.
    dropOldest = "drop-oldest"
    #: Wait up to C{blockTimeout} seconds for room, then drop the newest.
    block = "block"


_LEVEL_ORDER = {level: n for n, level in enumerate(LogLevel.iterconstants())}


@implementer(ILogObserver, IHardenedSink)
class NonBlockingObserver(PreQueueSuppression, WorkerLifecycle, QueueShutdown):
    """
    Deliver events to C{observer} from one worker thread.

    The caller only appends a shallow copy of the event to a bounded queue
    (the copy because other observers may mutate the shared dict; values
    inside it are shared, so a mutable value changed after logging is seen
    changed by the sink), without taking the queue's lock while it is less
    than half full. While events come at C{BATCH_RATE} (500 a second) or
    faster, the worker, its queue empty, waits up to C{BATCH_WAIT} (10 ms)
    for more instead of sleeping until woken, so that a steady stream does
    not wake it for every event (each wake-up is a context switch and a
    hand-over of the GIL the caller pays for); a line then reaches the sink
    up to 10 ms after it was logged. When the queue is full, C{policy} decides (see
    L{OverflowPolicy}); with C{discardThreshold} (a fraction of
    C{maxQueue}), events at or below C{discardLevel} are discarded first
    once the queue is that full, as logback's AsyncAppender does.

    C{observer} is wrapped in a L{SafeObserver} unless it already is a
    hardened sink, so the worker survives a sink that raises. The worker is
    started lazily by the first event, or with C{start=False} only when
    L{start} is called (events are delivered on the caller's thread until
    then: the twistd factory starts it once the reactor runs, after twistd
    has daemonized). It is started again if it ends or after a fork; if it
    cannot start (C{RuntimeError: can't start new thread}), events are
    delivered on the caller's thread, still hardened, the failure is counted
    (L{startFailures}) and reported, and starting is tried again a second
    later. While idle it replays a quarantined sink's buffer once the
    sink's breaker allows.

    Identical-event suppression happens here, before the queue, on the
    caller's thread, with the wrapped sink's C{repeatBurst} and
    C{repeatInterval} (its own filter is turned off): a flood's copies beyond
    the allowance are never queued, so they cannot overflow the queue (see
    L{twisted_safelog._prequeue}).

    Events the worker thread itself causes while delivering (a handler's
    error written to a redirected C{sys.stderr}, a sink that logs) are not
    queued again: they are dropped with reason C{"reentry"}.

    Every wait has a deadline. At reactor shutdown and at interpreter exit
    the queue is flushed for up to C{flushTimeout} seconds, and not at all
    once the delivery in progress has not returned for C{stallTimeout}
    seconds; what is left is counted as dropped (C{"shutdown"}) and reported
    in one line (L{twisted_safelog._nbshutdown.QueueShutdown.shutdown}).
    Later events are still handed to the worker, and the caller waits (up to
    C{flushTimeout}) until they are written, so twistd's last lines reach
    the sink before the process ends; once the worker is stuck, they are
    dropped (C{"shutdown"}) at once, never delivered into the stuck sink on
    the caller's thread.

    After C{os.fork()} the child starts with a fresh lock and no worker; the
    events queued or in flight at the fork are the parent's to deliver and
    are counted in the child as dropped (C{"fork"}), see
    L{twisted_safelog._fork}.

    An observer nobody references any more is collected; its worker then
    delivers what was queued and ends.
    L{twisted_safelog._nbshutdown.QueueShutdown.close} ends it at once.

    @param observer: the sink the worker delivers to (hardened with L{SafeObserver} unless it is a
        hardened sink).
    @param maxQueue: the most events queued at once.
    @param policy: what a full queue does with an event (L{OverflowPolicy}, or its value as a
        string).
    @param blockTimeout: with L{OverflowPolicy.block}, the longest wait for room, in seconds.
    @param discardThreshold: the fraction of C{maxQueue} from which events at or below
        C{discardLevel} are discarded; L{None}: never.
    @param discardLevel: the highest level discarded first (a C{LogLevel}).
    @param flushTimeout: the longest wait, in seconds, for the queue to drain at shutdown and exit.
    @param stallTimeout: seconds after which a delivery that has not returned is reported stalled
        (the L{Policy} default if L{None}).
    @param start: start the worker with the first event; C{False}: only when L{start} is called.
    @param name: what reports and L{stats} call it.
    @param reporter: where losses and failures are reported (the default reporter if L{None}).
    @param clock: provides C{seconds()}; a monotonic clock by default.
    """

    def __init__(
        self,
        observer: ILogObserver | Callable[[LogEvent], None],
        *,
        maxQueue: int = 10_000,
        policy: OverflowPolicy | str = OverflowPolicy.dropNewest,
        blockTimeout: float = 0.05,
        discardThreshold: float | None = None,
        discardLevel: Any = LogLevel.info,
        flushTimeout: float = 5.0,
        stallTimeout: float | None = None,
        start: bool = True,
        name: str | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
    ) -> None:
        if maxQueue < 1:
            raise ValueError(f"maxQueue must be >= 1, not {maxQueue!r}")
        try:
            self.policy = OverflowPolicy(policy)
        except ValueError:
            choices = ", ".join(p.value for p in OverflowPolicy)
            raise ValueError(f"policy must be one of {choices}, not {policy!r}") from None
        if discardThreshold is not None and not 0 < discardThreshold <= 1:
            raise ValueError(f"discardThreshold must be in (0, 1], not {discardThreshold!r}")
        if flushTimeout < 0:
            raise ValueError(f"flushTimeout must be >= 0, not {flushTimeout!r}")
        self.reporter = defaultReporter() if reporter is None else reporter
        if not isinstance(observer, HardenedSink):
            observer = SafeObserver(observer, reporter=self.reporter, clock=clock)
        self.observer: HardenedSink[LogEvent] = observer
        self.name = name if name is not None else f"{self.observer.name} (non-blocking)"
        self.maxQueue = maxQueue
        # A queue this full wakes a worker that waits for more events.
        self._wakeAt = maxQueue // 2
        self.blockTimeout = blockTimeout
        self.discardAt = (
            sys.maxsize if discardThreshold is None else int(maxQueue * discardThreshold)
        )
        # Below this many queued events a caller appends without the lock.
        self._lockFreeBelow = min(self._wakeAt, self.discardAt)
        self.discardLevel = _LEVEL_ORDER.get(discardLevel, _LEVEL_ORDER[LogLevel.info])
        self.flushTimeout = flushTimeout
        self.stallTimeout = (
            getattr(self.observer, "stallTimeout", DEFAULT_STALL_TIMEOUT)
            if stallTimeout is None
            else stallTimeout
        )
        self.clock = MonotonicClock() if clock is None else clock
        #: How many times the worker thread could not be started.
        self.startFailures = 0
        self._channel = Channel()
        self._received = Counter()
        self._receivedTicks = self._received.ticks
        self._delivered = Counter()
        self._failed = Counter()
        self._drops = Drops()
        self._held = not start
        self._shutDown = False
        self._stuck = False
        self._retryStartAt = 0.0
        # Anything but the plain queued path goes through _slowCall.
        self._direct = self._held
        self._shutdownTrigger: object = None
        self._setUpRepeats()
        _instances.add(self)
        register(self)
        registerForFork(self)
        quiesceForFork(self)
        self._pausedForFork = False
        finalizer = weakref.finalize(self, self._channel.orphan)
        finalizer.atexit = False

    def __repr__(self) -> str:
        return f"<NonBlockingObserver {self.name} queued={len(self._channel.queue)}>"

    # -- the caller's side ------------------------------------------------------

    def __call__(self, event: LogEvent) -> None:
        # Counted as received; suppression costs one comparison more until
        # the allowance is reached (then every event is looked at).
        if next(self._receivedTicks) >= self._repeatGate:
            self._lookedAt(event)
            return
        if type(event) is not dict and not isinstance(event, Mapping):
            self._notAnEvent(event)
            return
        channel = self._channel
        if currentThread() == channel.workerIdent:
            self._echo(event)
            return
        if self._direct or not channel.alive:
            self._slowCall(event)
            return
        queue = channel.queue
        if len(queue) < self._lockFreeBelow:
            # Far from full, nothing to decide: appended without the lock
            # (a deque's append is atomic). The worker sets its sleeping
            # flag before it looks at the queue one last time, so either it
            # sees this event or this sees the flag and wakes it.
            try:
                copy = dict(event)
            except Exception:
                self._enqueue(event)
                return
            # Looked at again after the copy: copying a mapping runs its
            # code, during which other threads append (16 events queued at
            # once with maxQueue=4, when each waited there).
            if len(queue) < self._lockFreeBelow:
                queue.append(copy)
                if len(queue) > self.maxQueue:
                    # More than half of maxQueue threads appended between
                    # their look and their append at once.
                    self._trim()
                if channel.sleeping or not channel.alive:
                    self._wake()
                return
        self._enqueue(event)

    def _trim(self) -> None:
        """
        Callers appending without the lock took the queue past C{maxQueue}:
        the newest events beyond it are dropped (C{"overflow"}), as a full
        queue drops the newest.
        """
        channel = self._channel
        dropped = 0
        queue = channel.queue
        with channel.lock:
            while len(queue) > self.maxQueue:
                try:
                    queue.pop()
                except IndexError:
                    # The worker takes events without the lock: it took
                    # them all since the look.
                    break
                dropped += 1
        if dropped:
            self._drop(DropReason.overflow, dropped)

    def _wake(self) -> None:
        """
        An event was queued while the worker sleeps, or after it ended
        (C{stop()} on another thread, after this caller saw it running):
        wake it, or start it again.
        """
        if self._channel.alive:
            self._channel.poke()
        else:
            self._start()

    def _lookedAt(self, event: LogEvent) -> None:
        """
        L{__call__} for an event that suppression looks at first.
        """
        if type(event) is not dict and not isinstance(event, Mapping):
            self._notAnEvent(event)
            return
        channel = self._channel
        if currentThread() == channel.workerIdent:
            self._echo(event)
            return
        marked = self._heldBack(event)
        if marked is None:
            return
        if self._direct or not channel.alive:
            self._slowCall(event)
            return
        self._enqueue(event, marked)

    def _copied(self, event: LogEvent) -> LogEvent | None:
        """
        A copy of C{event} to queue; L{None}, counted failed and reported,
        for a mapping whose keys or items raise (it cannot be queued).
        """
        try:
            return dict(event)
        except Exception as error:
            self._notAnEvent(event, f"an event that cannot be copied ({_errorName(error)})")
            return None

    def _enqueue(self, event: LogEvent, marked: bool = False) -> None:
        copy = self._copied(event)
        if copy is None:
            return
        item: Any = Marked(copy, self._markToken) if marked else copy
        channel = self._channel
        queue = channel.queue
        ended = False
        with channel.lock:
            size = len(queue)
            if size >= self.discardAt and self._lowPriority(event):
                accept, reason = False, DropReason.discarded
            elif size < self.maxQueue:
                accept, reason = True, None
            elif self.policy is OverflowPolicy.dropOldest:
                accept, reason = True, DropReason.overflow
                try:
                    queue.popleft()
                except IndexError:
                    # The worker takes events without the lock: it took
                    # them all since the look.
                    reason = None
            elif self.policy is OverflowPolicy.block and channel.waitForRoom(
                self.maxQueue, self.blockTimeout
            ):
                accept, reason = True, None
            else:
                accept, reason = False, DropReason.overflow
            if accept:
                queue.append(item)
                if channel.sleeping or size >= self._wakeAt:
                    channel.wake.notify()
                # Ended (stop() on another thread) after this caller saw
                # it running: started again below.
                ended = not channel.alive
        if reason is not None:
            self._drop(reason, 1)
        elif ended:
            self._start()

    def _slowCall(self, event: LogEvent) -> None:
        """
        Not started yet, shut down, or no worker running.
        """
        if self._shutDown:
            self._afterShutdown(event)
        elif self._held or time.monotonic() < self._retryStartAt or not self._start():
            self._deliverHere(event)
        else:
            self._direct = False
            self._enqueue(event)

    def _deliverHere(self, event: LogEvent) -> None:
        # The hardened sink never raises an Exception.
        self.observer(event)
        self._delivered.increment()

    def _notAnEvent(self, thing: object, what: str | None = None) -> None:
        """
        Something that is not an event dict (L{None}, a string, bytes, a
        list), or a mapping that cannot be copied, was logged: it cannot be
        queued, so it is counted failed and reported, never raised into the
        caller.
        """
        self._failed.increment()
        if what is None:
            what = f"not a log event (a {type(thing).__name__})"
        try:
            self.reporter.failure(self.name, None, f"{what}; not delivered")
        except Exception:
            pass

    def _lowPriority(self, event: LogEvent) -> bool:
        try:
            level = _LEVEL_ORDER.get(event.get("log_level", LogLevel.info), 1)
        except Exception:
            return False
        return level <= self.discardLevel

    def _echo(self, event: LogEvent) -> None:
        """
        An event caused by the worker's own delivery: never queued. The
        hardened sink is told (it is being delivered to on this thread, so it
        drops the event as reentry and notices error output in it).
        """
        self._drop(DropReason.reentry, 1)
        if self.observer.delivering():
            self.observer(event)

    def _drop(self, reason: DropReason, count: int) -> None:
        self._drops.add(reason, count)
        self._reportDropped(reason, count)

    def _reportDropped(self, reason: DropReason, count: int) -> None:
        try:
            self.reporter.dropped(self.name, reason.value, count)
        except Exception:
            pass

    def _note(self, line: str) -> None:
        try:
            self.reporter.note(line)
        except Exception:
            pass

    # -- the worker ---------------------------------------------------------------

    def start(self) -> None:
        """
        Start delivering from the worker thread now (for an observer made
        with C{start=False}; otherwise the first event starts it).
        """
        self._held = False
        self._direct = self._shutDown
        if not self._channel.alive:
            self._start()

    # -- accounting -------------------------------------------------------------

    def stats(self) -> SinkStats:
        """
        This observer's own counters (the queue; an event being delivered
        counts as buffered); the wrapped sink has its own L{SinkStats} in
        C{observer.stats()}. C{stalledFor} is how long the delivery in
        progress has not returned, once that is C{stallTimeout} or more.
        """
        channel = self._channel
        stalledFor = channel.stalledFor(self.stallTimeout)
        sink = self.observer.stats()
        return SinkStats.fromCounters(
            self.name,
            sink.state,
            self._received,
            self._delivered,
            self._failed,
            self._drops,
            channel.pending(),
            since=sink.since,
            lastError=channel.lastError if channel.lastError is not None else sink.lastError,
            stalledFor=stalledFor,
        )


def _errorName(error: BaseException) -> str:
    return type(error).__name__

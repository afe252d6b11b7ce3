# -*- test-case-name: tests.test_nonblocking -*-
"""
L{NonBlockingObserver}: hand events to one worker thread through a bounded
queue, so that a sink that blocks (an NFS file, a stalled syslog or network
collector) never makes the reactor wait.

Every event is accounted for, as in L{SafeObserver}:
C{received == delivered + failed + dropped + buffered} when quiet, where
C{buffered} is what waits in the queue and every drop has a reason
(C{overflow}, C{discarded}, C{reentry}, C{shutdown}).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import ILogObserver, LogEvent, LogLevel
from zope.interface import implementer

from ._breaker import BreakerState, IClock, MonotonicClock
from ._compat import StringEnum
from ._guard import currentThread
from ._registry import IHardenedSink, register
from ._report import IReporter, defaultReporter, describe
from ._safe import HardenedSink, SafeObserver
from ._stats import Counter, DropReason, Drops, SinkStats

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

_instances: weakref.WeakSet[NonBlockingObserver] = weakref.WeakSet()


def _afterForkInChild() -> None:
    # The worker thread did not survive the fork and its locks may be held
    # by a thread that no longer exists: start afresh on the next event.
    for instance in list(_instances):
        instance._resetAfterFork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_afterForkInChild)


@atexit.register
def _flushAllAtExit() -> None:
    for instance in list(_instances):
        instance.shutdown()


@implementer(ILogObserver, IHardenedSink)
class NonBlockingObserver:
    """
    Deliver events to C{observer} from one worker thread.

    The caller only appends a shallow copy of the event to a bounded queue
    (the copy because other observers may mutate the shared dict; values
    inside it are shared, so a mutable value changed after logging is seen
    changed by the sink). When the queue is full, C{policy} decides (see
    L{OverflowPolicy}); with C{discardThreshold} (a fraction of
    C{maxQueue}), events at or below C{discardLevel} are discarded first
    once the queue is that full, as logback's AsyncAppender does.

    C{observer} is wrapped in a L{SafeObserver} unless it already is a
    hardened sink, so the worker survives a sink that raises; the worker is
    started lazily by the first event (twistd builds observers before it
    forks), restarted if it dies or after a fork, and retries a quarantined
    sink's buffer in the background once its breaker allows.

    Events the worker thread itself causes while delivering (a handler's
    error written to a redirected C{sys.stderr}, a sink that logs) are not
    queued again: they are dropped with reason C{"reentry"}.

    At reactor shutdown (a system event trigger, registered when the worker
    starts if a reactor is running) and at interpreter exit, the queue is
    flushed for up to C{flushTimeout} seconds; what could not be delivered in
    time is counted as dropped (C{"shutdown"}) and reported in one line, and
    later events are delivered synchronously (L{shutdown}).
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
        self.reporter = defaultReporter() if reporter is None else reporter
        if not isinstance(observer, HardenedSink):
            observer = SafeObserver(observer, reporter=self.reporter, clock=clock)
        self.observer: HardenedSink[LogEvent] = observer
        self.name = name if name is not None else f"{self.observer.name} (non-blocking)"
        self.maxQueue = maxQueue
        self.blockTimeout = blockTimeout
        self.discardAt = (
            maxQueue + 1 if discardThreshold is None else int(maxQueue * discardThreshold)
        )
        self.discardLevel = _LEVEL_ORDER.get(discardLevel, _LEVEL_ORDER[LogLevel.info])
        self.flushTimeout = flushTimeout
        self.clock = MonotonicClock() if clock is None else clock
        self._queue: deque[LogEvent] = deque()
        self._received = Counter()
        self._delivered = Counter()
        self._failed = Counter()
        self._drops = Drops()
        self._setUpThreading()
        self._shutdownTriggerAdded = False
        self._synchronous = False
        self._lastError: str | None = None
        _instances.add(self)
        register(self)

    def _setUpThreading(self) -> None:
        self._lock = threading.Lock()
        self._wakeWorker = threading.Condition(self._lock)
        self._roomOrIdle = threading.Condition(self._lock)
        self._inFlight = 0
        self._alive = False
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._workerIdent: int | None = None

    def _resetAfterFork(self) -> None:
        self._setUpThreading()

    def __repr__(self) -> str:
        return f"<NonBlockingObserver {self.name} queued={len(self._queue)}>"

    # -- the caller's side ------------------------------------------------------

    def __call__(self, event: LogEvent) -> None:
        self._received.increment()
        if currentThread() == self._workerIdent:
            self._echo(event)
            return
        if self._synchronous:
            # After shutdown: no reactor to keep responsive, and the process
            # may end without warning (twistd re-raises SIGTERM).
            self.observer(event)
            self._delivered.increment()
            return
        if not self._alive:
            self._start()
        queue = self._queue
        with self._lock:
            size = len(queue)
            if size >= self.discardAt and self._lowPriority(event):
                accept, reason = False, DropReason.discarded
            elif size < self.maxQueue:
                accept, reason = True, None
            elif self.policy is OverflowPolicy.dropOldest:
                queue.popleft()
                accept, reason = True, DropReason.overflow
            elif self.policy is OverflowPolicy.block and self._roomOrIdle.wait_for(
                lambda: len(queue) < self.maxQueue, self.blockTimeout
            ):
                accept, reason = True, None
            else:
                accept, reason = False, DropReason.overflow
            if accept:
                queue.append(dict(event))
                self._wakeWorker.notify()
        if reason is not None:
            self._drop(reason, 1)

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
        try:
            self.reporter.dropped(self.name, reason.value, count)
        except Exception:
            pass

    # -- the worker ---------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._alive:
                return
            self._alive = True
            self._stopping = False
            worker = threading.Thread(
                target=self._work, name=f"twisted-safelog worker: {self.name}", daemon=True
            )
            self._worker = worker
        worker.start()
        self._flushAtReactorShutdown()

    def _flushAtReactorShutdown(self) -> None:
        if self._shutdownTriggerAdded or "twisted.internet.reactor" not in sys.modules:
            return
        self._shutdownTriggerAdded = True
        from twisted.internet import reactor

        try:
            reactor.addSystemEventTrigger("after", "shutdown", self.shutdown)
        except Exception:
            self._shutdownTriggerAdded = False

    def _work(self) -> None:
        self._workerIdent = currentThread()
        queue = self._queue
        try:
            while True:
                with self._lock:
                    if not queue:
                        if self._stopping:
                            return
                        self._roomOrIdle.notify_all()
                        self._wakeWorker.wait(self._idleWait())
                    event = queue.popleft() if queue else None
                    if event is not None:
                        self._inFlight = 1
                        self._roomOrIdle.notify_all()
                if event is None:
                    self._retryQuarantined()
                    continue
                try:
                    self.observer(event)
                    self._delivered.increment()
                except BaseException as error:
                    # A hardened sink does not raise; if something still
                    # does, the worker keeps going.
                    self._failed.increment()
                    self._lastError = describe(error)
                    try:
                        self.reporter.failure(self.name, error, describe(error))
                    except Exception:
                        pass
                finally:
                    with self._lock:
                        self._inFlight = 0
        finally:
            with self._lock:
                self._alive = False
                self._workerIdent = None
                self._roomOrIdle.notify_all()

    def _idleWait(self) -> float | None:
        """
        How long the idle worker may sleep: until the sink's breaker lets a
        probe through, if it holds buffered events; otherwise until woken.
        """
        sink = self.observer
        if not sink.buffered:
            return None
        breaker = sink.breaker
        if breaker.state is BreakerState.closed:
            return 0.01
        return max(0.01, min(breaker.retryAt - breaker.clock.seconds(), 1.0))

    def _retryQuarantined(self) -> None:
        try:
            self.observer.drain()
        except Exception:
            pass

    # -- shutdown -----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """
        Wait up to C{timeout} seconds (C{flushTimeout} by default) for the
        queue to be delivered. Whatever is still queued then is dropped
        (reason C{"shutdown"}) and reported in one line. Returns whether
        everything was delivered.
        """
        timeout = self.flushTimeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self._queue and not self._alive:
            try:
                self._start()
            except RuntimeError:
                # Too late in interpreter shutdown to start a thread.
                pass
        with self._lock:
            workerAlive = self._alive and self._worker is not None and self._worker.is_alive()
            while (self._queue or self._inFlight) and workerAlive:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeWorker.notify()
                self._roomOrIdle.wait(remaining)
                workerAlive = self._alive
            left = len(self._queue)
            self._queue.clear()
        if left:
            self._drop(DropReason.shutdown, left)
            try:
                self.reporter.note(
                    f"sink {self.name}: {left} queued events could not be delivered "
                    f"within {timeout:g}s at shutdown (counted as dropped: shutdown)"
                )
            except Exception:
                pass
        return left == 0

    def shutdown(self, timeout: float | None = None) -> bool:
        """
        L{flush}, then deliver every later event synchronously, on the
        caller's thread: called when the reactor has shut down and at exit,
        so that the last lines (twistd's "Server Shut Down.") are written
        before the process ends.
        """
        delivered = self.flush(timeout)
        self._synchronous = True
        return delivered

    def stop(self, timeout: float | None = None) -> bool:
        """
        L{flush}, then end the worker thread. A later event starts it again.
        """
        delivered = self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._wakeWorker.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout if timeout is not None else self.flushTimeout)
        return delivered

    def drain(self) -> None:
        """
        Wake the worker, so that queued events, and the events a quarantined
        sink buffers, are delivered as soon as they can be, without waiting
        for the next event. Never waits.
        """
        with self._lock:
            self._wakeWorker.notify()

    def close(self) -> None:
        """
        L{stop}: flush for up to C{flushTimeout} seconds, count and report
        what is left, end the worker.
        """
        self.stop()

    # -- accounting -------------------------------------------------------------

    def stats(self) -> SinkStats:
        """
        This observer's own counters (the queue); the wrapped sink has its
        own L{SinkStats} in C{observer.stats()}.
        """
        sink = self.observer.stats()
        return SinkStats.fromCounters(
            self.name,
            sink.state,
            self._received,
            self._delivered,
            self._failed,
            self._drops,
            len(self._queue) + self._inFlight,
            since=sink.since,
            lastError=self._lastError if self._lastError is not None else sink.lastError,
        )

# -*- test-case-name: tests.test_nonblocking,tests.test_lifecycle -*-
"""
L{NonBlockingObserver}'s worker thread seen from the observer: starting it
(with the first event, again after it ended, a second after it could not
start), flushing the queue when the reactor shuts down, and what a fork
does to it (an idle worker ends before the fork and starts again in the
parent; the child counts what the parent still had to deliver).
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from twisted.logger import LogEvent

from ._report import IReporter, describe
from ._stats import Counter, DropReason, Drops
from ._worker import Channel

if TYPE_CHECKING:
    from ._hardened import HardenedSink
    from ._nonblocking import NonBlockingObserver

__all__ = ["WorkerLifecycle"]

#: Seconds between two attempts to start a worker thread that could not start.
_START_RETRY = 1.0


class WorkerLifecycle:
    """
    The worker's start, restart and fork handling, for L{NonBlockingObserver}.
    """

    name: str
    reporter: IReporter
    observer: HardenedSink[LogEvent]
    startFailures: int
    _channel: Channel
    _received: Counter
    _delivered: Counter
    _failed: Counter
    _drops: Drops
    _held: bool
    _shutDown: bool
    _direct: bool
    _retryStartAt: float
    _shutdownTrigger: object
    _pausedForFork: bool

    def _start(self) -> bool:
        """
        Start the worker unless it runs; C{False} if it cannot start.
        """
        error = self._channel.startWorker(
            (self.observer, self._delivered, self._failed, self.reporter, self.name),
            f"twisted-safelog worker: {self.name}",
        )
        if error is not None:
            self._startFailed(error)
            return False
        self._flushAtReactorShutdown()
        return True

    def _startFailed(self, error: Exception) -> None:
        self.startFailures += 1
        self._retryStartAt = time.monotonic() + _START_RETRY
        self._direct = True
        try:
            self.reporter.failure(
                self.name,
                error,
                f"worker thread could not start ({describe(error)}); delivering on the "
                f"caller's thread, trying again in {_START_RETRY:g}s "
                f"({self.startFailures} failed starts)",
            )
        except Exception:
            pass

    def _flushAtReactorShutdown(self) -> None:
        if self._shutdownTrigger is not None or "twisted.internet.reactor" not in sys.modules:
            return
        from twisted.internet import reactor

        # Held weakly: the reactor must not keep a discarded observer alive.
        ref = weakref.ref(cast("NonBlockingObserver", self))

        def shutdownIfAlive() -> None:
            observer = ref()
            if observer is not None:
                observer.shutdown()

        try:
            self._shutdownTrigger = reactor.addSystemEventTrigger(
                "after", "shutdown", shutdownIfAlive
            )
        except Exception:
            self._shutdownTrigger = None

    def _beforeFork(self) -> None:
        """
        An idle worker ends before the process forks, so that the process
        forks without it (and the parent starts it again after): a busy one
        is left alone (the child counts what it was doing as C{"fork"}).
        """
        worker = self._channel.stopIfIdle()
        if worker is None or worker is threading.current_thread():
            return
        self._pausedForFork = True
        worker.join(0.5)

    def _afterForkInParent(self) -> None:
        if self._pausedForFork:
            self._pausedForFork = False
            if not self._held and not self._shutDown:
                self._start()

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._pausedForFork = False
        channel = self._channel
        channel.reset()
        if not keepPending:
            channel.queue.clear()
        # Whatever was received and not settled is lost here: queued (unless
        # the child keeps it), in flight, or inside a call on a thread that
        # is gone (each had counted its event as received, and will never
        # queue it, drop it or count it here). Not from the worker's
        # in-flight mark: it marks an event before taking it off the queue,
        # and clears it after counting it delivered, so at the fork it may
        # count an event the queue or the counters count too. Read from the
        # counters, not stats(): the wrapped sink's report lock may be held
        # by one of them.
        settled = (
            self._delivered.value
            + self._failed.value
            + sum(self._drops.byReason().values())
            + len(channel.queue)
        )
        lost = max(self._received.value - settled, 0)
        if lost:
            # Not lost: the parent delivers them (see _safe's twin).
            self._drops.add(DropReason.fork, lost)
        return None

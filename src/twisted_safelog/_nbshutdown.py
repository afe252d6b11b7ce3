# -*- test-case-name: tests.test_nonblocking -*-
"""
L{NonBlockingObserver}'s end: flushing its queue at reactor shutdown and at
interpreter exit (every wait with a deadline, none past a stalled delivery),
the caller's hand-off once it has shut down, stopping and closing it.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import TYPE_CHECKING

from twisted.logger import LogEvent

from ._stats import DropReason
from ._worker import Channel

if TYPE_CHECKING:
    from ._hardened import HardenedSink
    from ._nonblocking import NonBlockingObserver
    from ._repeats import RepeatFilter

__all__ = ["QueueShutdown"]

_instances: weakref.WeakSet[NonBlockingObserver] = weakref.WeakSet()


@atexit.register
def _flushAllAtExit() -> None:
    # One deadline for all of them: a process with several stuck sinks must
    # still end within one flush timeout (and none waits past its own).
    instances = list(_instances)
    deadline = time.monotonic() + max((i.flushTimeout for i in instances), default=0.0)
    for instance in instances:
        instance.shutdown(min(instance.flushTimeout, max(0.0, deadline - time.monotonic())))


def _flushWhenThreadingShutsDown() -> None:
    """
    Also flush when C{threading} shuts down, before it joins the threads: a
    C{multiprocessing} child made with the fork start method runs that, then
    ends with C{os._exit()}, never running C{atexit} handlers (at an
    ordinary exit this runs first, and the C{atexit} flush finds nothing
    left). C{threading._register_atexit} is what C{concurrent.futures} uses
    for the same reason (Python 3.9 and later).
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        return
    try:
        register(_flushAllAtExit)
    except RuntimeError:
        # Imported while the interpreter is already shutting down.
        pass


_flushWhenThreadingShutsDown()


class QueueShutdown:
    """
    The shutdown half of L{NonBlockingObserver}.
    """

    name: str
    _channel: Channel
    _shutDown: bool
    _direct: bool
    _stuck: bool
    _shutdownTrigger: object
    flushTimeout: float
    stallTimeout: float
    maxQueue: int
    observer: HardenedSink[LogEvent]
    repeats: RepeatFilter[LogEvent]

    def _start(self) -> bool:
        raise NotImplementedError()

    def _drop(self, reason: DropReason, count: int) -> None:
        raise NotImplementedError()

    def _note(self, line: str) -> None:
        raise NotImplementedError()

    def _deliverHere(self, event: LogEvent) -> None:
        raise NotImplementedError()

    def _copied(self, event: LogEvent) -> LogEvent | None:
        raise NotImplementedError()

    def _stalled(self) -> bool:
        return self._channel.stalled(self.stallTimeout)

    def flush(self, timeout: float | None = None) -> bool:
        """
        Wait up to C{timeout} seconds (C{flushTimeout} by default) for the
        queue to be delivered, and not at all once the delivery in progress
        has not returned for C{stallTimeout} seconds. Whatever is still
        queued then is dropped (reason C{"shutdown"}) and reported in one
        line. Returns whether everything was delivered.

        @param timeout: the longest wait in seconds (C{flushTimeout} if L{None}).
        """
        timeout = self.flushTimeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.repeats.watching:
            # The summaries of copies held back before the queue go first.
            self.repeats.flush()
        channel = self._channel
        if channel.queue and not channel.alive:
            self._start()
        left, inFlight = channel.waitDelivered(deadline, self.stallTimeout)
        if left:
            self._drop(DropReason.shutdown, left)
            self._note(
                f"sink {self.name}: {left} queued events could not be delivered "
                f"within {timeout:.3g}s at shutdown (counted as dropped: shutdown)"
            )
        return left == 0 and not inFlight

    def shutdown(self, timeout: float | None = None) -> bool:
        """
        L{flush}; from then on each event is handed to the worker and the
        caller waits (up to C{flushTimeout}) until it is written, so that
        the last lines (twistd's "Server Shut Down.") reach the sink before
        the process ends; if the worker is stuck, events are dropped
        (C{"shutdown"}) at once instead. Called when the reactor has shut
        down and at exit.

        @param timeout: the longest wait in seconds (C{flushTimeout} if L{None}).
        """
        began = time.monotonic()
        delivered = self.flush(timeout)
        self._shutDown = True
        self._direct = True
        channel = self._channel
        # Stuck: the delivery of a queued event in progress began before
        # the flush did (it has not returned while the flush waited for
        # it), or the worker's call into the sink is stalled. Not a
        # delivery that began since: a slow sink working through a backlog
        # the flush gave up on (a slow pipe) still takes the last lines;
        # nor a replay of a recovered sink's buffer, which the flush does
        # not wait for.
        since = channel.busySince
        if (channel.inFlight and 0 < since <= began) or channel.stalled(self.stallTimeout):
            self._becameStuck()
        return delivered

    def _becameStuck(self) -> None:
        if self._stuck:
            return
        self._stuck = True
        self._note(
            f"sink {self.name}: its delivery has not returned; events from now on "
            "are dropped (shutdown), not waited for"
        )

    def _afterShutdown(self, event: LogEvent) -> None:
        if self._stuck or self._stalled():
            self._becameStuck()
            self._drop(DropReason.shutdown, 1)
            return
        channel = self._channel
        if not channel.alive and not self._start():
            # No thread can start (interpreter exit); the sink is not stuck.
            self._deliverHere(event)
            return
        copy = self._copied(event)
        if copy is None:
            return
        delivered, dropped = channel.handOff(
            copy, self.maxQueue, self.flushTimeout, self.stallTimeout
        )
        if not delivered:
            self._becameStuck()
        if dropped:
            self._drop(DropReason.shutdown, 1)

    def stop(self, timeout: float | None = None) -> bool:
        """
        L{flush}, then end the worker thread (waiting for it up to the same
        timeout). A later event starts it again.

        @param timeout: the longest wait in seconds (C{flushTimeout} if L{None}).
        """
        timeout = self.flushTimeout if timeout is None else timeout
        delivered = self.flush(timeout)
        worker = self._channel.stop()
        if worker is not None and worker is not threading.current_thread():
            try:
                worker.join(0 if self._stalled() else timeout)
            except RuntimeError:
                # Not started yet: a caller on another thread, logging as
                # this stops it, is starting it. It ends once the queue
                # is empty.
                pass
        return delivered

    def drain(self) -> None:
        """
        Wake the worker, so that queued events, and the events a quarantined
        sink buffers, are delivered as soon as they can be, without waiting
        for the next event. Does not wait for delivery; the summaries of
        held-back identical events are queued first, which with
        C{policy=block} and a full queue waits for room up to
        C{blockTimeout}.
        """
        if self.repeats.watching:
            self.repeats.flush()
        self._channel.poke()

    def close(self, timeout: float | None = None) -> None:
        """
        L{stop} (flush for up to C{timeout} seconds, count and report what is
        left, end the worker), then close the wrapped sink (unless its
        delivery is stuck) and release what this observer holds in the
        reactor.

        @param timeout: the longest wait in seconds (C{flushTimeout} if L{None}).
        """
        self.stop(timeout)
        if not self._channel.busySince:
            try:
                self.observer.close()
            except Exception:
                pass
        trigger, self._shutdownTrigger = self._shutdownTrigger, None
        if trigger is not None:
            from twisted.internet import reactor

            try:
                reactor.removeSystemEventTrigger(trigger)
            except Exception:
                pass

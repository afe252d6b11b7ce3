# -*- test-case-name: tests.test_nonblocking -*-
"""
The state L{NonBlockingObserver} shares with its worker thread: the queue,
its lock and conditions, and what the worker is doing (the worker's loop is
L{twisted_safelog._workloop.work}).

The thread holds the L{Channel} and the hardened sink, never the observer
itself: an observer nobody references any more is collected, and its
finalizer tells the worker to deliver what is queued and end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from twisted.logger import LogEvent

from ._workloop import work

__all__ = ["Channel", "HandedOff"]


class Channel:
    """
    The queue between the callers and the worker, its lock and conditions,
    and what the worker is doing.
    """

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.reset()

    def reset(self) -> None:
        """
        Fresh locks and no worker (at creation, and in a forked child, where
        the worker is gone and its locks may be held for ever).

        The lock is reentrant: a signal handler that logs (twistd's SIGTERM
        and SIGINT handlers do) runs on the main thread between any two
        bytecodes, possibly while that thread holds the lock in a log call;
        its own log call must not wait for it.
        """
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        #: Notified when an event leaves the queue while a caller waits for
        #: room (the block policy; see L{waitForRoom}).
        self.room = threading.Condition(self.lock)
        #: How many callers wait on L{room}: the worker notifies it only
        #: then (a notify with no waiter costs the worker about 0.2 us an
        #: event).
        self.roomWaiters = 0
        #: Notified when the queue is empty and nothing is in flight (for
        #: flushes): not on every event, so a waiting flush does not wake
        #: for each one.
        self.idle = threading.Condition(self.lock)
        #: 1 while the worker delivers an event it took off the queue.
        self.inFlight = 0
        #: When the worker's current call into the sink began (a delivery,
        #: or replaying its buffer), C{time.monotonic()}; 0 while it is not
        #: in the sink.
        self.busySince = 0.0
        self.alive = False
        self.stopping = False
        #: True while the worker waits on L{wake} until woken (set and
        #: cleared under the lock, and set before the worker's last look at
        #: the queue, for callers that append without it): a caller that
        #: queues an event notifies it only then (or when the queue is half
        #: full), as a busy worker, or one waiting
        #: L{BATCH_WAIT<twisted_safelog._workloop.BATCH_WAIT>} for more,
        #: takes the next event without being woken.
        self.sleeping = False
        self.worker: threading.Thread | None = None
        self.workerIdent: int | None = None
        #: The last thing a hardened sink still raised into the worker.
        self.lastError: str | None = None

    def stalled(self, timeout: float) -> bool:
        """
        Has the delivery in progress not returned for C{timeout} seconds?
        """
        return bool(self.stalledFor(timeout))

    def stalledFor(self, timeout: float) -> float:
        """
        How long the delivery in progress has not returned, once that is
        C{timeout} seconds or more; else 0.

        L{busySince} is read once: the worker clears it without the lock,
        and a second read could find 0 (a stall of the system's uptime).
        """
        since = self.busySince
        if not since:
            return 0.0
        elapsed = time.monotonic() - since
        return elapsed if elapsed >= timeout > 0 else 0.0

    def startWorker(self, args: tuple[Any, ...], name: str) -> Exception | None:
        """
        Start the worker (L{twisted_safelog._workloop.work} with C{args})
        unless it runs; return the error if the thread cannot start.
        """
        with self.lock:
            if self.alive:
                return None
            self.alive = True
            self.stopping = False
            worker = threading.Thread(target=work, args=(self, *args), name=name, daemon=True)
            self.worker = worker
        try:
            worker.start()
        except Exception as error:
            with self.lock:
                self.alive = False
                self.worker = None
            return error
        return None

    def waitForRoom(self, maxQueue: int, timeout: float) -> bool:
        """
        With the lock held: wait up to C{timeout} seconds until the queue
        holds fewer than C{maxQueue} events; whether it does.
        """
        queue = self.queue
        self.roomWaiters += 1
        try:
            return self.room.wait_for(lambda: len(queue) < maxQueue, timeout)
        finally:
            self.roomWaiters -= 1

    def poke(self) -> None:
        """
        Wake the worker (for an event queued without the lock, or to replay
        a quarantined sink's buffer now).
        """
        with self.lock:
            self.wake.notify()

    def waitDelivered(self, deadline: float, stallTimeout: float) -> tuple[int, int]:
        """
        Wait until the queue is delivered, the C{deadline} (a
        C{time.monotonic()} value) passes, or the delivery in progress stays
        stalled (see L{stalled}); then, unless it was delivered, empty the
        queue. Returns (events left in the queue, events in flight).
        """
        stuckIn: float | None = None
        with self.lock:
            while True:
                if not self.pending() and self.alive:
                    # Delivered. An event queued since (by another thread,
                    # or by a signal handler that logs, run on this one
                    # between two bytecodes) is the running worker's to
                    # deliver: taking it out dropped it (as not delivered
                    # in time) although there was time.
                    return 0, 0
                if not self.alive:
                    break
                # Read once: the worker clears it without the lock.
                since = self.busySince
                if since and time.monotonic() - since >= stallTimeout > 0:
                    # Stalled, and still the same delivery a moment later.
                    if stuckIn == since:
                        break
                    stuckIn = since
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wake.notify()
                # Wake now and then to notice a delivery that stalls.
                self.idle.wait(min(remaining, 0.2))
            # Taken out one by one, each counted (not a clear() after
            # reading the length: callers append without the lock, and an
            # event appended in between went uncounted), until none is
            # left (not while the queue looks non-empty: the worker takes
            # events without the lock, and may take the last one between
            # that look and the take).
            left = 0
            popleft = self.queue.popleft
            while True:
                try:
                    popleft()
                except IndexError:
                    break
                left += 1
            if left and self.roomWaiters:
                # Callers the block policy holds for room have it now, not
                # at the end of their blockTimeout.
                self.room.notify_all()
            return left, self.inFlight

    def handOff(
        self, event: LogEvent, maxQueue: int, timeout: float, stallTimeout: float
    ) -> tuple[bool, bool]:
        """
        Queue C{event} and wait up to C{timeout} seconds until the queue is
        delivered, and no longer once the worker's call into the sink has
        not returned for C{stallTimeout} seconds. Returns (delivered,
        dropped): an event neither delivered in time nor taken by the worker
        is taken back out and dropped, as is one that found the queue full
        (other callers waiting) and no room within C{timeout}.
        """
        queue = self.queue
        deadline = time.monotonic() + timeout
        item = HandedOff(event)
        with self.lock:
            if len(queue) >= maxQueue and not self.waitForRoom(
                maxQueue, deadline - time.monotonic()
            ):
                return False, True
            queue.append(item)
            self.wake.notify()
            while self.pending() and not self.stalled(stallTimeout):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.idle.wait(min(remaining, 0.2))
            if not self.pending():
                return True, False
            try:
                # One step, atomic (see HandedOff): the worker takes
                # events without the lock, and may take this one at any
                # moment.
                queue.remove(item)
            except ValueError:
                return False, False
            return False, True

    def stop(self) -> threading.Thread | None:
        """
        Tell the worker to end once the queue is empty; return its thread.
        """
        with self.lock:
            self.stopping = True
            self.wake.notify_all()
            return self.worker

    def stopIfIdle(self) -> threading.Thread | None:
        """
        If the worker runs and has nothing to do, tell it to end and return
        its thread; else L{None}.
        """
        with self.lock:
            if not self.alive or self.queue or self.inFlight or self.busySince:
                return None
            self.stopping = True
            self.wake.notify_all()
            return self.worker

    def orphan(self) -> None:
        """
        The observer is gone: deliver what is queued, then end.
        """
        with self.lock:
            self.stopping = True
            self.wake.notify_all()

    def pending(self) -> int:
        return len(self.queue) + self.inFlight

    def ended(self) -> None:
        """
        The worker ends (called by it, with the lock held): a worker started
        after this is the new one, which the old one's exit leaves alone.
        """
        self.alive = False
        self.workerIdent = None
        self.worker = None
        self.idle.notify_all()
        self.room.notify_all()


class HandedOff:
    """
    An event L{Channel.handOff} queues and may take back out. It compares
    by identity alone (no C{__eq__}, the default C{__repr__}), so that
    C{deque.remove} finds it without running any Python code (an event
    dict's values may have theirs): taking it back is one atomic step,
    which the worker, taking events without the lock, cannot come into.
    """

    __slots__ = ("event",)

    def __init__(self, event: LogEvent) -> None:
        self.event = event

# -*- test-case-name: tests.test_nonblocking -*-
"""
The loop of L{NonBlockingObserver}'s worker thread: it delivers queued
events in order, taking them without the queue's lock while there are
some; waits a little for more while events come fast, and sleeps until
woken otherwise; replays a quarantined sink's buffer while idle; and ends
when told to, once the queue is empty. What it shares with the observer is
the L{Channel<twisted_safelog._worker.Channel>}.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._breaker import BreakerState
from ._guard import currentThread
from ._marks import deliverMarked
from ._prequeue import Marked
from ._report import IReporter, describe
from ._safe import HardenedSink
from ._stats import Counter

if TYPE_CHECKING:
    from ._worker import Channel

__all__ = ["BATCH_RATE", "BATCH_WAIT", "work"]

#: Seconds the worker waits for more events once the queue is empty, while
#: events come fast (L{BATCH_RATE}), before it sleeps until a caller wakes
#: it. Under a steady stream it then takes what came in meanwhile about a
#: hundred times a second, instead of being woken for every event: each
#: wake-up is a context switch and a hand-over of the GIL that the caller
#: (the reactor) pays for. A log line waits at most this long; a flush, a
#: stop and a queue half full wake it at once.
BATCH_WAIT = 0.01

#: Events per second from which the worker waits for more (L{BATCH_WAIT}).
#: Slower, each event wakes it: a trickle is written at once, and a loop
#: through another thread (the worker delivers, a pool thread logs back)
#: keeps its full speed, so identical-event suppression sees it and stops
#: it, rather than its being slowed to a rate under the allowance, where it
#: would go on for ever.
BATCH_RATE = 500


class _Pace:
    """
    Whether the worker, its queue empty, waits for more events: events
    delivered over the last L{BATCH_WAIT} seconds or more came at
    L{BATCH_RATE} or faster.
    """

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.count = 0
        self.fast = False

    def waitForMore(self, delivered: int) -> bool:
        """
        @param delivered: how many events the worker has delivered so far.
        """
        now = time.monotonic()
        elapsed = now - self.since
        if elapsed >= BATCH_WAIT:
            self.fast = delivered - self.count >= BATCH_RATE * elapsed
            self.since, self.count = now, delivered
        return self.fast


def work(
    channel: Channel,
    sink: HardenedSink[Any],
    delivered: Counter,
    failed: Counter,
    reporter: IReporter,
    name: str,
) -> None:
    """
    The worker's loop: deliver queued events in order; while idle, replay a
    quarantined sink's buffer when its breaker allows; end when told to stop
    and the queue is empty.

    While the queue holds events it takes them without the lock (a deque's
    C{popleft} is atomic; the callers append without it too): the lock is
    taken only once the queue is empty, to wait, to end, or to wake a
    caller the block policy holds for room.
    """
    channel.workerIdent = currentThread()
    queue = channel.queue
    popleft = queue.popleft
    monotonic = time.monotonic
    ticks = delivered.ticks
    # Events delivered by this worker, for its pace.
    count = 0
    pace = _Pace()
    ended = False
    try:
        waited = False
        while True:
            if queue:
                # In flight before it leaves the queue: pending() may count
                # it twice for a moment, never not at all (a flush would
                # end before it is written).
                channel.inFlight = 1
                try:
                    event = popleft()
                except IndexError:
                    # Emptied meanwhile by a flush that gave up.
                    channel.inFlight = 0
                    continue
                if channel.roomWaiters:
                    with channel.lock:
                        channel.room.notify()
                waited = False
                channel.busySince = monotonic()
                try:
                    if type(event) is dict:
                        sink(event)
                    elif type(event) is Marked:
                        # Let through while it repeats: delivered inside the
                        # observer's mark, so that its echoes are known.
                        deliverMarked(event.token, sink, event.event)
                    else:
                        # A HandedOff event.
                        sink(event.event)
                    next(ticks)
                    count += 1
                except BaseException as error:
                    # A hardened sink does not raise; if something still
                    # does, the worker keeps going.
                    failed.increment()
                    channel.lastError = describe(error)
                    try:
                        reporter.failure(name, error, describe(error))
                    except Exception:
                        pass
                finally:
                    # Without the lock: whoever waits for the queue to be
                    # delivered (waitDelivered, handOff) is notified when
                    # the worker next takes the lock and finds the queue
                    # empty.
                    channel.inFlight = 0
                    channel.busySince = 0.0
                continue
            with channel.lock:
                if queue:
                    continue
                if channel.stopping:
                    # Callers append without the lock once they have seen
                    # it alive: it says it has ended before its last look
                    # at the queue, so that such an event is either seen
                    # here or the caller sees that and starts a worker.
                    channel.alive = False
                    if not queue:
                        ended = True
                        channel.ended()
                        return
                    channel.alive = True
                    continue
                channel.idle.notify_all()
                if not waited and not sink.buffered and pace.waitForMore(count):
                    # Not sleeping: callers queue without waking it.
                    waited = True
                    channel.wake.wait(BATCH_WAIT)
                    continue
                waited = False
                channel.sleeping = True
                try:
                    # Callers may append without the lock: one that looked
                    # before the flag was set queued its event before this
                    # look.
                    if not queue:
                        channel.wake.wait(_idleWait(sink))
                finally:
                    channel.sleeping = False
                if queue:
                    continue
                channel.busySince = monotonic()
            # Woken with nothing queued: replay what a quarantined sink
            # buffers, if its breaker allows, and say what is due.
            try:
                sink.drain()
            except Exception:
                pass
            finally:
                channel.busySince = 0.0
    finally:
        if not ended:
            with channel.lock:
                channel.ended()


def _idleWait(sink: HardenedSink[Any]) -> float | None:
    """
    How long the idle worker may sleep: until the sink's breaker lets a
    probe through, if it holds buffered events; until its summaries of
    held-back identical events are due; otherwise until woken.
    """
    if not sink.buffered:
        # Summaries of held-back identical events are due when their
        # interval ends, even if no other event comes.
        repeats = sink.repeats
        return repeats.interval if repeats.watching else None
    breaker = sink.breaker
    if breaker.state is BreakerState.closed:
        return 0.01
    return max(0.01, min(breaker.retryAt - breaker.clock.seconds(), 1.0))

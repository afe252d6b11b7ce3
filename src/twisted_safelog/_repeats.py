# -*- test-case-name: tests.test_repeats -*-
"""
Identical-event suppression: the bound on loops that no per-thread guard
sees (a sink whose pool thread logs back) and on floods of one line (an
application stuck in a retry loop), in the manner of syslog's "last message
repeated N times".

Two events are identical when their namespace (logger name), level and
rendered text are the same; their times are not compared. When more than
C{burst} identical events reach a sink within C{interval} seconds, further
copies are not delivered but counted (drop reason C{"repeated"}), and one
summary event, "repeated N times: <text>", is delivered in their place at
the end of each interval in which copies were held back. Distinct events are
never held back.

What it costs: a healthy sink pays one comparison per event (the count of
events it has delivered, which it keeps anyway, against
L{RepeatFilter.gate}, which moves in steps of a quarter of C{burst}). Only
once a sink has had more than C{burst} events in an interval is anything
looked at, and then only a sample of them (about 64 per interval) until an
event is seen often enough in the sample (the sample's estimate of its
copies so far only decides that it is watched: what counts against its
allowance is the copies actually seen, so an event under the allowance is
never held back, and a flood's first interval delivers between C{burst}
and about twice that). Only while such an event
repeats is every event compared, and then first by its format, so that
rendering is needed only for events that share a format with the repeating
one.

While an event repeats, deliveries to the sink are made inside a delivery
mark carried by C{contextvars} and by L{twisted.python.context} (which
C{twisted.internet.threads.deferToThread} carries to its pool thread): an
event that arrives bearing the sink's own mark was caused by delivering to
it, on whatever thread, and is dropped as a reentry, as the per-thread guard
does. The burst bound is the backstop where no mark travels (a plain
C{ThreadPoolExecutor}).
"""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

from ._breaker import IClock, MonotonicClock
from ._feedback import ECHO_SLACK, FeedbackLoops, Repeating
from ._fork import registerForFork
from ._identity import EVENTS, RECORDS, Identity
from ._marks import deliverMarked, markedBy, unmarked
from ._sampling import MAX_SAMPLES, SAMPLES, Sampling
from ._stats import Counter

__all__ = [
    "DELIVER",
    "ECHO",
    "EVENTS",
    "MARKED",
    "RECORDS",
    "SUPPRESS",
    "Identity",
    "RepeatFilter",
    "deliverMarked",
]

T = TypeVar("T")

#: What L{RepeatFilter.check} says to do with an item.
DELIVER, SUPPRESS, MARKED, ECHO = 0, 1, 2, 3


_NEVER = 1 << 63


def _heldBackWhenGone(
    repeating: dict[Hashable, dict[Hashable, Repeating]], whenGone: Callable[[int], object]
) -> None:
    """
    The owner of a filter is gone: report the copies it held back whose
    summary it can no longer deliver (so that none goes unsaid).
    """
    try:
        count = sum(
            key.suppressed for bucket in list(repeating.values()) for key in bucket.values()
        )
        if count:
            whenGone(count)
    except Exception:
        pass


class RepeatFilter(Sampling[T], FeedbackLoops[T]):
    """
    Identical-item suppression for one hardened sink (see the module's
    docstring). The sink compares its count of events delivered on its
    healthy path with L{gate}; when it reaches it, it sets L{due} and sends
    events to L{check} for as long as L{due} stays set.

    @param owner: the hardened sink (the mark its deliveries carry); held
        weakly, as the callbacks must hold it: the sink holds its filter, and
        a sink nobody references must be freed at once, not when the cycle
        collector runs.
    @param deliver: delivers a summary item through the sink (it is counted
        like any other item the sink receives).
    @param drop: counts C{n} held-back copies (drop reason C{"repeated"}).
    @param report: writes one out-of-band line.
    @param dropped: reports C{n} copies held back (rate-limited by the
        reporter).
    @param position: how many events the sink has delivered on its healthy
        path so far.
    @param setGate: called with each new L{gate}, for a sink that keeps a
        copy of it (one attribute lookup less on its healthy path).
    @param whenGone: reports C{n} copies held back and not yet summarised
        when the owner is freed (the application let the sink go during a
        flood); it must not refer to the owner.
    """

    def __init__(
        self,
        burst: int,
        interval: float,
        identity: Identity[T],
        owner: object,
        name: str,
        deliver: Callable[[T], object],
        drop: Callable[[int], object],
        report: Callable[[str], object],
        dropped: Callable[[int], object],
        position: Callable[[], int],
        setGate: Callable[[int], object] = lambda gate: None,
        clock: IClock | None = None,
        whenGone: Callable[[int], object] | None = None,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self.identity = identity
        self._owner = weakref.ref(owner)
        self.name = name
        self._deliver = deliver
        self._drop = drop
        self._report = report
        self._dropped = dropped
        self.clock = MonotonicClock() if clock is None else clock
        self._echoWindow = interval / 4
        # Reentrant: a signal handler that logs (twistd's) runs on the main
        # thread between any two bytecodes, maybe while it holds this lock.
        self._lock = threading.RLock()
        # Inside a look, tick or flush (under the lock: so this thread's).
        self._busy = False
        registerForFork(self)
        self._position = position
        self._setGate = setGate
        # The gate moves in steps of a quarter of the allowance until an
        # interval has had the allowance: an interval that starts at a
        # step (the last one ran out while the sink was quiet) counts the
        # step's items as its own, a flood's first copies among them.
        self._step = max(1, burst // 4)
        self.gate = self._step if burst else _NEVER
        #: Summaries due on a quiet sink may be handed to a running reactor
        #: (not for a filter in front of a queue: that never blocks).
        self.useReactor = True
        #: Set by the sink when it reached L{gate}; kept while an event
        #: repeats (then every event is looked at): send events to L{check}.
        self.due = False
        # Events looked at here (they do not take the healthy path).
        self._looked = 0
        # How many summaries it has made (lock-free: the timer thread makes
        # them too).
        self._summaries = Counter()
        self._sliceEnd = float("-inf")
        self._sliceStart = 0
        # Items between two samples once an interval has had the allowance
        # (before, one sample per step). In the first interval (no rate
        # known yet) a sixteenth of the burst, doubled after every
        # FIRST_SAMPLES samples; then set by the last interval's rate.
        self._stride = max(1, burst // 16)
        self._measured = False
        # Samples taken this interval, and the item count at the last one.
        self._taken = 0
        self._lastSample = 0
        self._jitter = random.Random(0x5EED).randint
        # Per sampled event: [times seen, items those samples stand for].
        self._samples: dict[Hashable, list[int]] = {}
        # While events repeat: the next item that is not one of them to be
        # sampled (counted in items looked at).
        self._nextSample = 0
        self._repeating: dict[Hashable, dict[Hashable, Repeating]] = {}
        # Items known identical to a repeating one without rendering them.
        self._quick: dict[Hashable, Repeating] = {}
        self._loopsReported: set[Hashable] = set()
        if whenGone is not None:
            gone = weakref.finalize(owner, _heldBackWhenGone, self._repeating, whenGone)
            # At exit the sinks deliver their summaries themselves.
            gone.atexit = False

    def _afterForkInChild(self, keepPending: bool) -> None:
        # Another thread may have held the lock at the fork: it is gone.
        self._lock = threading.RLock()
        self._busy = False
        if not keepPending:
            # The summaries of the copies held back before the fork are the
            # parent's to deliver (it goes on); the child's would say them
            # twice. The copies stay counted (repeated) in both.
            for bucket in self._repeating.values():
                for key in bucket.values():
                    key.suppressed = 0

    @property
    def gate(self) -> int:
        """
        When the sink's count of events delivered on its healthy path reaches
        this, the next event must be looked at (never, if off).
        """
        return self._gate

    @gate.setter
    def gate(self, value: int) -> None:
        self._gate = value
        self._setGate(value)

    @property
    def owner(self) -> object:
        """
        The hardened sink whose deliveries carry the mark (L{None} once it
        is gone).
        """
        return self._owner()

    @property
    def summaries(self) -> int:
        """
        How many summaries it has made (each an item the sink receives, so
        C{received} exceeds what callers sent by this many).
        """
        return self._summaries.value

    @property
    def looked(self) -> int:
        """
        How many items have been looked at (sent to L{check}).
        """
        return self._looked

    def turnOff(self) -> None:
        """
        Never look at an item again (another filter in front of the sink
        does the work: a non-blocking observer's, before its queue).
        """
        with self._lock:
            self.burst = 0
            self.due = False
            self.gate = _NEVER

    def __repr__(self) -> str:
        return f"<RepeatFilter burst={self.burst} interval={self.interval:g}>"

    @property
    def watching(self) -> bool:
        """
        Is an event being held back or watched now (so that summaries may
        be due)?
        """
        return bool(self._repeating)

    def check(self, item: T) -> int:
        """
        Look at C{item}: L{DELIVER} it, L{MARKED} (deliver it
        inside the delivery mark), L{SUPPRESS} it (counted here), or it is an
        L{ECHO} of a delivery to this sink (the caller counts it as a
        reentry).
        """
        now = self.clock.seconds()
        due: list[tuple[Repeating, int]] = []
        with self._lock:
            if self._busy:
                # A signal handler that logs, run on this thread between two
                # bytecodes of a look (the lock is reentrant, so it does not
                # wait for itself): the state is half changed, so the item
                # is delivered without a look (and is not counted as one).
                return MARKED if self._repeating else DELIVER
            self._busy = True
            try:
                self._looked += 1
                if now < self._sliceEnd:
                    verdict = self._look(item, now)
                else:
                    # Nothing repeating: the sink's count reached the gate,
                    # so a step's worth of items just went by, which count
                    # towards the new interval (a flood's first copies do).
                    self._newSlice(now, due, 0 if self._repeating else self._step)
                    verdict = self._look(item, now)
                self.due = bool(self._repeating)
            finally:
                self._busy = False
        if due:
            self._summarise(due, now)
        return verdict

    def tick(self) -> float | None:
        """
        The summary timer's call: deliver the summaries due now that the
        interval is over (without waiting for the next item, which may never
        come); return the seconds until the next may be due, or L{None} if
        nothing is held back or watched any more.
        """
        now = self.clock.seconds()
        due: list[tuple[Repeating, int]] = []
        with self._lock:
            if not self._repeating:
                return None
            if now >= self._sliceEnd and not self._busy:
                # (Busy: a signal handler on a thread in the middle of a
                # look; the next tick or look starts the new interval.)
                self._busy = True
                try:
                    self._newSlice(now, due)
                finally:
                    self._busy = False
            left = self._sliceEnd - now
            watching = bool(self._repeating)
        if due:
            self._summarise(due, now)
        return left if watching else None

    def dueIn(self) -> float | None:
        """
        Seconds until the summaries may be due (zero or less: now), for the
        summary timer; L{None} if nothing is held back or watched any more.
        """
        if not self._repeating:
            return None
        return self._sliceEnd - self.clock.seconds()

    def flush(self) -> None:
        """
        Deliver the summaries due now (held-back copies since the last
        summary), without waiting for the next item.
        """
        now = self.clock.seconds()
        due: list[tuple[Repeating, int]] = []
        with self._lock:
            if self._busy:
                # A signal handler in the middle of a look on this thread:
                # the summaries are left for the next flush or tick.
                return
            self._busy = True
            try:
                if now >= self._sliceEnd:
                    # Also forgets the events that have stopped repeating.
                    self._newSlice(now, due)
                else:
                    for bucket in self._repeating.values():
                        for key in bucket.values():
                            self._settle(key, due)
            finally:
                self._busy = False
        if due:
            self._summarise(due, now)

    # -- under the lock -------------------------------------------------------

    def _newSlice(self, now: float, due: list[tuple[Repeating, int]], recent: int = 0) -> None:
        """
        Start a new interval at C{now}, with the last C{recent} items in it.
        """
        position = self._position()
        tick = position + self._looked
        if self._sliceEnd != float("-inf"):
            # Sample about SAMPLES items of an interval as busy as the last.
            self._stride = max(1, (tick - self._sliceStart) // SAMPLES)
            self._measured = True
        self._sliceStart = tick - min(recent, tick - self._sliceStart)
        self._sliceEnd = now + self.interval
        self._samples.clear()
        self._taken = 0
        self._lastSample = self._sliceStart
        self._quick.clear()
        for coarse, bucket in list(self._repeating.items()):
            for fine, key in list(bucket.items()):
                if key.probeAt is not None and now - key.probeAt > self._echoWindow:
                    self._judge(key)
                self._settle(key, due)
                if not key.copies:
                    # Not one copy in a whole interval: the burst is over.
                    del bucket[fine]
                key.copies = 0
            if not bucket:
                del self._repeating[coarse]
        # While something repeats, every item is looked at; otherwise none
        # until the interval has had more than `burst` of them.
        self.due = bool(self._repeating)
        self.gate = position + self._step

    def _settle(self, key: Repeating, due: list[tuple[Repeating, int]]) -> None:
        if key.suppressed:
            due.append((key, key.suppressed))
            key.suppressed = 0

    def _look(self, item: T, now: float) -> int:
        if self._repeating:
            if markedBy(self._owner()):
                return ECHO
            try:
                bucket = self._repeating.get(self.identity.coarse(item))
                if bucket is None:
                    return self._sampleAside(item, now)
                quick = self.identity.quick(item)
                key = None if quick is None else self._quick.get(quick)
                if key is None:
                    key = bucket.get(self.identity.fine(item))
                    if key is None:
                        return self._sampleAside(item, now)
                    if quick is not None:
                        if len(self._quick) >= MAX_SAMPLES:
                            self._quick.clear()
                        self._quick[quick] = key
            except Exception:
                return MARKED
            key.copies += 1
            key.seen += 1
            key.total += 1
            if key.probeAt is not None:
                if now - key.probeAt <= self._echoWindow:
                    # Right after the summary that tests for a feedback loop:
                    # held back, and counted, to tell its echo from a burst.
                    key.probeCopies += 1
                    key.suppressed += 1
                    key.lastArrival = now
                    self._drop(1)
                    return SUPPRESS
                self._judge(key)
            # A feedback loop's copies get no allowance: each delivery (even
            # of its summary) would only start it again.
            if key.copies > (0 if key.loop else self.burst):
                if key.suppressed >= ECHO_SLACK or now - key.lastAdmitted > self._echoWindow:
                    # It goes on regardless of deliveries: a flood.
                    key.floodLike += 1
                    key.loop = False
                key.suppressed += 1
                key.lastArrival = now
                self._drop(1)
                return SUPPRESS
            key.delivered += 1
            key.lastAdmitted = key.lastArrival = now
            return MARKED
        position = self._position()
        items = position + self._looked - self._sliceStart
        if items < self.burst:
            # Not yet the allowance this interval: a sample (one per step,
            # spread over the interval's first items), and the next step.
            self.gate = position + min(self._step, self.burst - items)
            self._sample(item, now)
            return DELIVER
        # Above the allowance, nothing repeating yet: look at a sample.
        # Jittered, so that traffic with a period (one line in two) cannot
        # hide from the samples.
        self.gate = position + self._jitter(1, 2 * self._stride)
        self._sample(item, now)
        return DELIVER

    def _sampleAside(self, item: T, now: float) -> int:
        """
        An item that is not one of the repeating ones, while some repeat
        (every item is looked at then): a sample of them, taken as when
        nothing repeats, so that a second flood (a retry loop's other line)
        is noticed too.
        """
        if self._looked >= self._nextSample:
            self._nextSample = self._looked + self._jitter(1, 2 * self._stride)
            self._sample(item, now)
        return MARKED

    # -- outside the lock ------------------------------------------------------

    def _summarise(self, due: list[tuple[Repeating, int]], now: float) -> None:
        for key, count in due:
            self._dropped(count)
            if not key.reported:
                key.reported = True
                self.loopFound(key.name, key.text, key.total, key.delivered, "burst")
            try:
                summary = self.identity.summary(key.item, key.text, count)  # type: ignore[arg-type]
            except Exception:
                continue
            self._summaries.increment()
            # What the summary's delivery causes is an echo, not a flood.
            key.lastAdmitted = now
            if self._suspect(key, now):
                # The summary is a delivery of ours: whether it makes the
                # event come back tells a feedback loop from a burst.
                key.probeAt = now
                key.probeCopies = 0
            # The summary is the sink's own, even when an echo made it due:
            # delivered outside the echo's mark (its delivery has its own).
            unmarked(self._deliver, summary)

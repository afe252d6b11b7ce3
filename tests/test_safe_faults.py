"""
L{HardenedSink} under faults: no exception escapes under any interleaving of
delivery, drain, replay, close and probe; the breaker is never left
half-open; a poison event costs only itself; buffers are bounded in bytes.
"""

from __future__ import annotations

import errno
import io
import logging
import random
import sys
import threading
import time
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from twisted_safelog import BreakerState, SafeHandler, SafeObserver
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter, event


class Switchable:
    """
    A sink that fails while C{broken} (with C{OSError(ENOSPC)}) and always
    fails on a poison event; it records what it took.
    """

    def __init__(self) -> None:
        self.broken = False
        self.taken: list[int] = []

    def __call__(self, e: LogEvent) -> None:
        if e.get("poison"):
            raise ValueError("cannot format this one")
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.taken.append(e["n"])


class TransientSafeObserver(SafeObserver):
    """
    A SafeObserver whose sink's OSErrors are transient, as a file's are.
    """

    def isTransient(self, error: BaseException) -> bool:
        return isinstance(error, OSError)


class HardenedSinkMachine(RuleBasedStateMachine):
    """
    Any sequence of deliveries (good and poison), failures, recoveries,
    drains, closes and clock advances: nothing escapes, and after every step
    the accounting identity and the breaker's invariants hold.
    """

    @initialize(
        threshold=st.integers(1, 3),
        bufferSize=st.integers(0, 4),
        retryFailed=st.booleans(),
        transient=st.booleans(),
        bufferBytes=st.sampled_from([10_000, 2_000, 600]),
    )
    def setUp(
        self, threshold: int, bufferSize: int, retryFailed: bool, transient: bool, bufferBytes: int
    ) -> None:
        self.clock = Clock()
        self.sink = Switchable()
        self.fallback = RecordingObserver()
        kind = TransientSafeObserver if transient else SafeObserver
        self.safe = kind(
            self.sink,
            clock=self.clock,
            reporter=RecordingReporter(),
            fallback=self.fallback,
            failureThreshold=threshold,
            bufferSize=bufferSize,
            bufferBytes=bufferBytes,
            retryFailed=retryFailed,
            maxAttempts=3,
            resetTimeout=1.0,
            maxResetTimeout=4.0,
        )
        self.next = 0

    @rule(big=st.booleans())
    def deliver(self, big: bool) -> None:
        self.safe(event(self.next, payload="x" * (700 if big else 10)))
        self.next += 1

    @rule()
    def deliverPoison(self) -> None:
        self.safe(event(self.next, poison=True))
        self.next += 1

    @rule()
    def fail(self) -> None:
        self.sink.broken = True

    @rule()
    def recover(self) -> None:
        self.sink.broken = False

    @rule()
    def drain(self) -> None:
        self.safe.drain()

    @rule()
    def close(self) -> None:
        self.safe.close()

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0]))
    def advanceClock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def accountingIdentity(self) -> None:
        stats = self.safe.stats()
        assert stats.balanced, stats
        assert stats.received == self.next
        assert stats.delivered == len(self.sink.taken)

    @invariant()
    def deliveredInOrderExactlyOnce(self) -> None:
        taken = self.sink.taken
        assert taken == sorted(set(taken)), taken

    @invariant()
    def breakerNeverHalfOpenWithoutAProbe(self) -> None:
        breaker = self.safe.breaker
        # Nothing is being delivered between steps, so no probe is in flight.
        assert breaker.state is not BreakerState.halfOpen
        assert breaker.resetTimeout <= breaker.currentTimeout <= breaker.maxResetTimeout
        if breaker.state is BreakerState.closed:
            assert breaker.consecutiveFailures < breaker.failureThreshold
        else:
            assert breaker.retryAt >= breaker.openedAt

    @invariant()
    def buffersBounded(self) -> None:
        safe = self.safe
        assert safe.buffered <= safe.bufferSize
        assert 0 <= safe.bufferedBytes <= safe.bufferBytes


TestHardenedSinkStateMachine = HardenedSinkMachine.TestCase
TestHardenedSinkStateMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


def test_manyThreadsWithCloseInTheMixNeverRaiseNorStickHalfOpen() -> None:
    """
    Threads log while others break and mend the sink, drain and close the
    wrapper: no exception escapes (the old drain/close race raised
    C{IndexError: pop from an empty deque} out of C{__call__} and left the
    breaker half-open for ever), the breaker ends closed once the sink
    works, and every event is accounted for.
    """
    sink = Switchable()
    safe = SafeObserver(
        sink,
        reporter=RecordingReporter(),
        failureThreshold=1,
        bufferSize=20,
        resetTimeout=0.0001,
        maxResetTimeout=0.0002,
    )
    escaped: list[BaseException] = []
    stop = threading.Event()
    perThread = 10_000

    def guarded(action: Any) -> None:
        try:
            action()
        except BaseException as error:  # anything escaping fails the test
            escaped.append(error)

    def logger(base: int) -> None:
        for n in range(perThread):
            guarded(lambda n=n: safe(event(base + n)))

    def chaos(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            choice = rng.random()
            if choice < 0.3:
                sink.broken = not sink.broken
            elif choice < 0.65:
                guarded(safe.close)
            else:
                guarded(safe.drain)
            time.sleep(0)

    loggers = [threading.Thread(target=logger, args=(k * perThread,)) for k in range(4)]
    chaosThreads = [threading.Thread(target=chaos, args=(seed,)) for seed in range(2)]
    # Switch threads as often as the interpreter can, to reach the narrow
    # interleavings (between a check and a pop) in a bounded run.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in loggers + chaosThreads:
            thread.start()
        for thread in loggers:
            thread.join(120)
        stop.set()
        for thread in chaosThreads:
            thread.join(30)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in loggers + chaosThreads)
    assert escaped == []
    stats = safe.stats()
    assert stats.received == 4 * perThread
    assert stats.balanced, stats
    # Mended: the next probe (within a few ms) restores it, never stuck.
    sink.broken = False
    deadline = time.monotonic() + 30
    while safe.breaker.state is not BreakerState.closed and time.monotonic() < deadline:
        safe.drain()
        safe(event(-1))
        time.sleep(0.001)
    assert safe.breaker.state is BreakerState.closed
    assert safe.stats().balanced


def test_drainGivesBackAProbeWhenCloseEmptiedTheBuffer() -> None:
    """
    The interleaving that used to raise: the drainer is let through as the
    probe, then close() empties the buffer before it pops.
    """
    sink = Switchable()
    clock = Clock()
    safe = SafeObserver(sink, clock=clock, reporter=RecordingReporter(), failureThreshold=1)
    sink.broken = True
    safe(event(0))
    safe(event(1))  # buffered (an OSError: no early probe)
    assert safe.buffered == 1
    clock.advance(1)
    original = safe.breaker.allow

    def allowThenClose() -> bool:
        allowed = original()
        safe._buffer.clear()  # what close() does from another thread here
        safe._sizes.clear()
        return allowed

    safe.breaker.allow = allowThenClose  # type: ignore[method-assign]
    safe.drain()  # must not raise
    safe.breaker.allow = original  # type: ignore[method-assign]
    assert safe.breaker.state is BreakerState.open
    sink.broken = False
    safe(event(2))  # the probe was given back: taken at once
    assert safe.breaker.state is BreakerState.closed
    assert sink.taken == [2]


# -- poison events ---------------------------------------------------------------


def test_poisonRecordsCostOnlyThemselvesThroughSafeHandler() -> None:
    """
    The issue's case: five records a formatter cannot format (a missing
    C{%(request_id)s}) in a healthy stream; then 3,000 good ones. With no
    time passing at all, every good record is written and only the five
    are lost, each counted failed.
    """
    stream = io.StringIO()
    inner = logging.StreamHandler(stream)
    inner.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    clock = Clock()
    safe = SafeHandler(inner, clock=clock, reporter=RecordingReporter())
    logger = logging.getLogger("poison.records")
    logger.propagate = False
    logger.addHandler(safe)
    try:
        for n in range(5):
            logger.error("poison %d", n)  # no request_id: the formatter raises
        for n in range(3000):
            logger.error("good %d", n, extra={"request_id": f"r{n}"})
    finally:
        logger.removeHandler(safe)
    lines = stream.getvalue().splitlines()
    assert lines == [f"r{n} good {n}" for n in range(3000)]
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed, stats.dropped) == (3005, 3000, 5, 0)
    assert stats.state == BreakerState.closed


def test_aSinkThatCannotTakeAnythingStaysQuarantined() -> None:
    """
    The other side of the early probes: when the next, different events
    fail too (up to failureThreshold of them), the sink cannot take
    anything: it is quarantined as before, no more calls are made until the
    reset timeout, and the buffered events are replayed then.
    """
    calls: list[int] = []
    broken = [True]

    def sink(e: LogEvent) -> None:
        calls.append(e["n"])
        if broken[0]:
            raise RuntimeError("cannot take anything")

    clock = Clock()
    safe = SafeObserver(sink, clock=clock, reporter=RecordingReporter(), failureThreshold=3)
    for n in range(100):
        safe(event(n))
    assert calls == [0, 1, 2, 3, 4, 5]
    stats = safe.stats()
    assert (stats.failed, stats.buffered) == (6, 94)
    broken[0] = False
    clock.advance(1)
    safe.drain()
    assert calls[6:] == list(range(6, 100))
    assert safe.stats().balanced


def test_anOSErrorBlamesTheSinkAndProbesNoEarlier() -> None:
    """
    A sink failing with an OSError (a disk, a socket) is the sink's own
    trouble: no early probes, quarantined after failureThreshold calls.
    """
    sink = Switchable()
    sink.broken = True
    safe = SafeObserver(sink, clock=Clock(), reporter=RecordingReporter(), failureThreshold=5)
    calls = []
    original = safe._target

    def counting(e: LogEvent) -> None:
        calls.append(e["n"])
        original(e)

    safe._target = counting
    for n in range(100):
        safe(event(n))
    assert calls == [0, 1, 2, 3, 4]
    assert safe.stats().buffered == 95


def test_poisonEventsInterleavedLoseOnlyThemselves() -> None:
    sink = Switchable()
    safe = SafeObserver(sink, clock=Clock(), reporter=RecordingReporter(), failureThreshold=3)
    poison = set()
    for n in range(2000):
        burst = n % 200 < 4  # four poison events in a row every 200
        if burst:
            poison.add(n)
        safe(event(n, poison=burst))
    assert sink.taken == [n for n in range(2000) if n not in poison]
    stats = safe.stats()
    assert stats.failed == len(poison)
    assert stats.dropped == 0


# -- buffers bounded in bytes --------------------------------------------------------


def test_bufferIsBoundedInBytesNotOnlyInEvents() -> None:
    """
    3,000 events of 1 MB into a quarantined sink: the buffer keeps at most
    bufferBytes (16 MB by default), the rest is counted as overflow.
    """
    sink = Switchable()
    sink.broken = True
    clock = Clock()
    safe = SafeObserver(sink, clock=clock, reporter=RecordingReporter(), failureThreshold=1)
    assert safe.bufferBytes == 16 * 1024 * 1024
    megabyte = "x" * 1_000_000
    for n in range(3000):
        safe(event(n, payload=megabyte + str(n)))  # distinct strings
    stats = safe.stats()
    assert stats.buffered <= 16
    assert safe.bufferedBytes <= safe.bufferBytes
    assert stats.droppedByReason["overflow"] == 3000 - stats.buffered - stats.failed
    assert stats.balanced
    sink.broken = False
    clock.advance(1)
    safe.drain()
    # The newest are kept (oldest dropped first), in order.
    assert sink.taken == list(range(3000 - stats.buffered, 3000))


def test_anEventLargerThanTheWholeBufferIsDroppedAlone() -> None:
    sink = Switchable()
    sink.broken = True
    safe = SafeObserver(
        sink, clock=Clock(), reporter=RecordingReporter(), failureThreshold=1, bufferBytes=5000
    )
    safe(event(0))
    safe(event(1))  # buffered
    safe(event(2, payload="y" * 10_000))
    stats = safe.stats()
    assert stats.buffered == 1
    assert stats.droppedByReason["overflow"] == 1
    assert stats.balanced

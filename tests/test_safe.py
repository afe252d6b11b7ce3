"""
Tests for L{twisted_safelog.SafeObserver}.
"""

from __future__ import annotations

import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
)
from twisted.python import log as legacyLog
from zope.interface.verify import verifyObject

from twisted_safelog import BreakerState, Reporter, SafeObserver
from twisted_safelog.testing import (
    FlakyObserver,
    RaisingObserver,
    RecordingObserver,
    ReentrantObserver,
)

from .helpers import RecordingReporter, collectingReporter, event


def makeSafe(observer: object, **kw: object) -> tuple[SafeObserver, Clock, RecordingReporter]:
    clock = Clock()
    reporter = RecordingReporter()
    safe = SafeObserver(observer, clock=clock, reporter=reporter, **kw)  # type: ignore[arg-type]
    return safe, clock, reporter


def test_providesILogObserver() -> None:
    safe, _, _ = makeSafe(RecordingObserver())
    assert verifyObject(ILogObserver, safe)


def test_deliversAndCountsWhenHealthy() -> None:
    sink = RecordingObserver()
    safe, _, reporter = makeSafe(sink)
    for n in range(3):
        safe(event(n))
    assert [e["n"] for e in sink.events] == [0, 1, 2]
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed, stats.dropped) == (3, 3, 0, 0)
    assert stats["state"] == "closed"
    assert reporter.failures == []


def test_neverRaisesAnException() -> None:
    safe, _, reporter = makeSafe(RaisingObserver(lambda: ValueError("boom")))
    safe(event())
    assert safe.stats().failed == 1
    assert reporter.failures[0][2] == "ValueError: boom"


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit])
def test_baseExceptionsStillPropagate(exception: type[BaseException]) -> None:
    safe, _, _ = makeSafe(RaisingObserver(exception))
    with pytest.raises(exception):
        safe(event())
    assert safe.stats().failed == 1
    # The guard is down again: the next event is delivered (and raises).
    with pytest.raises(exception):
        safe(event())


def test_publisherNeverDisablesAWrappedObserver() -> None:
    """
    LogPublisher re-emits an observer's exception as a critical event to the
    others; wrapped, there is nothing to re-emit.
    """
    witness = RecordingObserver()
    bare = LogPublisher(RaisingObserver(), witness)
    bare(event())
    assert any("Temporarily disabling" in e.get("log_format", "") for e in witness.events)

    witness = RecordingObserver()
    safe, _, _ = makeSafe(RaisingObserver())
    LogPublisher(safe, witness)(event())
    assert len(witness.events) == 1


def test_plainTwistedRecursesOnAReentrantObserver() -> None:
    """
    The scenario is real: an observer that logs into its own publisher makes
    plain Twisted recurse until RecursionError.
    """
    publisher = LogPublisher()
    reentrant = ReentrantObserver(publisher)
    publisher.addObserver(reentrant)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        Logger(observer=publisher).info("start")
    finally:
        sys.setrecursionlimit(limit)
    assert reentrant.calls > 20


def test_reentrantEventIsDroppedForThatSinkOnly() -> None:
    publisher = LogPublisher()
    reentrant = ReentrantObserver(publisher)
    safe, _, reporter = makeSafe(reentrant)
    witness = RecordingObserver()
    publisher.addObserver(safe)
    publisher.addObserver(witness)
    Logger(observer=publisher).info("start")
    assert reentrant.calls == 1
    # The other observer still got the application's event and the echo.
    assert [e["log_format"] for e in witness.events] == [
        "handled an event ({calls} so far)",
        "start",
    ]
    stats = safe.stats()
    assert stats.droppedByReason["reentry"] == 1
    assert stats.received == stats.delivered + stats.dropped == 2
    assert reporter.drops == [(safe.name, "reentry", 1)]


def test_reentryIsPerThread() -> None:
    """
    Another thread delivering at the same time is not reentry.
    """
    inside = threading.Event()
    release = threading.Event()
    sink = RecordingObserver()

    def blocking(e: dict[str, object]) -> None:
        if e.get("n") == 0:
            inside.set()
            release.wait(5)
        sink(e)

    safe, _, _ = makeSafe(blocking)
    t = threading.Thread(target=safe, args=(event(0),))
    t.start()
    assert inside.wait(5)
    safe(event(1))
    release.set()
    t.join()
    assert sorted(e["n"] for e in sink.events) == [0, 1]
    assert safe.stats().dropped == 0


def test_errorOutputDuringDeliveryIsAFailure() -> None:
    """
    A sink that reports its failure on a redirected stderr instead of
    raising (a stdlib handler's handleError) is counted as failing.
    """
    publisher = LogPublisher()
    stderr = LoggingFile(Logger(namespace="stderr", observer=publisher), level=LogLevel.error)

    def writesErrors(e: dict[str, object]) -> None:
        stderr.write("--- Logging error ---\nTraceback (most recent call last):\n")

    safe, _, reporter = makeSafe(writesErrors, failureThreshold=2)
    witness = RecordingObserver()
    publisher.addObserver(safe)
    publisher.addObserver(witness)
    Logger(observer=publisher).info("one")
    Logger(observer=publisher).info("two")
    Logger(observer=publisher).info("three")
    stats = safe.stats()
    assert stats.failed == 2
    assert stats.state == BreakerState.open
    assert stats.buffered == 1
    assert reporter.failures[0][2] == "wrote error output to stderr while being called"
    # Two deliveries, two lines each, reached the other sink; then none.
    assert len([e for e in witness.events if e.get("log_namespace") == "stderr"]) == 4


def test_plainOutputDuringDeliveryIsNotAFailure() -> None:
    publisher = LogPublisher()
    stderr = LoggingFile(Logger(namespace="stderr", observer=publisher))
    safe, _, _ = makeSafe(lambda e: stderr.write("just a line\n"))
    publisher.addObserver(safe)
    Logger(observer=publisher).info("one")
    assert safe.stats().failed == 0
    assert safe.stats().delivered == 1


def test_quarantineBuffersAndReplaysInOrder() -> None:
    sink = FlakyObserver([True] * 3)
    safe, clock, reporter = makeSafe(sink, failureThreshold=3, resetTimeout=5.0)
    for n in range(3):
        safe(event(n))
    assert safe.stats().state == BreakerState.open
    for n in range(3, 8):
        safe(event(n))
    assert sink.calls == 3, "a quarantined sink is not called"
    assert safe.stats().buffered == 5
    clock.advance(5)
    safe(event(8))
    assert [e["n"] for e in sink.events] == [3, 4, 5, 6, 7, 8]
    stats = safe.stats()
    assert (stats.delivered, stats.failed, stats.buffered) == (6, 3, 0)
    assert [s[1:] for s in reporter.states] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_drainReplaysWithoutWaitingForTheNextEvent() -> None:
    sink = FlakyObserver([True])
    safe, clock, _ = makeSafe(sink, failureThreshold=1, resetTimeout=1.0)
    safe(event(0))
    safe(event(1))
    clock.advance(1)
    safe.drain()
    assert [e["n"] for e in sink.events] == [1]
    stats = safe.stats()
    assert (stats.delivered, stats.failed, stats.buffered, stats.state) == (1, 1, 0, "closed")


def test_failedProbeKeepsTheRestBufferedAndBacksOff() -> None:
    sink = FlakyObserver([True, True])
    safe, clock, _ = makeSafe(sink, failureThreshold=1, resetTimeout=1.0)
    safe(event(0))
    safe(event(1))
    safe(event(2))
    clock.advance(1)
    safe(event(3))  # probe = event 1 (oldest), fails
    assert safe.stats().state == BreakerState.open
    assert safe.breaker.currentTimeout == 2.0
    assert safe.stats().buffered == 2
    clock.advance(2)
    safe(event(4))
    assert [e["n"] for e in sink.events] == [2, 3, 4]
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed) == (5, 3, 2)


def test_overflowDropsTheOldestAndCountsIt() -> None:
    sink = FlakyObserver([True])
    safe, clock, _ = makeSafe(sink, failureThreshold=1, bufferSize=3)
    safe(event(0))
    for n in range(1, 7):
        safe(event(n))
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == 3
    assert stats.buffered == 3
    assert stats.balanced
    clock.advance(1)
    safe.drain()
    assert [e["n"] for e in sink.events] == [4, 5, 6]
    after = safe.stats()
    assert (after.received, after.delivered, after.failed, after.buffered) == (7, 3, 1, 0)
    assert after.droppedByReason["overflow"] == 3
    assert after.balanced


def test_withoutBufferQuarantinedEventsAreDroppedAndCounted() -> None:
    safe, _, _ = makeSafe(RaisingObserver(), failureThreshold=1, bufferSize=0)
    for n in range(4):
        safe(event(n))
    stats = safe.stats()
    assert stats.droppedByReason["quarantine"] == 3
    assert stats.balanced


def test_fallbackGetsWhatTheSinkCannotTake() -> None:
    fallback = RecordingObserver()
    sink = FlakyObserver([True, True])
    safe, clock, _ = makeSafe(sink, failureThreshold=2, fallback=fallback)
    for n in range(4):
        safe(event(n))
    assert [e["n"] for e in fallback.events] == [0, 1, 2, 3]
    clock.advance(1)
    safe(event(4))
    assert [e["n"] for e in sink.events] == [2, 3, 4]
    assert len(fallback.events) == 4


def test_brokenFallbackIsContained() -> None:
    safe, _, _ = makeSafe(RaisingObserver(), fallback=RaisingObserver())
    safe(event())
    assert isinstance(safe.fallback, SafeObserver)
    assert safe.fallback.stats().failed == 1


def test_legacyObserversAreAdapted() -> None:
    received: list[dict[str, object]] = []
    observer = legacyLog.PythonLoggingObserver()
    observer.emit = received.append  # type: ignore[method-assign]
    safe, _, _ = makeSafe(observer.emit, legacy=True)
    assert isinstance(safe.observer, LegacyLogObserverWrapper)
    safe(event())
    assert received[0]["message"] == ()
    assert "time" in received[0]


def test_legacyObserverMethodIsDetected() -> None:
    observer = legacyLog.PythonLoggingObserver()
    safe, _, _ = makeSafe(observer.emit)
    assert isinstance(safe.observer, LegacyLogObserverWrapper)


def test_nonCallableIsRefusedClearly() -> None:
    with pytest.raises(TypeError, match="needs a callable observer"):
        SafeObserver(42)  # type: ignore[arg-type]


def test_reporterFailureIsContained() -> None:
    def broken(text: str) -> None:
        raise OSError("reporter broken")

    safe = SafeObserver(RaisingObserver(), reporter=Reporter(write=broken), clock=Clock())
    for n in range(10):
        safe(event(n))
    assert safe.stats().failed == 5


def test_reportsNameTheSinkTheStateAndTheCounts() -> None:
    clock = Clock()
    reporter, lines = collectingReporter(clock)
    safe = SafeObserver(
        RaisingObserver(lambda: OSError("disk on fire")),
        name="the-file",
        reporter=reporter,
        clock=clock,
        failureThreshold=2,
    )
    safe(event(0))
    safe(event(1))
    quarantined = lines.matching("quarantined")
    assert len(quarantined) == 1
    assert "the-file" in quarantined[0]
    assert "failed=2" in quarantined[0]
    first = lines.matching("failed: OSError: disk on fire")
    assert len(first) == 1
    assert lines.matching("Traceback (most recent call last)"), "first failure shows a traceback"


def test_repeatedFailuresAreRateLimitedWithAnExactCount() -> None:
    clock = Clock()
    reporter, lines = collectingReporter(clock, interval=10.0)
    safe = SafeObserver(
        RaisingObserver(), name="s", reporter=reporter, clock=clock, failureThreshold=1000
    )
    for n in range(7):
        safe(event(n))
    assert len(lines.matching("failed:")) == 1
    clock.advance(10)
    safe(event(7))
    repeated = lines.matching("failed:")
    assert len(repeated) == 2
    assert "(6 similar failures suppressed)" in repeated[1]


def test_defaultReporterWritesToFileDescriptorTwoNotSysStderr(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Under twistd sys.stderr feeds the log; reports must bypass it.
    """
    publisher = LogPublisher()
    echoes = RecordingObserver()
    publisher.addObserver(echoes)
    monkeypatch.setattr(sys, "stderr", LoggingFile(Logger(namespace="stderr", observer=publisher)))
    safe = SafeObserver(RaisingObserver(), name="fd-two-test", reporter=Reporter())
    safe(event())
    monkeypatch.undo()
    assert echoes.events == []
    assert "fd-two-test failed: OSError" in capfd.readouterr().err


def test_closeDropsWhatIsLeftWithReasonShutdown() -> None:
    safe, _, _ = makeSafe(RaisingObserver(), failureThreshold=1)
    for n in range(4):
        safe(event(n))
    safe.close()
    stats = safe.stats()
    assert stats.droppedByReason["shutdown"] == 3
    assert stats.buffered == 0
    assert stats.balanced


def test_retryFailedKeepsOrderAndLosesNothing() -> None:
    sink = FlakyObserver([True, True, True])
    safe, clock, _ = makeSafe(sink, failureThreshold=3, retryFailed=True)
    for n in range(6):
        safe(event(n))
    assert safe.stats().state == BreakerState.open
    clock.advance(1)
    safe(event(6))
    assert [e["n"] for e in sink.events] == list(range(7))
    stats = safe.stats()
    assert (stats.delivered, stats.failed, stats.buffered) == (7, 0, 0)


def test_retryFailedGivesUpOnAPoisonousEventAfterMaxAttempts() -> None:
    def poison(e: dict[str, object]) -> None:
        if e["n"] == 0:
            raise ValueError("cannot write this one")

    safe, clock, _ = makeSafe(poison, failureThreshold=1, retryFailed=True, maxAttempts=3)
    safe(event(0))
    for n in range(1, 4):
        clock.advance(safe.breaker.currentTimeout)
        safe(event(n))
    stats = safe.stats()
    assert stats.failed == 1, "counted failed after three attempts"
    assert stats.delivered == 3
    assert stats.balanced


# -- the accounting identity --------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 10)),
        st.tuples(st.just("drain"), st.none()),
    ),
    max_size=80,
)


@given(
    steps=steps,
    bufferSize=st.integers(0, 5),
    threshold=st.integers(1, 4),
    withFallback=st.booleans(),
    retryFailed=st.booleans(),
)
def test_accountingIdentityHoldsForAnyFailurePattern(
    steps: list[tuple[str, object]],
    bufferSize: int,
    threshold: int,
    withFallback: bool,
    retryFailed: bool,
) -> None:
    outcomes: list[bool] = []

    def sink(e: dict[str, object]) -> None:
        if outcomes.pop(0):
            raise OSError("scheduled")

    clock = Clock()
    safe = SafeObserver(
        sink,
        clock=clock,
        reporter=RecordingReporter(),
        bufferSize=bufferSize,
        failureThreshold=threshold,
        fallback=RecordingObserver() if withFallback else None,
        retryFailed=retryFailed,
        maxAttempts=3,
    )
    sent = 0
    for kind, arg in steps:
        if kind == "event":
            # Each delivery attempt consumes one scheduled outcome.
            outcomes.extend([bool(arg)] * 20)
            safe(event(sent))
            sent += 1
            del outcomes[:]
        elif kind == "advance":
            clock.advance(float(arg))  # type: ignore[arg-type]
        else:
            outcomes.extend([False] * 20)
            safe.drain()
            del outcomes[:]
        stats = safe.stats()
        assert stats.received == sent
        assert stats.balanced, stats
        assert stats.buffered <= bufferSize


def test_accountingIdentityHoldsWithManyThreads() -> None:
    counter = iter(range(10**9))
    lock = threading.Lock()

    def sometimesFails(e: dict[str, object]) -> None:
        with lock:
            n = next(counter)
        if n % 7 < 3:
            raise OSError("flaky")

    safe = SafeObserver(
        sometimesFails,
        reporter=RecordingReporter(),
        failureThreshold=2,
        resetTimeout=0.001,
        bufferSize=50,
    )
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for n in range(2000):
            safe(event(n))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = safe.stats()
    # Each line is logged by all eight threads: a summary of copies held
    # back, if any, is received too.
    assert stats.received == 16000 + safe.repeats.summaries
    assert stats.balanced, stats
    assert stats.failed > 0


def test_anObserverInstanceIsCalledThroughItsCallMethod() -> None:
    """
    An instance of a class with a Python C{__call__} (Twisted's
    FileLogObserver, say) is called through that method, bound once, with
    every guarantee kept: C{sink} is still the instance, reentry is still
    dropped, a failure still counted.
    """

    class Observer:
        def __init__(self) -> None:
            self.events: list[LogEvent] = []
            self.safe: SafeObserver | None = None

        def __call__(self, e: LogEvent) -> None:
            self.events.append(e)
            if e.get("echo") and self.safe is not None:
                self.safe(event(99))
            if e.get("fail"):
                raise ValueError("broken")

    observer = Observer()
    safe, _, _ = makeSafe(observer)
    observer.safe = safe
    assert safe.sink is observer
    safe(event(1))
    safe(event(2, echo=True))
    safe(event(3, fail=True))
    assert [e["n"] for e in observer.events] == [1, 2, 3]
    stats = safe.stats()
    assert (stats.delivered, stats.failed, stats.droppedByReason["reentry"]) == (2, 1, 1)
    assert stats.balanced

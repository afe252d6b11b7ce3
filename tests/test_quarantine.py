"""
Tests for what a quarantined sink costs: while its breaker is open and no
probe is due, an event is buffered (or dropped) and counted, with no lock and
no report; the drops are reported together, with exact counts, at the next
state change or on close.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, ClassVar

from twisted.internet.task import Clock

from twisted_safelog import BreakerState, SafeObserver
from twisted_safelog.testing import FlakyObserver, RaisingObserver, RecordingObserver

from .helpers import RecordingReporter, event


class CountingLock:
    """
    A lock that counts how often it is taken.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquired = 0

    def __enter__(self) -> bool:
        self.acquired += 1
        return self._lock.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.__exit__(kind, value, tb)


def quarantined(
    bufferSize: int, **kw: object
) -> tuple[SafeObserver, Clock, RecordingReporter, RaisingObserver]:
    clock = Clock()
    reporter = RecordingReporter()
    sink = RaisingObserver()
    safe = SafeObserver(
        sink,
        clock=clock,
        reporter=reporter,
        failureThreshold=1,
        resetTimeout=10.0,
        bufferSize=bufferSize,
        **kw,  # type: ignore[arg-type]
    )
    safe(event(-1))
    assert safe.stats().state == BreakerState.open
    return safe, clock, reporter, sink


def test_quarantinedEventTakesNoLockAndMakesNoReport() -> None:
    safe, _clock, reporter, sink = quarantined(bufferSize=10)
    sinkLock, breakerLock = CountingLock(), CountingLock()
    safe._lock = sinkLock  # type: ignore[assignment]
    safe.breaker._lock = breakerLock  # type: ignore[assignment]
    reports = (len(reporter.drops), len(reporter.failures), len(reporter.states))
    for n in range(500):
        safe(event(n))
    assert (sinkLock.acquired, breakerLock.acquired) == (0, 0)
    assert (len(reporter.drops), len(reporter.failures), len(reporter.states)) == reports
    assert sink.calls == 1, "a quarantined sink is not called"
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == 490
    assert stats.buffered == 10
    assert stats.balanced, stats


def test_dropsAreReportedTogetherWithExactCountsAtTheNextStateChange() -> None:
    safe, clock, reporter, _sink = quarantined(bufferSize=10)
    for n in range(500):
        safe(event(n))
    assert reporter.drops == []
    clock.advance(10)
    safe(event(500))  # the probe (the oldest buffered event) fails
    assert reporter.drops == [(safe.name, "overflow", 491)]
    assert [s[1:] for s in reporter.states][-2:] == [("open", "half-open"), ("half-open", "open")]
    # The failed probe left 9 buffered: the first of these fills the buffer.
    for n in range(501, 601):
        safe(event(n))
    assert reporter.drops == [(safe.name, "overflow", 491)]
    safe.close()
    assert reporter.drops == [
        (safe.name, "overflow", 491),
        (safe.name, "overflow", 99),
        (safe.name, "shutdown", 10),
    ]
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == 590
    assert stats.droppedByReason["shutdown"] == 10
    assert stats.received == 602
    assert stats.balanced, stats


def test_withoutBufferQuarantineDropsAreReportedTogether() -> None:
    safe, clock, reporter, _sink = quarantined(bufferSize=0)
    for n in range(300):
        safe(event(n))
    assert reporter.drops == []
    clock.advance(10)
    safe(event(300))  # the probe: this event, which fails
    assert reporter.drops == [(safe.name, "quarantine", 300)]
    stats = safe.stats()
    assert (stats.received, stats.failed, stats.dropped) == (302, 2, 300)
    assert stats.balanced, stats


def test_fallbackStillGetsEveryQuarantinedEvent() -> None:
    fallback = RecordingObserver()
    safe, _clock, _reporter, _sink = quarantined(bufferSize=5, fallback=fallback)
    for n in range(50):
        safe(event(n))
    assert [e["n"] for e in fallback.events] == [-1, *range(50)]


def test_bufferKeepsTheNewestAndReplaysThemInOrder() -> None:
    clock = Clock()
    sink = FlakyObserver([True])
    safe = SafeObserver(
        sink,
        clock=clock,
        reporter=RecordingReporter(),
        failureThreshold=1,
        resetTimeout=1.0,
        bufferSize=4,
    )
    for n in range(100):
        safe(event(n))
    clock.advance(1)
    safe(event(100))
    assert [e["n"] for e in sink.events] == [97, 98, 99, 100]
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed) == (101, 4, 1)
    assert stats.droppedByReason["overflow"] == 96
    assert stats.balanced, stats


def test_aFailureRunEndsWithTheNextSuccess() -> None:
    """
    A success after failures below the threshold resets the run, so that
    only consecutive failures quarantine the sink.
    """
    sink = FlakyObserver([True, True, False, True, True, False, True, True])
    safe = SafeObserver(sink, clock=Clock(), reporter=RecordingReporter(), failureThreshold=3)
    for n in range(8):
        safe(event(n))
    assert safe.stats().state == BreakerState.closed
    assert safe.breaker.consecutiveFailures == 2
    safe(event(8))
    assert safe.breaker.consecutiveFailures == 0
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed) == (9, 3, 6)


def test_recoveredSinkIsCalledForEveryEventAgain() -> None:
    sink = FlakyObserver([True])
    clock = Clock()
    safe = SafeObserver(sink, clock=clock, reporter=RecordingReporter(), failureThreshold=1)
    safe(event(0))
    safe(event(1))
    clock.advance(1)
    safe(event(2))
    for n in range(3, 1000):
        safe(event(n))
    assert [e["n"] for e in sink.events] == list(range(1, 1000))
    stats = safe.stats()
    assert (stats.received, stats.delivered, stats.failed) == (1000, 999, 1)
    assert stats.balanced, stats


class SnapshotWhileTakingOut(deque):  # type: ignore[type-arg]
    """
    A replay buffer that takes a snapshot of its sink's stats right after
    an item has left it (as another thread may while replay takes it out).
    """

    safe: SafeObserver | None = None
    snapshots: list[int]

    def popleft(self) -> object:
        item = super().popleft()
        if self.safe is not None:
            self.snapshots.append(self.safe.stats().droppedByReason["overflow"])
        return item


def test_aSnapshotDuringReplayDoesNotCountTheReplayedItemAsDropped() -> None:
    """
    A snapshot taken while replay takes an item out of the buffer does not
    count that item as dropped: overflow is exported as a counter, and a
    count that went up and back down reads as a reset to a metrics system.
    """
    clock = Clock()
    reporter = RecordingReporter()
    sink = FlakyObserver([True])
    safe = SafeObserver(
        sink, clock=clock, reporter=reporter, failureThreshold=1, resetTimeout=10.0, bufferSize=10
    )
    buffer = SnapshotWhileTakingOut(maxlen=10)
    buffer.snapshots = []
    safe._buffer = buffer
    for n in range(4):
        safe(event(n))
    assert safe.stats().state == BreakerState.open
    buffer.safe = safe
    clock.advance(10)
    safe(event(4))
    assert buffer.snapshots == [0, 0, 0, 0]
    assert [e["n"] for e in sink.events] == [1, 2, 3, 4]
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == 0
    assert (stats.delivered, stats.failed, stats.buffered) == (4, 1, 0)
    assert reporter.drops == []


def test_overflowNeverGoesDownWhileEightThreadsLogIntoAFlappingSink() -> None:
    """
    Eight threads log into a sink that fails and recovers again and again
    (quarantined, probed, replayed, quarantined again) while another thread
    reads stats() and another drains: the overflow count never goes down
    and never below zero, and in the end every event is accounted for,
    every delivery the sink saw is counted once, and the drop reports add
    up to the counts.
    """
    failing = [True]
    seen: list[tuple[int, int]] = []

    def sink(e: dict[str, object]) -> None:
        if failing[0]:
            raise OSError(5, "flapping")
        seen.append(e["n"])  # type: ignore[arg-type]

    reporter = RecordingReporter()
    safe = SafeObserver(
        sink,
        reporter=reporter,
        failureThreshold=3,
        resetTimeout=0.002,
        maxResetTimeout=0.005,
        bufferSize=20,
        repeatBurst=0,
    )
    threads, perThread = 8, 3000
    done = threading.Event()
    problems: list[str] = []

    def log(t: int) -> None:
        for k in range(perThread):
            safe(event((t, k)))  # type: ignore[arg-type]

    def flap() -> None:
        while not done.wait(0.003):
            failing[0] = not failing[0]

    def watch() -> None:
        shown = 0
        while not done.is_set():
            overflow = safe.stats().droppedByReason["overflow"]
            if overflow < shown or overflow < 0:
                problems.append(f"overflow went from {shown} to {overflow}")
            shown = max(shown, overflow)

    def drain() -> None:
        while not done.wait(0.001):
            safe.drain()

    loggers = [threading.Thread(target=log, args=(t,)) for t in range(threads)]
    helpers = [threading.Thread(target=f) for f in (flap, watch, drain)]
    for thread in helpers + loggers:
        thread.start()
    for thread in loggers:
        thread.join(120)
    done.set()
    for thread in helpers:
        thread.join(10)
    assert not any(t.is_alive() for t in loggers + helpers)
    failing[0] = False
    safe.close()
    stats = safe.stats()
    assert problems == []
    assert stats.received == threads * perThread
    assert stats.delivered == len(seen) == len(set(seen))
    assert stats.buffered == 0
    assert stats.balanced, stats
    reported: dict[str, int] = {}
    for _name, reason, count in reporter.drops:
        reported[reason] = reported.get(reason, 0) + count
    counted = {reason: n for reason, n in stats.droppedByReason.items() if n}
    assert reported == counted


class PreemptedOnTheWayIn(Mapping[str, Any]):
    """
    An event whose size estimate, taken on its way into the replay buffer,
    first lets another thread run to the end (as a thread switch there
    would): C{vars()} reads C{__dict__} of an event that is not a dict.
    """

    other: ClassVar[list[Callable[[], None]]] = []

    def __init__(self, items: dict[str, Any]) -> None:
        self.items_ = items

    def __getitem__(self, key: str) -> Any:
        return self.items_[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def __getattribute__(self, name: str) -> Any:
        if name == "__dict__" and PreemptedOnTheWayIn.other:
            thread = threading.Thread(target=PreemptedOnTheWayIn.other.pop())
            thread.start()
            thread.join(30)
        return super().__getattribute__(name)


def test_anEventBufferedAsTheSinkRecoversIsNotLeftBehind() -> None:
    """
    An event found quarantined on its way into the buffer while another
    thread probes the sink, which recovers and replays the buffer: it is
    replayed too, before the thread's next event, not left in the buffer
    of a healthy sink (where nothing would replay it until the next failure).
    """
    clock = Clock()
    sink = FlakyObserver([True])
    safe = SafeObserver(
        sink, clock=clock, reporter=RecordingReporter(), failureThreshold=1, resetTimeout=10.0
    )
    safe(event(0))  # fails: quarantined
    safe(event(1))  # buffered

    def recovery() -> None:
        clock.advance(10)
        safe(event(2))  # the probe: 1 replayed, 2 delivered

    PreemptedOnTheWayIn.other.append(recovery)
    safe(PreemptedOnTheWayIn(event(3)))
    assert PreemptedOnTheWayIn.other == [], "the other thread ran on the way in"
    safe(event(4))
    assert [e["n"] for e in sink.events] == [1, 2, 3, 4]
    stats = safe.stats()
    assert (stats.state, stats.buffered, stats.delivered, stats.failed) == ("closed", 0, 4, 1)
    assert stats.balanced, stats

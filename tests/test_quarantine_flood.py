"""
A flood into a quarantined sink with no probe due (the shed path, which
L{HardenedSink.__call__} takes inline): the replay buffer keeps the newest
events within its bounds in events and in bytes after every event, and
every event that does not stay is counted as an overflow drop, exactly.
"""

from __future__ import annotations

import errno
import sys
import threading
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from twisted_safelog import BreakerState, SafeObserver
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter, event


class Breakable:
    """
    A sink that fails with C{OSError(ENOSPC)} while C{broken} and records the
    numbers of the events it took.
    """

    def __init__(self) -> None:
        self.broken = True
        self.taken: list[int] = []

    def __call__(self, e: LogEvent) -> None:
        if self.broken:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.taken.append(e["n"])


def quarantining(sink: object, clock: Clock | None = None, **settings: object) -> SafeObserver:
    """
    A SafeObserver that quarantines C{sink} at its first failure and probes
    it only once the clock has moved 10 s (C{settings} override these),
    without identical-event suppression, with a buffer of 20 events and
    20,000 bytes.
    """
    options: dict[str, object] = {
        "failureThreshold": 1,
        "bufferSize": 20,
        "bufferBytes": 20_000,
        "resetTimeout": 10.0,
        "repeatBurst": 0,
    }
    options.update(settings)
    return SafeObserver(
        sink,  # type: ignore[arg-type]
        clock=Clock() if clock is None else clock,
        reporter=RecordingReporter(),
        **options,  # type: ignore[arg-type]
    )


def recover(safe: SafeObserver, sink: Any, clock: Clock) -> None:
    """
    Mend C{sink} and let C{safe}'s probe through (the clock past the reset
    timeout L{quarantining} sets), then replay what it buffered.
    """
    sink.broken = False
    clock.advance(10.0)
    safe.drain()


def payload(n: int) -> str:
    # Every fifth event is 4 kB (a fifth of bufferBytes below), every
    # seventh 9 kB; the others small. Distinct strings, so nothing is
    # shared between events.
    if n % 7 == 0:
        return "z" * 9000 + str(n)
    if n % 5 == 0:
        return "y" * 4000 + str(n)
    return str(n)


@pytest.mark.parametrize("withFallback", [False, True])
def test_aFloodOfMixedSizesKeepsTheNewestWithinBothBoundsAndCountsTheRest(
    withFallback: bool,
) -> None:
    """
    600 events of mixed sizes, some far beyond their share of the byte
    bound, into a sink quarantined with no probe due: after every event the
    buffer holds at most C{bufferSize} events and C{bufferBytes} bytes, the
    overflow count is exactly what arrived and is neither failed nor
    buffered, and once the sink recovers the buffered events are replayed:
    the newest, in order, with no gap.
    """
    sink = Breakable()
    clock = Clock()
    fallback = RecordingObserver()
    safe = quarantining(sink, clock, fallback=fallback if withFallback else None)
    total = 600
    for n in range(total):
        safe(event(n, payload=payload(n)))
        assert safe.buffered <= safe.bufferSize
        assert 0 <= safe.bufferedBytes <= safe.bufferBytes
        stats = safe.stats()
        assert stats.received == n + 1
        assert stats.droppedByReason["overflow"] == n + 1 - stats.failed - stats.buffered
        assert stats.balanced
    # No probe was due: the sink was called once (the failure that opened
    # the breaker), every other event was shed.
    assert safe.breaker.state is BreakerState.open
    stats = safe.stats()
    assert stats.failed == 1
    assert 0 < stats.buffered <= 20
    if withFallback:
        assert [e["n"] for e in fallback.events] == list(range(total))
    recover(safe, sink, clock)
    assert sink.taken == list(range(total - stats.buffered, total))
    after = safe.stats()
    assert after.delivered == stats.buffered
    assert after.buffered == 0
    assert after.droppedByReason["overflow"] == total - 1 - stats.buffered
    assert after.balanced


def test_aFloodOfHugeEventsKeepsAtMostTheByteBound() -> None:
    """
    Events each larger than half the byte bound: one at a time is kept
    (the newest), the others counted as overflow, although the bound in
    events would keep 20.
    """
    sink = Breakable()
    clock = Clock()
    safe = quarantining(sink, clock)
    huge = "h" * 12_000
    for n in range(200):
        safe(event(n, payload=huge + str(n)))
        assert safe.bufferedBytes <= safe.bufferBytes
        assert safe.buffered <= 1
    stats = safe.stats()
    assert stats.buffered == 1
    assert stats.droppedByReason["overflow"] == 200 - 1 - stats.failed
    recover(safe, sink, clock)
    assert sink.taken == [199]
    assert safe.stats().balanced


def test_threadsFloodingSmallAndOccasionalBigEventsNeverRaiseAndAreAllCounted() -> None:
    """
    Four real threads flood a quarantined sink with small events (appended
    without the lock) and now and then one beyond its share of the byte
    bound (placed under the lock, which recounts the big items in the
    buffer while the others keep appending). The thread switch interval is
    made tiny so that the threads interleave inside every call, as they do
    now and then at the default one. No call raises (the recount iterated
    the sizes in Python: 'deque mutated during iteration', with the event
    then never counted), and every event is counted: received is exactly
    what was logged, and the accounts balance.
    """
    sink = Breakable()
    safe = quarantining(sink, bufferSize=100, bufferBytes=100 * 1000, resetTimeout=1000.0)
    safe(event(-1))
    assert safe.breaker.state is BreakerState.open
    perThread, threads = 60_000, 4
    errors: list[str] = []

    def flood(t: int) -> None:
        for n in range(perThread):
            try:
                if n % 150 == 149:
                    safe(event(n, t=t, payload="b" * 5000))
                else:
                    safe(event(n, t=t))
            except Exception as error:
                errors.append(repr(error))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=flood, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    stats = safe.stats()
    assert stats.received == 1 + perThread * threads
    assert stats.balanced
    assert safe.buffered <= safe.bufferSize
    assert safe.bufferedBytes <= safe.bufferBytes


@pytest.mark.parametrize("kind", ["OrderedDict", "defaultdict"])
def test_aFloodOfHugeDictSubclassEventsKeepsAtMostTheByteBound(kind: str) -> None:
    """
    Events that are dict subclasses (an C{OrderedDict}, a C{defaultdict}),
    each larger than half the byte bound, are sized by their items like a
    dict (they were sized by their attributes, which they do not have: 64
    bytes each, so twenty 12 kB events were kept against a 20 kB bound).
    """
    from collections import OrderedDict, defaultdict

    def make(n: int) -> LogEvent:
        items = event(n, payload="h" * 12_000 + str(n))
        return OrderedDict(items) if kind == "OrderedDict" else defaultdict(str, items)

    sink = Breakable()
    clock = Clock()
    safe = quarantining(sink, clock)
    for n in range(100):
        safe(make(n))
        assert safe.buffered <= 1
        assert safe.bufferedBytes <= safe.bufferBytes
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == 100 - 1 - stats.failed
    recover(safe, sink, clock)
    assert sink.taken == [99]
    assert safe.stats().balanced


def test_withBigEventsBufferedEachEventCostsNoPassOverTheBuffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    While an event bigger than its share of the byte bound is buffered,
    every shed event goes through the lock, and the buffer's total size is
    kept up to date as events come and go: it is counted over the whole
    buffer once when the first big event comes and once every
    C{bufferSize} events after that, not for every event (which made each
    event about 50 times dearer). The buffer still holds the longest run of
    newest events that fits both bounds.
    """
    from twisted_safelog import _replay
    from twisted_safelog._sizes import approximateSize

    passes = [0]
    count = _replay._count

    def counted(sizes: object, slot: int) -> tuple[int, int]:
        passes[0] += 1
        return count(sizes, slot)  # type: ignore[arg-type]

    monkeypatch.setattr(_replay, "_count", counted)
    safe = quarantining(Breakable(), bufferSize=100, bufferBytes=200_000)
    total = 5_000
    events = [
        event(n, payload=("b" * 60_000 if n % 25 == 0 else "s" * 300) + str(n))
        for n in range(total)
    ]
    for e in events:
        safe(e)
        assert safe.bufferedBytes <= safe.bufferBytes
    assert passes[0] <= 1 + total // 100 + 1, passes[0]
    # The longest run of newest events within both bounds.
    fits, size = 0, 0
    for e in reversed(events):
        if fits == safe.bufferSize or size + approximateSize(e) > safe.bufferBytes:
            break
        fits += 1
        size += approximateSize(e)
    assert [e["n"] for e in safe._buffer] == [e["n"] for e in events[total - fits :]]
    assert safe.bufferedBytes == size
    stats = safe.stats()
    assert stats.droppedByReason["overflow"] == total - 1 - fits
    assert stats.balanced

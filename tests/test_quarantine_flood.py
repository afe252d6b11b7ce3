"""
A flood into a quarantined sink with no probe due (the shed path, which
L{HardenedSink.__call__} takes inline): the replay buffer keeps the newest
events within its bounds in events and in bytes after every event, and
every event that does not stay is counted as an overflow drop, exactly.
"""

from __future__ import annotations

import errno

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
    safe = SafeObserver(
        sink,
        clock=clock,
        reporter=RecordingReporter(),
        fallback=fallback if withFallback else None,
        failureThreshold=1,
        bufferSize=20,
        bufferBytes=20_000,
        resetTimeout=10.0,
        repeatBurst=0,
    )
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
    sink.broken = False
    clock.advance(10.0)
    safe.drain()
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
    safe = SafeObserver(
        sink,
        clock=clock,
        reporter=RecordingReporter(),
        failureThreshold=1,
        bufferSize=20,
        bufferBytes=20_000,
        resetTimeout=10.0,
        repeatBurst=0,
    )
    huge = "h" * 12_000
    for n in range(200):
        safe(event(n, payload=huge + str(n)))
        assert safe.bufferedBytes <= safe.bufferBytes
        assert safe.buffered <= 1
    stats = safe.stats()
    assert stats.buffered == 1
    assert stats.droppedByReason["overflow"] == 200 - 1 - stats.failed
    sink.broken = False
    clock.advance(10.0)
    safe.drain()
    assert sink.taken == [199]
    assert safe.stats().balanced

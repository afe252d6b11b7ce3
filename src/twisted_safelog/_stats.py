# -*- test-case-name: tests.test_safe -*-
"""
Exact, lock-free event counters and the immutable snapshot they produce.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

from ._compat import StringEnum

__all__ = ["Counter", "DropReason", "Drops", "SinkStats", "oneLine"]


class DropReason(StringEnum):
    """
    Why an event did not reach a sink. Every drop has one.
    """

    #: The event was caused by delivering an event to this same sink, on the
    #: same thread (the feedback loop's first turn).
    reentry = "reentry"
    #: A bounded buffer or queue was full.
    overflow = "overflow"
    #: The sink was quarantined and there was no buffer to keep the event.
    quarantine = "quarantine"
    #: The sink was closed (or the process was exiting) with events pending.
    shutdown = "shutdown"
    #: A lower-priority event was discarded to make room (non-blocking sinks).
    discarded = "discarded"
    #: Pending when the process forked: the other process delivers it (see
    #: L{twisted_safelog._fork}).
    fork = "fork"
    #: More identical events than the burst allowance within an interval:
    #: held back and summarised ("repeated N times").
    repeated = "repeated"


class Counter:
    """
    A counter that many threads may increment without a lock.

    C{itertools.count.__next__} is a single C call that does not release the
    GIL, so concurrent increments are never lost, and incrementing costs one
    call. (CPython 3.10 to 3.13 with the GIL is what the package supports; a
    free-threaded build would need another primitive.)
    """

    __slots__ = ("_count", "increment", "ticks")

    def __init__(self) -> None:
        self._count = itertools.count()
        # Bound once, so the hot path pays for one call and no attribute
        # lookups beyond this one.
        self.increment = self._count.__next__
        #: The underlying C{itertools.count}: C{next(counter.ticks)} is the
        #: same increment, a little cheaper than calling L{increment} (a
        #: vectorcall rather than a method-wrapper), for the hottest paths.
        self.ticks = self._count

    @property
    def value(self) -> int:
        # count's repr is "count(N)": the only public way to read it back
        # without advancing it.
        return int(repr(self._count)[6:-1])

    def __repr__(self) -> str:
        return f"Counter({self.value})"


class Drops:
    """
    Exact drop counts: one lock-free L{Counter} per L{DropReason}.
    """

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters = {reason: Counter() for reason in DropReason}

    def __repr__(self) -> str:
        return f"Drops({self.byReason()!r})"

    def add(self, reason: DropReason, count: int = 1) -> None:
        increment = self._counters[reason].increment
        for _ in range(count):
            increment()

    def byReason(self) -> dict[str, int]:
        return {reason.value: counter.value for reason, counter in self._counters.items()}


def _frozenMapping(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@frozen
class SinkStats:
    """
    A snapshot of a hardened sink's counters.

    At any moment when no event is being delivered,
    C{received == delivered + failed + dropped + buffered}.
    Fields can also be read by key (C{stats["received"]}).

    @ivar name: the sink's name in reports.
    @ivar state: C{"closed"} (healthy), C{"open"} (quarantined), C{"half-open"} (probing), or
        C{"stalled"}.
    @ivar received: events given to the sink.
    @ivar delivered: events the sink took.
    @ivar failed: events the sink failed on, not to be retried.
    @ivar dropped: events dropped, whatever the reason.
    @ivar droppedByReason: the drops by reason (L{DropReason} values).
    @ivar buffered: events held for replay (or queued).
    """

    name: str
    state: str
    received: int
    delivered: int
    failed: int
    dropped: int
    droppedByReason: Mapping[str, int] = field(converter=_frozenMapping)
    buffered: int
    #: Since when the sink has been healthy or quarantined (its probes do not
    #: count as changes), or since it was made: seconds since the epoch.
    since: float = 0.0
    #: The last failure, in one short line; L{None} if it never failed.
    lastError: str | None = None
    #: Seconds the sink's current delivery has been stalled (not returned,
    #: none completed), once that passed its stall timeout; 0 otherwise.
    stalledFor: float = 0.0

    @classmethod
    def fromCounters(
        cls,
        name: str,
        state: str,
        received: Counter,
        delivered: Counter,
        failed: Counter,
        drops: Drops,
        buffered: int,
        since: float = 0.0,
        lastError: str | None = None,
        stalledFor: float = 0.0,
    ) -> SinkStats:
        """
        A snapshot of a sink's live counters; C{dropped} is the sum of the
        drops by reason.
        """
        return cls.fromCounts(
            name,
            state,
            received.value,
            delivered.value,
            failed.value,
            drops.byReason(),
            buffered,
            since,
            lastError,
            stalledFor,
        )

    @classmethod
    def fromCounts(
        cls,
        name: str,
        state: str,
        received: int,
        delivered: int,
        failed: int,
        byReason: dict[str, int],
        buffered: int,
        since: float = 0.0,
        lastError: str | None = None,
        stalledFor: float = 0.0,
    ) -> SinkStats:
        """
        A snapshot of counts already read; C{dropped} is the sum of
        C{byReason}, and C{lastError} is cut to one short line.
        """
        return cls(
            name=name,
            state=state,
            received=received,
            delivered=delivered,
            failed=failed,
            dropped=sum(byReason.values()),
            droppedByReason=byReason,
            buffered=buffered,
            since=since,
            lastError=None if lastError is None else oneLine(lastError),
            stalledFor=stalledFor,
        )

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def keys(self) -> tuple[str, ...]:
        """
        The field names, for reading the stats by key (C{stats["received"]}).
        """
        return _FIELDS

    def asDict(self) -> dict[str, Any]:
        """
        The snapshot as a plain dict (for JSON status files and messages).
        """
        result = {key: getattr(self, key) for key in _FIELDS}
        result["state"] = str(self.state)
        result["droppedByReason"] = dict(self.droppedByReason)
        return result

    @property
    def balanced(self) -> bool:
        """
        Does the accounting identity hold for this snapshot?
        """
        return self.received == (self.delivered + self.failed + self.dropped + self.buffered)

    def summary(self) -> str:
        """
        The counts in one short line, for reports.
        """
        drops = ", ".join(f"{k}={v}" for k, v in self.droppedByReason.items() if v)
        return (
            f"received={self.received} delivered={self.delivered} "
            f"failed={self.failed} dropped={self.dropped}"
            + (f" ({drops})" if drops else "")
            + f" buffered={self.buffered}"
            + (f" stalled for {self.stalledFor:.3g}s" if self.stalledFor else "")
        )


_FIELDS = (
    "name",
    "state",
    "received",
    "delivered",
    "failed",
    "dropped",
    "droppedByReason",
    "buffered",
    "since",
    "lastError",
    "stalledFor",
)


def oneLine(text: str, limit: int = 160) -> str:
    """
    C{text} as one short line: its first line, cut to C{limit} characters.
    """
    line = text.strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."

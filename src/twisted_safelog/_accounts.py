# -*- test-case-name: tests.test_safe -*-
"""
The exact, lock-free accounts of a L{HardenedSink}: each event is counted
once, by the path it takes, so the healthy path and the quarantine path pay
for one counter each; L{SinkStats} is derived from the counts when asked.
"""

from __future__ import annotations

import threading
from collections.abc import Sized

from ._stats import Counter, DropReason, Drops, SinkStats

__all__ = ["SinkAccounts"]

# Drops reported in aggregate (not one report per event).
_AGGREGATED = (DropReason.overflow, DropReason.quarantine, DropReason.shutdown)


class SinkAccounts:
    """
    The counters behind L{HardenedSink.stats}.

    Every event is counted exactly once on arrival or, on the healthy path,
    on delivery:

     - C{fast}: delivered on the healthy path (received I{and} delivered:
       one count for both);
     - C{shed}: arrived while the sink was quarantined with no probe due:
       appended to the replay buffer, or with no buffer dropped
       (C{"quarantine"}): one count for both;
     - C{received}: took any other path (failure, reentry, replay, ...),
       which counts its outcome in C{delivered}, C{failed} or C{drops}.

    The replay buffer is a bounded C{deque} that drops its oldest item by
    itself when full, so overflow drops are not counted one by one: every
    item put in the buffer is counted (C{shed} or C{queued}), every item
    taken out (C{unqueued}), and what is neither taken out nor still there
    was dropped for overflow. Exact whenever no event is in flight.
    """

    __slots__ = (
        "delivered",
        "drops",
        "failed",
        "fast",
        "overflowShown",
        "queued",
        "received",
        "reportLock",
        "reported",
        "shed",
        "unqueued",
    )

    def __init__(self) -> None:
        self.fast = Counter()
        self.shed = Counter()
        self.received = Counter()
        self.delivered = Counter()
        self.failed = Counter()
        self.queued = Counter()
        self.unqueued = Counter()
        self.drops = Drops()
        #: Drops already reported, by reason.
        self.reported = dict.fromkeys(_AGGREGATED, 0)
        self.reportLock = threading.RLock()
        #: The largest overflow count a snapshot has shown.
        self.overflowShown = 0

    def ended(self) -> int:
        """
        How many deliveries have ended (delivered or failed), for the stall
        watchdog.
        """
        return self.fast.value + self.delivered.value + self.failed.value

    def snapshot(
        self,
        name: str,
        state: str,
        buffer: Sized,
        buffering: bool,
        since: float = 0.0,
        lastError: str | None = None,
        stalledFor: float = 0.0,
    ) -> SinkStats:
        """
        The counts as a L{SinkStats}; C{buffer} is the replay buffer, which
        exists if C{buffering}. The other arguments are passed on.

        Taken while events are in flight, the overflow count is never more
        than the true count and never less than any earlier snapshot's (it
        is exported as a counter, which must not go down): an item is
        counted in after it is appended and counted out before it is taken
        out, the counts in are read before the buffer's length and the
        count out after it, and the result is kept at least the largest
        shown so far.
        """
        fast = self.fast.value
        shed = self.shed.value
        queued = self.queued.value
        buffered = len(buffer)
        unqueued = self.unqueued.value
        byReason = self.drops.byReason()
        if buffering:
            overflow = shed + queued - unqueued - buffered
            with self.reportLock:
                if overflow < self.overflowShown:
                    overflow = self.overflowShown
                else:
                    self.overflowShown = overflow
            byReason[DropReason.overflow.value] += overflow
        else:
            byReason[DropReason.quarantine.value] += shed
        return SinkStats.fromCounts(
            name,
            state,
            fast + shed + self.received.value,
            fast + self.delivered.value,
            self.failed.value,
            byReason,
            buffered,
            since,
            lastError,
            stalledFor,
        )

    def unreported(self, stats: SinkStats) -> list[tuple[str, int]]:
        """
        The drops in C{stats} not reported yet, by reason (marked reported).
        """
        pending = []
        with self.reportLock:
            for reason in _AGGREGATED:
                count = stats.droppedByReason[reason.value] - self.reported[reason]
                if count > 0:
                    self.reported[reason] += count
                    pending.append((reason.value, count))
        return pending

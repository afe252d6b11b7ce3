# -*- test-case-name: tests.test_status -*-
"""
L{status}: what every hardened sink alive in the process is doing, as
immutable snapshots, from a registry that holds the sinks weakly.

Hardened sinks register themselves in L{twisted_safelog._registry} when they
are made (whoever makes them: an application, L{install}, the twistd
factory); nothing here keeps one alive. State-change watchers (the status
file) hear of every breaker state change of every registered sink, outside
any lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from ._registry import hardenedSinks
from ._stats import SinkStats

__all__ = [
    "HEALTHY_STATE",
    "STALLED_STATE",
    "isHealthy",
    "shownState",
    "stateChanged",
    "status",
    "uniqueNames",
    "watchStateChanges",
]

#: The one state in which a sink is healthy: its breaker is closed.
#: Everything else (open, half-open, stalled, ...) needs attention.
HEALTHY_STATE = "closed"
#: What status files and metrics call a sink whose delivery is stalled.
STALLED_STATE = "stalled"


_lock = threading.Lock()
_watchers: list[Callable[[], object]] = []


def status() -> tuple[SinkStats, ...]:
    """
    A snapshot of every hardened sink alive in this process (observers,
    handlers, file sinks, non-blocking observers), oldest first: each an
    immutable L{SinkStats} with its name, state, counters by outcome and by
    drop reason, when its state last changed (C{since}, seconds since the
    epoch) and its last error in one short line (C{lastError}).

    The sinks are held weakly, so asking keeps nothing alive; a sink whose
    snapshot cannot be taken is left out rather than raise.
    """
    snapshots: list[SinkStats] = []
    for sink in hardenedSinks():
        try:
            snapshots.append(sink.stats())  # type: ignore[arg-type]
        except Exception:
            # A status query must never fail because one sink is odd.
            pass
    return tuple(snapshots)


def isHealthy(stats: SinkStats) -> bool:
    """
    Is this sink healthy: its breaker closed, and no delivery stalled?

    @param stats: one sink's L{SinkStats}.
    """
    return str(stats.state) == HEALTHY_STATE and not _stalledFor(stats)


def shownState(stats: SinkStats) -> str:
    """
    The state to show an operator: C{"stalled"} while a delivery is stalled
    (a non-blocking sink's worker stuck in its sink), else the breaker's.
    """
    return STALLED_STATE if _stalledFor(stats) else str(stats.state)


def _stalledFor(stats: SinkStats) -> float:
    # Sinks that cannot stall have no such field.
    return float(getattr(stats, "stalledFor", 0.0) or 0.0)


def uniqueNames(snapshots: Iterable[SinkStats]) -> list[tuple[str, SinkStats]]:
    """
    Pair each snapshot with a name no other has (C{"name #2"} for the second
    sink of the same name), for status files and metric labels, where two
    series with one name would be one.
    """
    seen: dict[str, int] = {}
    result = []
    for stats in snapshots:
        count = seen.get(stats.name, 0) + 1
        seen[stats.name] = count
        result.append((stats.name if count == 1 else f"{stats.name} #{count}", stats))
    return result


def watchStateChanges(watcher: Callable[[], object]) -> Callable[[], None]:
    """
    Call C{watcher()} after every state change of any hardened sink (from
    whichever thread made the change; it must be quick and must not log).
    Returns a function that stops watching.
    """
    with _lock:
        _watchers.append(watcher)

    def stop() -> None:
        with _lock:
            if watcher in _watchers:
                _watchers.remove(watcher)

    return stop


def stateChanged() -> None:
    """
    Tell the watchers that some sink changed state. Called by the sinks, on
    their state-change path only (never per event); never raises.
    """
    for watcher in list(_watchers):
        try:
            watcher()
        except Exception:
            # A watcher must not break the sink that changed state.
            pass

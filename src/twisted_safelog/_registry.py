# -*- test-case-name: tests.test_registry -*-
"""
What a hardened sink promises (L{IHardenedSink}), and a weak registry of
every one alive in the process, whoever made it.

The registry keeps nothing alive: a sink the application lets go leaves it
when it is collected. Status reports, metrics and the accounting at exit
read it.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref

from zope.interface import Attribute, Interface

__all__ = ["IHardenedSink", "hardenedSinks", "isHardened", "register"]


class IHardenedSink(Interface):
    """
    A sink wrapped by twisted-safelog: it never raises into its caller, is
    never re-entered by what it causes, and accounts for every event.
    Wrapping one again changes nothing, so L{install} leaves these alone.
    """

    name = Attribute("A short name that tells this sink from the others, used in every report.")

    def stats() -> object:
        """
        An immutable L{SinkStats} snapshot of the sink's counters and state.
        """

    def drain() -> None:
        """
        Deliver what the sink holds back (a replay buffer, a queue) as far
        as the sink can take it now, without waiting for the next event.
        """

    def close() -> None:
        """
        Deliver what can be delivered, then count (reason C{"shutdown"}) and
        report what is still held back.
        """


def isHardened(thing: object) -> bool:
    """
    Is C{thing} a hardened sink (it provides L{IHardenedSink})?
    """
    return IHardenedSink.providedBy(thing)


_lock = threading.Lock()
# Keyed by a serial number, so the sinks are listed oldest first (stable
# tables and metric series); the values are weak.
_serial = itertools.count()
_sinks: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()


def _afterForkInChild() -> None:
    # Another thread may have held the lock when the process forked.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_afterForkInChild)


def register(sink: object) -> None:
    """
    Add C{sink} (an L{IHardenedSink}) to the registry, weakly.
    """
    with _lock:
        _sinks[next(_serial)] = sink


def unregister(sink: object) -> None:
    """
    Take C{sink} out of the registry: it is gone for the operator (removed
    from its publisher and closed) even if a reference cycle keeps the
    object itself until the cycle collector runs.
    """
    with _lock:
        for key, value in list(_sinks.items()):
            if value is sink:
                del _sinks[key]


def hardenedSinks() -> list[IHardenedSink]:
    """
    Every hardened sink alive now, oldest first.
    """
    with _lock:
        return [sink for _, sink in sorted(_sinks.items())]  # type: ignore[misc]

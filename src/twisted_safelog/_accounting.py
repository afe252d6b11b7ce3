# -*- test-case-name: tests.test_accounting -*-
"""
Every hardened sink in the process is accounted for at interpreter exit and
at reactor shutdown, whoever made it (L{install}, the twistd factory, or the
application itself in a C{.tac} or in code): whatever a sink still holds is
replayed if its breaker allows, else counted as dropped (C{"shutdown"}) and
reported in one line naming the sink and the count.

twistd ends by re-raising SIGTERM, which skips C{atexit}: so the same
accounting also runs after the reactor shuts down, when a reactor is
installed (it never installs one).
"""

from __future__ import annotations

import atexit
import sys
import threading

from ._nonblocking import NonBlockingObserver
from ._registry import hardenedSinks

__all__ = ["accountAll", "watchReactor"]

_lock = threading.Lock()
_watching: list[object] = []


def accountAll() -> None:
    """
    Account every hardened sink alive now: queues are flushed first (what
    they deliver may land in a quarantined sink's buffer), then every other
    sink replays what it can and counts and reports what is left. The sinks
    keep working afterwards. Never raises.
    """
    try:
        sinks = hardenedSinks()
    except Exception:
        return
    queues = [sink for sink in sinks if isinstance(sink, NonBlockingObserver)]
    for queue in queues:
        try:
            queue.shutdown()
        except Exception:
            pass
    for sink in sinks:
        if isinstance(sink, NonBlockingObserver):
            continue
        try:
            sink.close()
        except Exception:
            pass


def watchReactor() -> None:
    """
    Run L{accountAll} after the reactor shuts down, if a reactor is
    installed; once per reactor. Cheap to call often.
    """
    reactorModule = sys.modules.get("twisted.internet.reactor")
    if reactorModule is None:
        return
    with _lock:
        if any(watched is reactorModule for watched in _watching):
            return
        try:
            reactorModule.addSystemEventTrigger("after", "shutdown", accountAll)
        except Exception:
            return
        _watching.append(reactorModule)


atexit.register(accountAll)
watchReactor()

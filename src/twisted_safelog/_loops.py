# -*- test-case-name: tests.test_loops -*-
"""
The loop doctor: find the feedback loops in a live logging configuration
and say them in words.

A loop is a path from the Twisted publisher back to it: through a bridge to
stdlib logging, a handler, and a stream that is the log again (a redirected
C{sys.stdout}/C{sys.stderr}), either directly or when the handler fails and
C{handleError} writes its traceback to C{sys.stderr}. A loop is guarded when
something on the path cuts it: a L{SafeObserver} or L{SafeHandler} (reentry
guard, breaker), or the bridges' provenance marks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from attrs import frozen
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LegacyLogObserverWrapper,
    LoggingFile,
    LogPublisher,
    STDLibLogObserver,
    globalLogPublisher,
)

from ._handlers import SafeHandler, hardeningOf, loggerTree
from ._nonblocking import NonBlockingObserver
from ._report import describe
from ._safe import HardenedSink
from ._stdlib import StdlibObserver, TwistedHandler
from ._twistd import _TwistdObserver

__all__ = ["FeedbackLoop", "findFeedbackLoops"]

PUBLISHER = "twisted publisher"


@frozen
class FeedbackLoop:
    """
    One way an event can come back to where it started.

    @ivar path: the steps, from the publisher back to it.
    @ivar guards: what cuts the loop (empty if nothing does).
    """

    path: tuple[str, ...]
    guards: tuple[str, ...]

    @property
    def guarded(self) -> bool:
        return bool(self.guards)

    def __str__(self) -> str:
        verdict = f"guarded by {', '.join(self.guards)}" if self.guards else "UNGUARDED"
        return " -> ".join(self.path) + f"  [{verdict}]"


def _name(thing: object) -> str:
    if isinstance(thing, LoggingFile):
        return f"<{thing.log.namespace} LoggingFile>"
    if isinstance(thing, logging.Handler):
        target = getattr(thing, "baseFilename", None) or getattr(thing, "stream", None)
        if target is not None:
            shown = target if isinstance(target, str) else _name(target)
            return f"{type(thing).__name__}({shown})"
        return type(thing).__name__
    if hasattr(thing, "name") and isinstance(getattr(thing, "name", None), str):
        return f"<{thing.name}>"
    return describe(thing, 60)


def _unwrapObserver(
    observer: Any, guards: tuple[str, ...]
) -> Iterator[tuple[Any, tuple[str, ...]]]:
    """
    The observers at the end of C{observer}'s chain of wrappers, each with
    the guards passed on the way.
    """
    for _ in range(20):
        if isinstance(observer, HardenedSink):
            guards = (*guards, type(observer).__name__)
            observer = observer.sink
        elif isinstance(observer, _TwistdObserver):
            observer = observer.filtered
        elif isinstance(observer, NonBlockingObserver):
            guards = (*guards, "NonBlockingObserver")
            observer = observer.observer
        elif isinstance(observer, FilteringLogObserver):
            observer = observer._observer
        elif isinstance(observer, LegacyLogObserverWrapper):
            observer = observer.legacyObserver
        elif getattr(observer, "__self__", None) is not None and hasattr(
            observer.__self__, "_newObserver"
        ):
            # twisted.python.log.PythonLoggingObserver.emit
            observer = observer.__self__._newObserver
        elif isinstance(observer, LogPublisher) and observer is not globalLogPublisher:
            for inner in list(observer._observers):
                yield from _unwrapObserver(inner, guards)
            return
        else:
            break
    yield observer, guards


def _handlersFor(logger: logging.Logger) -> list[logging.Handler]:
    """
    The handlers a record logged to C{logger} reaches (lastResort if none).
    """
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    if not found and logging.lastResort is not None:
        found.append(logging.lastResort)
    return found


def _isLog(stream: object, publisher: LogPublisher) -> bool:
    return isinstance(stream, LoggingFile) and getattr(stream.log, "observer", None) in (
        publisher,
        globalLogPublisher,
    )


def findFeedbackLoops(
    publisher: LogPublisher | None = None, stdio: ModuleType | Any = None
) -> list[FeedbackLoop]:
    """
    Every feedback loop in the live configuration of C{publisher} (the global
    one), C{stdio} (the C{sys} module) and stdlib logging, with whether each
    is guarded.

    @param publisher: the publisher to start from (the global one if L{None}).
    @param stdio: what has C{stdout} and C{stderr} (the C{sys} module if L{None}).
    """
    publisher = globalLogPublisher if publisher is None else publisher
    stdio = sys if stdio is None else stdio
    stderr = stdio.stderr
    loops: list[FeedbackLoop] = []
    seen: set[tuple[str, ...]] = set()

    def add(path: tuple[str, ...], guards: tuple[str, ...]) -> None:
        if path not in seen:
            seen.add(path)
            loops.append(FeedbackLoop(path, tuple(dict.fromkeys(guards))))

    for top in list(publisher._observers):
        for observer, guards in _unwrapObserver(top, ()):
            start = (PUBLISHER, _name(observer))
            if isinstance(observer, FileLogObserver):
                out = observer._outFile
                if _isLog(out, publisher):
                    add((*start, _name(out), PUBLISHER), guards)
                continue
            if isinstance(observer, STDLibLogObserver):
                loggers = [observer.logger]
                marks = False
            elif isinstance(observer, StdlibObserver):
                loggers = _namedLoggers(observer)
                marks = True
            else:
                continue
            for logger in loggers:
                via = (*start, f"logger {logger.name!r}")
                for handler in _handlersFor(logger):
                    _handlerLoops(handler, via, guards, marks, publisher, stderr, add)
    return loops


def _namedLoggers(observer: StdlibObserver) -> list[logging.Logger]:
    if observer.loggerName:
        return [logging.getLogger(observer.loggerName)]
    # Events of any namespace: every logger that has handlers, and the root.
    root, *rest = loggerTree()
    return [root, *(logger for logger in rest if logger.handlers)]


def _handlerLoops(
    handler: logging.Handler,
    via: tuple[str, ...],
    guards: tuple[str, ...],
    marks: bool,
    publisher: LogPublisher,
    stderr: object,
    add: Any,
) -> None:
    if isinstance(handler, SafeHandler):
        guards = (*guards, "SafeHandler")
        handler = handler.handler
    elif hardeningOf(handler) is not None:
        guards = (*guards, "SafeHandler")
    name = _name(handler)
    if isinstance(handler, TwistedHandler):
        extra = ("provenance marks",) if marks else ()
        add((*via, name, PUBLISHER), (*guards, *extra, "TwistedHandler reentry guard"))
        return
    stream = getattr(handler, "stream", None)
    if handler is logging.lastResort:
        stream = stderr
        name = "logging.lastResort"
    if _isLog(stream, publisher):
        add((*via, name, _name(stream), PUBLISHER), guards)
    if _isLog(stderr, publisher) and handler is not logging.lastResort:
        # When the handler fails, Handler.handleError writes the traceback
        # to whatever sys.stderr is then.
        handled = "SafeHandler" in guards
        add(
            (*via, name, "(on failure) handleError", f"sys.stderr {_name(stderr)}", PUBLISHER),
            guards if not handled else (*guards, "handleError captured"),
        )

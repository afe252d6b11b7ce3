# -*- test-case-name: tests.test_stdlib -*-
"""
Bridges between C{twisted.logger} and stdlib C{logging}, both ways, that
mark what they carry so neither sends back what the other produced.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from ._guard import ReentryGuard
from ._report import describe
from ._signals import afterSignal, interruptedDelivery
from ._stats import Counter

__all__ = [
    "ORIGIN_KEY",
    "StdlibObserver",
    "TwistedHandler",
    "fromStdlibLevel",
]

#: The event key and the C{LogRecord} attribute that say which side of the
#: bridge made them: C{"stdlib"} on events made by L{TwistedHandler},
#: C{"twisted"} on records made by L{StdlibObserver}.
ORIGIN_KEY = "twisted_safelog_origin"

_toStdlib: Mapping[Any, int] = {
    LogLevel.debug: logging.DEBUG,
    LogLevel.info: logging.INFO,
    LogLevel.warn: logging.WARNING,
    LogLevel.error: logging.ERROR,
    LogLevel.critical: logging.CRITICAL,
}

# Highest first, so an in-between stdlib level maps to the Twisted level at
# or below it (25 -> info, 35 -> warn).
_fromStdlib = sorted(((v, k) for k, v in _toStdlib.items()), reverse=True)

# LogRecord's own attributes (plus what Formatter.format adds), which event
# fields must not overwrite.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", (), None))
) | {"message", "asctime"}


def fromStdlibLevel(levelno: int) -> Any:
    """
    The Twisted L{LogLevel} for a stdlib level number.
    """
    for number, level in _fromStdlib:
        if levelno >= number:
            return level
    return LogLevel.debug


class _EventMessage:
    """
    A record's C{msg} that formats the Twisted event only when a handler
    asks, and never raises while doing so (C{formatEvent} renders an event
    it cannot format as a description of the problem).
    """

    __slots__ = ("event",)

    def __init__(self, event: LogEvent) -> None:
        self.event = event

    def __str__(self) -> str:
        event = self.event
        try:
            text = formatEvent(event)
            if not text and "log_format" not in event:
                # Legacy events carry their text in "message".
                message = event.get("message", ())
                text = " ".join(map(str, message)) if isinstance(message, tuple) else ""
            return text
        except Exception:
            return f"<unformattable event: {describe(event, 200)}>"

    def __repr__(self) -> str:
        return repr(str(self))


def _excInfo(event: LogEvent) -> Any:
    failure = event.get("log_failure")
    if not isinstance(failure, Failure):
        return None
    try:
        return (failure.type, failure.value, failure.getTracebackObject())  # type: ignore[no-untyped-call]
    except Exception:
        # A failure whose traceback cannot be rebuilt still says what failed.
        return (failure.type, failure.value, None)


@implementer(ILogObserver)
class StdlibObserver:
    """
    An L{ILogObserver} that hands events to stdlib logging, to the logger
    named by the event's C{log_namespace} (so C{logging} configuration per
    module works), or to C{loggerName} for every event if given.

    The record's message is formatted lazily and safely; C{log_failure}
    becomes C{exc_info}; every event field that does not clash with a
    C{LogRecord} attribute is set on the record, and the whole event is on
    C{record.twisted_event}. Records are marked as coming from Twisted
    (L{ORIGIN_KEY}), so L{TwistedHandler} does not send them back; events
    that L{TwistedHandler} made are not forwarded. A reentrant call on the
    same thread (a handler that logs through Twisted) is dropped and
    counted in C{reentered}; one a signal handler made in the middle of a
    call (twistd's SIGTERM handler) is forwarded once that call returns.

    @param loggerName: send every event to this logger instead of the one named by its
        C{log_namespace}.
    @param defaultName: the logger for events without a namespace.
    """

    def __init__(self, loggerName: str | None = None, defaultName: str = "twisted") -> None:
        self.loggerName = loggerName
        self.defaultName = defaultName
        self._guard = ReentryGuard()
        self.reentered = Counter()
        self._interrupting: deque[LogEvent] = deque()

    def __repr__(self) -> str:
        target = repr(self.loggerName) if self.loggerName else "log_namespace"
        return f"StdlibObserver({target})"

    def __call__(self, event: LogEvent) -> None:
        if event.get(ORIGIN_KEY) == "stdlib":
            return
        tid = self._guard.enterOnce()
        if tid is None:
            if interruptedDelivery(self, _OBSERVER_CALLS):
                self._interrupting.append(event)
            else:
                self.reentered.increment()
            return
        try:
            self._forward(event)
        finally:
            self._guard.exit(tid)
            # Also when the call raised (a handler that logs, then exits).
            if self._interrupting:
                afterSignal(self._interrupting, self, self._guard.active)

    def _forward(self, event: LogEvent) -> None:
        name = self.loggerName or event.get("log_namespace") or self.defaultName
        if not isinstance(name, str):
            name = self.defaultName
        logger = logging.getLogger(name)
        levelno = _toStdlib.get(event.get("log_level"), logging.INFO)
        if not logger.isEnabledFor(levelno):
            return
        record = logger.makeRecord(
            name,
            levelno,
            "(twisted)",
            0,
            _EventMessage(event),
            (),
            _excInfo(event),
        )
        for key, value in event.items():
            if isinstance(key, str) and key not in _RECORD_ATTRIBUTES:
                record.__dict__[key] = value
        record.twisted_event = event
        record.__dict__[ORIGIN_KEY] = "twisted"
        time = event.get("log_time")
        if isinstance(time, float | int):
            record.created = float(time)
            record.msecs = (record.created - int(record.created)) * 1000
        logger.handle(record)


class TwistedHandler(logging.Handler):
    """
    A stdlib handler that publishes records as Twisted events to
    C{publisher} (the global one by default): C{log_namespace} is the
    logger's name, levels are mapped, C{exc_info} becomes C{log_failure},
    and a record whose message cannot be formatted is published with a
    clear fallback text instead of failing. Events are marked as coming from
    stdlib (L{ORIGIN_KEY}); records that L{StdlibObserver} made are not
    published again. A reentrant call on the same thread is dropped and
    counted in C{reentered}; one a signal handler made in the middle of a
    call is published once that call returns.

    @param publisher: where events are published (the global publisher if L{None}).
    @param level: the handler's level, as for any C{logging.Handler}.
    """

    def __init__(self, publisher: LogPublisher | None = None, level: int = logging.NOTSET):
        super().__init__(level)
        self.publisher = globalLogPublisher if publisher is None else publisher
        self._guard = ReentryGuard()
        self.reentered = Counter()
        self._interrupting: deque[logging.LogRecord] = deque()

    def __repr__(self) -> str:
        return f"<TwistedHandler ({logging.getLevelName(self.level)})>"

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the publisher is thread-safe and taking a lock
        # around it would serialise every thread that logs.
        if getattr(record, ORIGIN_KEY, None) == "twisted":
            return False
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        tid = self._guard.enterOnce()
        if tid is None:
            if interruptedDelivery(self, _HANDLER_CALLS):
                self._interrupting.append(record)
            else:
                self.reentered.increment()
            return
        try:
            self.publisher(self.eventFromRecord(record))
        except Exception:
            self.handleError(record)
        finally:
            self._guard.exit(tid)
            # Also when the call raised (a handler that logs, then exits).
            if self._interrupting:
                afterSignal(self._interrupting, self.emit, self._guard.active)

    def eventFromRecord(self, record: logging.LogRecord) -> LogEvent:
        """
        The Twisted event for C{record}.

        @param record: a stdlib log record.
        @return: the Twisted event for it, marked as coming from stdlib logging.
        """
        try:
            text = record.getMessage()
        except Exception as error:
            text = (
                f"<message could not be formatted ({type(error).__name__}: "
                f"{_safeStr(error)}): msg={describe(record.msg, 200)} "
                f"args={describe(record.args, 200)}>"
            )
        event: LogEvent = {
            "log_format": "{stdlib_message}",
            "stdlib_message": text,
            "log_level": fromStdlibLevel(record.levelno),
            "log_namespace": record.name,
            "log_source": None,
            "log_time": record.created,
            "log_system": "-",
            "stdlib_levelname": record.levelname,
            "stdlib_pathname": record.pathname,
            "stdlib_lineno": record.lineno,
            "stdlib_funcName": record.funcName,
            ORIGIN_KEY: "stdlib",
        }
        if record.exc_info and record.exc_info[1] is not None:
            _, value, tb = record.exc_info
            try:
                event["log_failure"] = Failure(value, type(value), tb)  # type: ignore[no-untyped-call]
            except Exception:
                pass
        return event


def _safeStr(thing: object) -> str:
    try:
        return str(thing)
    except Exception:
        return describe(thing)


# The code of the bridges' calls (see interruptedDelivery).
_OBSERVER_CALLS = frozenset({id(StdlibObserver.__call__.__code__)})
_HANDLER_CALLS = frozenset({id(TwistedHandler.emit.__code__)})

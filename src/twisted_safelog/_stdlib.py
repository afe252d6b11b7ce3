# -*- test-case-name: tests.test_stdlib -*-
"""
Bridges between C{twisted.logger} and stdlib C{logging}, both ways, that
mark what they carry so neither sends back what the other produced; and
L{SafeHandler}, the hardening of L{SafeObserver} around any stdlib handler.
"""

from __future__ import annotations

import logging
import sys
import threading
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

from ._breaker import IClock
from ._guard import ReentryGuard, currentThread
from ._report import IReporter, defaultReporter, describe
from ._safe import DEFAULT_BUFFER_SIZE, HardenedSink
from ._stats import Counter, SinkStats

__all__ = [
    "ORIGIN_KEY",
    "SafeHandler",
    "StdlibObserver",
    "TwistedHandler",
    "hardenHandlers",
    "safeHandlerFor",
    "unhardenHandler",
    "unhardenHandlers",
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
    counted in C{reentered}.
    """

    def __init__(self, loggerName: str | None = None, defaultName: str = "twisted") -> None:
        self.loggerName = loggerName
        self.defaultName = defaultName
        self._guard = ReentryGuard()
        self.reentered = Counter()

    def __repr__(self) -> str:
        target = repr(self.loggerName) if self.loggerName else "log_namespace"
        return f"StdlibObserver({target})"

    def __call__(self, event: LogEvent) -> None:
        if event.get(ORIGIN_KEY) == "stdlib":
            return
        guard = self._guard
        tid = currentThread()
        if tid in guard.active:
            self.reentered.increment()
            return
        guard.active.add(tid)
        try:
            self._forward(event)
        finally:
            guard.active.discard(tid)

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
    counted in C{reentered}.
    """

    def __init__(self, publisher: LogPublisher | None = None, level: int = logging.NOTSET):
        super().__init__(level)
        self.publisher = globalLogPublisher if publisher is None else publisher
        self._guard = ReentryGuard()
        self.reentered = Counter()

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
        guard = self._guard
        tid = currentThread()
        if tid in guard.active:
            self.reentered.increment()
            return
        guard.active.add(tid)
        try:
            self.publisher(self.eventFromRecord(record))
        except Exception:
            self.handleError(record)
        finally:
            guard.active.discard(tid)

    def eventFromRecord(self, record: logging.LogRecord) -> LogEvent:
        """
        The Twisted event for C{record}.
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


class _HandlerFailed(Exception):
    """
    A handler reported a failure through C{handleError} without raising.
    """


class SafeHandler(logging.Handler):
    """
    A stdlib handler around another, with the guarantees of L{SafeObserver}:
    a per-thread reentry guard, a circuit breaker that quarantines the
    handler after C{failureThreshold} consecutive failures, a replay buffer
    of records, a C{fallback} handler, out-of-band reports and exact
    counters (L{stats}).

    Stdlib handlers swallow their own errors and call C{handleError}, which
    writes a traceback to C{sys.stderr} (under twistd, the log again).
    SafeHandler replaces the wrapped handler's C{handleError} so that such a
    failure is counted by the breaker and reported out of band, and nothing
    is ever written to C{sys.stderr}. L{close} puts it back.

    The level mirrors the wrapped handler's (C{setLevel} sets both);
    C{setFormatter} and C{flush} go to the wrapped handler.
    """

    def __init__(
        self,
        handler: logging.Handler,
        *,
        name: str | None = None,
        failureThreshold: int = 5,
        resetTimeout: float = 1.0,
        maxResetTimeout: float = 60.0,
        backoffFactor: float = 2.0,
        bufferSize: int = DEFAULT_BUFFER_SIZE,
        fallback: logging.Handler | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
        retryFailed: bool = False,
        maxAttempts: int = 10,
    ) -> None:
        if not isinstance(handler, logging.Handler):
            raise TypeError(f"SafeHandler needs a logging.Handler, not {handler!r}")
        super().__init__(handler.level)
        self.handler = handler
        reporter = defaultReporter() if reporter is None else reporter
        name = name if name is not None else describe(handler)
        if fallback is not None and not isinstance(fallback, SafeHandler):
            fallback = SafeHandler(
                fallback, name=f"{name} (fallback)", bufferSize=0, reporter=reporter, clock=clock
            )
        self.fallback = fallback
        self._errors: dict[int, BaseException] = {}
        self.core: HardenedSink[logging.LogRecord] = HardenedSink(
            self._handleInner,
            name=name,
            failureThreshold=failureThreshold,
            resetTimeout=resetTimeout,
            maxResetTimeout=maxResetTimeout,
            backoffFactor=backoffFactor,
            bufferSize=bufferSize,
            fallback=None if fallback is None else fallback.handle,
            reporter=reporter,
            clock=clock,
            retryFailed=retryFailed,
            maxAttempts=maxAttempts,
        )
        self._originalHandleError = handler.__dict__.get("handleError")
        handler.handleError = self._capture  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<SafeHandler {self.core.name} {self.core.breaker.state.value}>"

    @property
    def breaker(self) -> Any:
        return self.core.breaker

    def stats(self) -> SinkStats:
        """
        An immutable snapshot of the wrapped handler's counters and state.
        """
        return self.core.stats()

    def _capture(self, record: logging.LogRecord) -> None:
        """
        Replaces the wrapped handler's C{handleError}: remember the error for
        L{_handleInner} instead of printing it.
        """
        error = sys.exc_info()[1]
        if error is None:
            error = _HandlerFailed(f"{describe(self.handler)} called handleError")
        self._errors[currentThread()] = error

    def _handleInner(self, record: logging.LogRecord) -> None:
        tid = currentThread()
        self._errors.pop(tid, None)
        self.handler.handle(record)
        error = self._errors.pop(tid, None)
        if error is not None:
            raise error

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock of our own around the wrapped handler: it takes its own,
        # and the breaker must see other threads while one is stuck.
        rv = self.filter(record)
        if rv:
            self.core(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        self.core(record)

    def setLevel(self, level: int | str) -> None:
        super().setLevel(level)
        self.handler.setLevel(level)

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        self.handler.setFormatter(fmt)

    def flush(self) -> None:
        try:
            self.handler.flush()
        except Exception as error:
            self.core.reporter.failure(self.core.name, error, "flush failed")

    def close(self) -> None:
        """
        Drop what is still buffered (counted, reason C{"shutdown"}), give the
        wrapped handler its C{handleError} back and close it.
        """
        self.core.close()
        unhardenHandler(self)
        try:
            self.handler.close()
        except Exception as error:
            self.core.reporter.failure(self.core.name, error, "close failed")
        super().close()


def _loggers(top: logging.Logger | None) -> list[logging.Logger]:
    """
    C{top} and every logger below it; the whole tree when C{top} is L{None}
    or the root logger.
    """
    root = logging.getLogger()
    if top is None:
        top = root
    existing = [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    if top is root:
        return [root, *existing]
    prefix = top.name + "."
    return [top, *(logger for logger in existing if logger.name.startswith(prefix))]


_hardenLock = threading.RLock()

#: The attribute on a wrapped handler that points at its SafeHandler, so a
#: handler shared by several loggers gets one breaker, not one per logger.
_SAFE_ATTRIBUTE = "_twisted_safelog_safeHandler"


def safeHandlerFor(handler: logging.Handler, **safeHandlerArguments: Any) -> SafeHandler:
    """
    The L{SafeHandler} around C{handler}: the one made before if there is
    one (a handler attached to several loggers is hardened once), or a new
    one. A L{SafeHandler} is returned as it is.
    """
    if isinstance(handler, SafeHandler):
        return handler
    with _hardenLock:
        existing = handler.__dict__.get(_SAFE_ATTRIBUTE)
        if isinstance(existing, SafeHandler) and existing.handler is handler:
            return existing
        safe = SafeHandler(handler, **safeHandlerArguments)
        handler.__dict__[_SAFE_ATTRIBUTE] = safe
        return safe


def _needsHardening(handler: logging.Handler) -> bool:
    return not isinstance(handler, SafeHandler | TwistedHandler)


def hardenHandlers(
    logger: logging.Logger | None = None, **safeHandlerArguments: Any
) -> list[SafeHandler]:
    """
    Replace every handler attached to C{logger} and the loggers below it
    (the whole tree, from the root, by default) with a L{SafeHandler}
    around it, in place; a handler shared by several loggers gets one
    L{SafeHandler}. Handlers that already are L{SafeHandler}s, and
    L{TwistedHandler}s (which cannot fail that way), are left alone.
    Returns the L{SafeHandler}s it put in place.
    """
    hardened: list[SafeHandler] = []
    with _hardenLock:
        for each in _loggers(logger):
            for index, handler in enumerate(list(each.handlers)):
                if _needsHardening(handler):
                    safe = safeHandlerFor(handler, **safeHandlerArguments)
                    each.handlers[index] = safe
                    if safe not in hardened:
                        hardened.append(safe)
    return hardened


def unhardenHandler(safe: SafeHandler) -> logging.Handler:
    """
    Give the wrapped handler its C{handleError} back; return it.
    """
    inner = safe.handler
    if safe._originalHandleError is None:
        inner.__dict__.pop("handleError", None)
    else:
        inner.handleError = safe._originalHandleError  # type: ignore[method-assign]
    if inner.__dict__.get(_SAFE_ATTRIBUTE) is safe:
        del inner.__dict__[_SAFE_ATTRIBUTE]
    return inner


def unhardenHandlers(logger: logging.Logger | None = None) -> None:
    """
    Undo L{hardenHandlers}: put the wrapped handlers back in place (their
    C{handleError} restored), without closing them.
    """
    with _hardenLock:
        for each in _loggers(logger):
            for index, handler in enumerate(list(each.handlers)):
                if isinstance(handler, SafeHandler):
                    each.handlers[index] = unhardenHandler(handler)

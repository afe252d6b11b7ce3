# -*- test-case-name: tests.test_stdlib -*-
"""
L{SafeHandler}: the hardening of L{SafeObserver} around any stdlib handler,
and the helpers that put it in place across a logger tree.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from ._breaker import IClock
from ._guard import currentThread
from ._policy import Policy
from ._registry import IHardenedSink
from ._report import IReporter, defaultReporter, describe
from ._safe import HardenedSink
from ._stats import SinkStats
from ._stdlib import TwistedHandler

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = [
    "SafeHandler",
    "hardenHandlers",
    "loggerTree",
    "safeHandlerFor",
    "unhardenHandler",
    "unhardenHandlers",
]


class _HandlerFailed(Exception):
    """
    A handler reported a failure through C{handleError} without raising.
    """


@implementer(IHardenedSink)
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

    @param handler: the stdlib handler to harden.
    @param policy: the hardening settings (L{Policy}); keyword C{settings}
        override its fields, as for L{SafeObserver}.
    @param fallback: a handler that also receives the records this one
        cannot take; hardened itself (same policy, no buffer).
    @param name: what reports and L{stats} call the handler.
    @param reporter: where failures and state changes are reported.
    @param clock: provides C{seconds()}; a monotonic clock by default.
    """

    def __init__(
        self,
        handler: logging.Handler,
        policy: Policy | None = None,
        *,
        name: str | None = None,
        fallback: logging.Handler | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
        **settings: Unpack[PolicySettings],
    ) -> None:
        if not isinstance(handler, logging.Handler):
            raise TypeError(f"SafeHandler needs a logging.Handler, not {handler!r}")
        policy = Policy.of(policy, settings, "SafeHandler()")
        super().__init__(handler.level)
        self.handler = handler
        reporter = defaultReporter() if reporter is None else reporter
        name = name if name is not None else describe(handler)
        if fallback is not None and not isinstance(fallback, SafeHandler):
            fallback = SafeHandler(
                fallback,
                policy.replace(bufferSize=0),
                name=f"{name} (fallback)",
                reporter=reporter,
                clock=clock,
            )
        self.fallback = fallback
        self._errors: dict[int, BaseException] = {}
        self.core: HardenedSink[logging.LogRecord] = HardenedSink(
            self._handleInner,
            policy,
            name=name,
            fallback=None if fallback is None else fallback.handle,
            reporter=reporter,
            clock=clock,
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

    def drain(self) -> None:
        """
        Replay buffered records as far as the breaker allows.
        """
        self.core.drain()

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


def loggerTree(top: logging.Logger | None = None) -> list[logging.Logger]:
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
        for each in loggerTree(logger):
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
        for each in loggerTree(logger):
            for index, handler in enumerate(list(each.handlers)):
                if isinstance(handler, SafeHandler):
                    each.handlers[index] = unhardenHandler(handler)

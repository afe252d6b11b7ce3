# -*- test-case-name: tests.test_handlers,tests.test_handlerkinds -*-
"""
The hardening of L{SafeObserver<twisted_safelog.SafeObserver>} for stdlib
handlers, applied I{in place}: the application's own handler object stays
where it is (in C{logger.handlers}, in C{logging._handlerList}, in its own
variables), and only two instance attributes change, C{emit} and
C{handleError}, so that a failure takes the hardened path. Level, filters,
formatter, lock, C{handle}, C{flush}, C{close} and C{removeHandler} are the
handler's own, untouched.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import weakref
from collections.abc import Callable
from types import FunctionType
from typing import TYPE_CHECKING, Any

from ._breaker import IClock
from ._instattrs import (
    classAttribute,
    declaredAttribute,
    instanceAttribute,
    removeInstanceAttribute,
    setInstanceAttribute,
)
from ._policy import Policy
from ._repeats import RECORDS
from ._report import IReporter, defaultReporter, describe, releaseName, uniqueName
from ._safe import HardenedSink
from ._stats import SinkStats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = [
    "HandlerHardening",
    "checkCollaborators",
    "hardenHandler",
    "hardeningOf",
    "hardenings",
]


def checkCollaborators(
    where: str,
    *,
    name: object = None,
    fallback: object = None,
    reporter: object = None,
    clock: object = None,
) -> None:
    """
    Reject, naming it, an argument given to C{where} that cannot work: a
    C{name} that is not a string, a C{fallback} that is not a stdlib
    handler, a C{reporter} without L{IReporter}'s methods, a C{clock}
    without C{seconds()}. L{None} is always accepted.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{where}: name must be a string, not {name!r}")
    if fallback is not None and not isinstance(fallback, logging.Handler):
        raise TypeError(f"{where}: fallback must be a logging.Handler, not {fallback!r}")
    if reporter is not None:
        missing = [m for m in IReporter.names() if not callable(getattr(reporter, m, None))]
        if missing:
            raise TypeError(
                f"{where}: reporter must provide IReporter ({', '.join(sorted(missing))}"
                f" missing), not {reporter!r}"
            )
    if clock is not None and not callable(getattr(clock, "seconds", None)):
        raise TypeError(f"{where}: clock must have a seconds() method, not {clock!r}")


class _HandlerFailed(Exception):
    """
    A handler reported a failure through C{handleError} without raising.
    """


#: Every hardening alive in the process (each dies with its handler).
_alive: weakref.WeakSet[HandlerHardening] = weakref.WeakSet()
_hardenLock = threading.RLock()


class HandlerHardening:
    """
    The hardening of one stdlib handler, in place: the handler's C{emit} is
    the C{core} (a L{HardenedSink} around the handler's own C{emit}) and its
    C{handleError} raises the error into the core instead of printing a
    traceback to C{sys.stderr}. Made by L{hardenHandler}; found again with
    L{hardeningOf}. The core is what the registry of hardened sinks lists.

    The hardening holds its handler weakly: the handler lives exactly as
    long as the application keeps it, and the hardening dies with it. If
    records were still buffered for it then, they are counted as dropped
    (C{"shutdown"}) and reported.

    The parameters not listed here are L{HardenedSink}'s.

    @param handler: the stdlib handler hardened in place.
    @param fallback: a stdlib handler that also receives the records C{handler} cannot take.
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
            raise TypeError(f"a logging.Handler is needed, not {handler!r}")
        policy = Policy.of(policy, settings, "hardenHandler()")
        checkCollaborators(
            "hardenHandler()", name=name, fallback=fallback, reporter=reporter, clock=clock
        )
        reporter = defaultReporter() if reporter is None else reporter
        self._ref = weakref.ref(handler)
        self.name = uniqueName(describe(handler), self) if name is None else name
        # Never through handler.__dict__: see _instattrs.
        self._originalEmit = instanceAttribute(handler, "emit")
        self._originalHandleError = instanceAttribute(handler, "handleError")
        self._classEmit = declaredAttribute(type(handler), "emit")
        fallbackHandle = None
        if fallback is not None:
            # SafeHandler is built on this module: imported when needed.
            from ._safehandler import SafeHandler

            if not isinstance(fallback, SafeHandler):
                hardenHandler(
                    fallback,
                    policy.replace(bufferSize=0),
                    name=f"{self.name} (fallback)",
                    reporter=reporter,
                    clock=clock,
                )
            fallbackHandle = fallback.handle
        self.fallback = fallback
        self.core: HardenedSink[logging.LogRecord] = HardenedSink(
            _classEmitter(self._ref, self._classEmit)
            if self._originalEmit is None
            else self._originalEmit,
            policy,
            name=self.name,
            fallback=fallbackHandle,
            reporter=reporter,
            clock=clock,
            identity=RECORDS,
        )
        setInstanceAttribute(handler, "emit", self.core)
        setInstanceAttribute(handler, "handleError", self._capture)
        # Not a weakref callback: a handler often dies in a reference cycle
        # (a failure's traceback holds its frames), and a callback dies with
        # it uncalled; a finalizer is kept alive on its own.
        self._finalizer = weakref.finalize(handler, _handlerCollected, self.core)
        self._finalizer.atexit = False
        _alive.add(self)

    def __repr__(self) -> str:
        return f"<HandlerHardening {self.name} {self.core.breaker.state.value}>"

    @property
    def handler(self) -> logging.Handler | None:
        """
        The hardened handler, or L{None} once the application let it go.
        """
        return self._ref()

    def stats(self) -> SinkStats:
        """
        An immutable snapshot of the handler's counters and state.
        """
        return self.core.stats()

    def _capture(self, record: logging.LogRecord) -> None:
        """
        Replaces the handler's C{handleError}, which stdlib handlers call
        from C{emit} with the error being handled: raise it instead of
        printing a traceback, out of C{emit} and into the core, which
        counts, reports and quarantines. Called outside a delivery (a
        handler's own thread, say), the error is reported out of band and
        goes no further.
        """
        error = sys.exc_info()[1]
        if error is None:
            error = _HandlerFailed(f"{self.name} called handleError")
        _closeOnError(self._ref())
        if self.core.delivering():
            raise error
        try:
            self.core.reporter.failure(self.name, error, "handleError called outside emit")
        except Exception:
            pass

    def undo(self) -> None:
        """
        Give the handler its own C{emit} and C{handleError} back, and let
        this hardening go: records it still buffers are replayed as far as
        the breaker allows, the rest counted (C{"shutdown"}) and reported.
        Hardening the handler again makes a new hardening.
        """
        _alive.discard(self)
        # The finalizer holds the core (and through it this hardening):
        # while it is attached, a handler hardened and given back again and
        # again keeps every old hardening alive and listed.
        self._finalizer.detach()
        _handlerCollected(self.core)
        releaseName(self.name, self)
        handler = self._ref()
        if handler is None:
            return
        for attribute, original in (
            ("emit", self._originalEmit),
            ("handleError", self._originalHandleError),
        ):
            if original is None:
                removeInstanceAttribute(handler, attribute)
            else:
                setInstanceAttribute(handler, attribute, original)


def _closeOnError(handler: logging.Handler | None) -> None:
    """
    What a C{SocketHandler}'s (or C{DatagramHandler}'s) own C{handleError}
    does apart from printing: with C{closeOnError}, close the socket, so
    that the next record connects again.
    """
    if not isinstance(handler, logging.handlers.SocketHandler):
        return
    if type(handler).handleError is not logging.handlers.SocketHandler.handleError:
        return
    sock = handler.sock
    if handler.closeOnError and sock:
        try:
            sock.close()
        except Exception:
            pass
        handler.sock = None


def _classEmitter(
    ref: weakref.ref[logging.Handler], classEmit: Any
) -> Callable[[logging.LogRecord], None]:
    """
    The core's sink when the handler has no C{emit} of its own on the
    instance: the class's C{emit} (as the class declares it), on the
    handler held weakly (once it is collected, the call fails and is
    counted). Not a method of the hardening: the core would hold the
    hardening that holds it, and both would outlive the handler (listed by
    L{status}) until the cycle collector ran.
    """
    if type(classEmit) is FunctionType:

        def emit(record: logging.LogRecord) -> None:
            classEmit(ref(), record)

        return emit

    # A static or class method, a callable object, a partialmethod, a
    # property: bound to the handler as its own lookup would.
    def boundEmit(record: logging.LogRecord) -> None:
        classAttribute(classEmit, ref())(record)

    return boundEmit


def _handlerCollected(core: HardenedSink[logging.LogRecord]) -> None:
    """
    Records still buffered for a handler nobody holds any more cannot be
    written: count and report them (nothing lost silently).
    """
    try:
        if core.stats().buffered:
            core.close()
    except Exception:
        pass


def hardeningOf(handler: logging.Handler) -> HandlerHardening | None:
    """
    The hardening applied to C{handler} in place, if any.

    @param handler: a stdlib handler.
    @return: its L{HandlerHardening}, or L{None} if it is not hardened.
    """
    # A plain lookup, not instanceAttribute(): asked for every record a
    # QueueListener delivers (install()), and only a hardening's capture is
    # a method bound to a HandlerHardening.
    try:
        capture = getattr(handler, "handleError", None)
    except Exception:
        return None
    owner = getattr(capture, "__self__", None)
    return owner if isinstance(owner, HandlerHardening) else None


def hardenings() -> list[HandlerHardening]:
    """
    Every handler hardening alive in the process.
    """
    return list(_alive)


def hardenHandler(
    handler: logging.Handler, policy: Policy | None = None, **arguments: Any
) -> HandlerHardening:
    """
    Harden C{handler} in place (see L{HandlerHardening}) and return the
    hardening; if it is hardened already, return that hardening unchanged
    (a handler shared by several loggers has one breaker). C{policy} and
    C{arguments} are L{HandlerHardening}'s, checked even then.

    @param handler: the stdlib handler to harden.
    @param policy: the hardening settings (L{Policy}).
    @param arguments: the other arguments of L{HandlerHardening}.
    """
    policy = Policy.of(policy, _settingsOnly(arguments), "hardenHandler()")
    others = {k: v for k, v in arguments.items() if k in _NOT_SETTINGS}
    checkCollaborators("hardenHandler()", **others)
    with _hardenLock:
        existing = hardeningOf(handler)
        if existing is not None:
            return existing
        return HandlerHardening(handler, policy, **others)


_NOT_SETTINGS = frozenset({"name", "fallback", "reporter", "clock"})


def _settingsOnly(arguments: dict[str, Any]) -> Any:
    return {k: v for k, v in arguments.items() if k not in _NOT_SETTINGS}

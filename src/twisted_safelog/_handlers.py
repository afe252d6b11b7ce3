# -*- test-case-name: tests.test_handlers,tests.test_stdlib -*-
"""
The hardening of L{SafeObserver} for stdlib handlers, applied I{in place}:
the application's own handler object stays where it is (in
C{logger.handlers}, in C{logging._handlerList}, in its own variables), and
only two instance attributes change, C{emit} and C{handleError}, so that a
failure takes the hardened path. Level, filters, formatter, lock, C{handle},
C{flush}, C{close} and C{removeHandler} are the handler's own, untouched.

L{SafeHandler} is the explicit form: a handler that you attach instead of
the one it hardens, for code that wants a separate object.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from ._breaker import IClock
from ._policy import Policy
from ._registry import IHardenedSink
from ._repeats import RECORDS
from ._report import IReporter, defaultReporter, describe, releaseName, uniqueName
from ._safe import HardenedSink
from ._stats import SinkStats
from ._stdlib import TwistedHandler

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = [
    "HandlerHardening",
    "SafeHandler",
    "hardenHandler",
    "hardenHandlers",
    "hardeningOf",
    "hardenings",
    "loggerTree",
    "safeHandlerFor",
    "unhardenHandler",
    "unhardenHandlers",
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
        self._originalEmit = handler.__dict__.get("emit")
        self._originalHandleError = handler.__dict__.get("handleError")
        self._classEmit = type(handler).emit
        fallbackHandle = None
        if fallback is not None:
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
        handler.__dict__["emit"] = self.core
        handler.__dict__["handleError"] = self._capture
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
                handler.__dict__.pop(attribute, None)
            else:
                handler.__dict__[attribute] = original


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
    ref: weakref.ref[logging.Handler],
    classEmit: Callable[[logging.Handler, logging.LogRecord], None],
) -> Callable[[logging.LogRecord], None]:
    """
    The core's sink when the handler has no C{emit} of its own on the
    instance: the class's C{emit}, on the handler held weakly (once it is
    collected, the call fails and is counted). Not a method of the
    hardening: the core would hold the hardening that holds it, and both
    would outlive the handler (listed by L{status}) until the cycle
    collector ran.
    """

    def emit(record: logging.LogRecord) -> None:
        classEmit(ref(), record)  # type: ignore[arg-type]

    return emit


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
    capture = handler.__dict__.get("handleError")
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


@implementer(IHardenedSink)
class SafeHandler(logging.Handler):
    """
    A stdlib handler that you attach instead of C{handler}, with the
    guarantees of L{SafeObserver}: a per-thread reentry guard, a circuit
    breaker that quarantines the handler after C{failureThreshold}
    consecutive failures, a replay buffer of records, a C{fallback} handler,
    out-of-band reports and exact counters (L{stats}). It hardens C{handler}
    in place (L{hardenHandler}) and hands it every record that passes its
    own level and filters.

    The level mirrors the wrapped handler's (C{setLevel} sets both);
    C{setFormatter} and C{flush} go to the wrapped handler. L{close} undoes
    the hardening and closes the wrapped handler.

    The parameters not listed here are L{HardenedSink}'s.

    @param handler: the stdlib handler to harden (in place, shared with every L{SafeHandler} around
        it).
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
        if not isinstance(handler, logging.Handler) or isinstance(handler, SafeHandler):
            raise TypeError(f"SafeHandler needs a logging.Handler, not {handler!r}")
        policy = Policy.of(policy, settings, "SafeHandler()")
        checkCollaborators(
            "SafeHandler()", name=name, fallback=fallback, reporter=reporter, clock=clock
        )
        super().__init__(handler.level)
        self.handler = handler
        self.hardening = hardenHandler(
            handler, policy, name=name, fallback=fallback, reporter=reporter, clock=clock
        )
        self.core = self.hardening.core
        self.fallback = self.hardening.fallback

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

    def handle(self, record: logging.LogRecord) -> Any:
        # No lock of our own: the wrapped handler takes its own.
        rv = self.filter(record)
        if rv:
            self.handler.handle(record)
        return rv

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
        wrapped handler its C{emit} and C{handleError} back and close it.
        """
        self.core.close()
        self.hardening.undo()
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


def safeHandlerFor(handler: logging.Handler, **safeHandlerArguments: Any) -> SafeHandler:
    """
    A L{SafeHandler} around C{handler} (C{handler} itself if it is one). All
    the L{SafeHandler}s around one handler share its one hardening.

    @param handler: a stdlib handler, or a L{SafeHandler}.
    @param safeHandlerArguments: the other arguments of L{SafeHandler}.
    """
    if isinstance(handler, SafeHandler):
        return handler
    return SafeHandler(handler, **safeHandlerArguments)


def needsHardening(handler: logging.Handler) -> bool:
    """
    Should C{handler} be hardened? Not if it is hardened already, is a
    L{SafeHandler}, or is a L{TwistedHandler} (which cannot fail that way).
    """
    return not isinstance(handler, SafeHandler | TwistedHandler) and hardeningOf(handler) is None


def hardenHandlers(
    logger: logging.Logger | None = None, policy: Policy | None = None, **arguments: Any
) -> list[HandlerHardening]:
    """
    Harden every handler attached to C{logger} and the loggers below it
    (the whole tree, from the root, by default) in place: C{logger.handlers}
    keeps the same objects. A handler shared by several loggers is hardened
    once; L{SafeHandler}s, L{TwistedHandler}s and handlers hardened already
    are left alone. Returns the hardenings it made.

    C{policy} and C{arguments} are L{HandlerHardening}'s, checked here even
    when there is no handler to harden.

    @param logger: the top of the tree (the root logger if L{None}).
    @param policy: the hardening settings (L{Policy}).
    @param arguments: the other arguments of L{HandlerHardening}.
    """
    if logger is not None and not isinstance(logger, logging.Logger):
        raise TypeError(f"hardenHandlers(): logger must be a logging.Logger, not {logger!r}")
    policy = Policy.of(policy, _settingsOnly(arguments), "hardenHandlers()")
    others = {k: v for k, v in arguments.items() if k in _NOT_SETTINGS}
    checkCollaborators("hardenHandlers()", **others)
    made: list[HandlerHardening] = []
    with _hardenLock:
        for each in loggerTree(logger):
            for handler in list(each.handlers):
                if needsHardening(handler):
                    made.append(HandlerHardening(handler, policy, **others))
    return made


def unhardenHandler(handler: logging.Handler) -> logging.Handler:
    """
    Undo the hardening of C{handler} (or of the handler a L{SafeHandler}
    wraps); return the plain handler.
    """
    inner = handler.handler if isinstance(handler, SafeHandler) else handler
    hardening = hardeningOf(inner)
    if hardening is not None:
        hardening.undo()
    return inner


def unhardenHandlers(logger: logging.Logger | None = None) -> None:
    """
    Undo L{hardenHandlers} for C{logger} and the loggers below it (the
    whole tree by default), without closing anything.

    @param logger: the top of the tree (the root logger if L{None}).
    """
    with _hardenLock:
        for each in loggerTree(logger):
            for handler in list(each.handlers):
                unhardenHandler(handler)

# -*- test-case-name: tests.test_handlers,tests.test_stdlib -*-
"""
L{SafeHandler}, the explicit form of the in-place hardening of a stdlib
handler (L{hardenHandler}): a handler that you attach instead of the one it
hardens, for code that wants a separate object.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from ._breaker import IClock
from ._hardening import checkCollaborators, hardenHandler
from ._policy import Policy
from ._registry import IHardenedSink
from ._report import IReporter
from ._stats import SinkStats

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = ["SafeHandler", "safeHandlerFor"]


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

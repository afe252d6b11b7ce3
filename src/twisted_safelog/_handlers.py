# -*- test-case-name: tests.test_handlers,tests.test_stdlib -*-
"""
Stdlib handlers, hardened against the feedback loop.

The hardening of L{SafeObserver} for stdlib handlers is applied I{in place}
(L{hardenHandler}, in C{_hardening}): the application's own handler object
stays where it is, and only its C{emit} and C{handleError} change, so that
a failure takes the hardened path. L{SafeHandler} (in C{_safehandler}) is
the explicit form: a handler that you attach instead of the one it hardens.
This module hardens, and gives back, every handler of a tree of loggers.
"""

from __future__ import annotations

import logging
from typing import Any

from ._hardening import (
    _NOT_SETTINGS,
    HandlerHardening,
    _hardenLock,
    _settingsOnly,
    checkCollaborators,
    hardenHandler,
    hardeningOf,
    hardenings,
)
from ._policy import Policy
from ._safehandler import SafeHandler, safeHandlerFor
from ._stdlib import TwistedHandler

# The hardening of one handler and SafeHandler are re-exported: the package
# and the tests import them from here.
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

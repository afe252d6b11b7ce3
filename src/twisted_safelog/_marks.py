# -*- test-case-name: tests.test_repeats -*-
"""
The delivery mark: "this code runs because of a delivery to that sink",
carried by C{contextvars} and by L{twisted.python.context} (which
C{twisted.internet.threads.deferToThread} carries to its pool thread), so
that an event a delivery causes on another thread is known as its echo.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from twisted.python import context

__all__ = ["deliverMarked", "markedBy", "unmarked"]

T = TypeVar("T")

_CONTEXT_KEY = "twisted_safelog.delivering"
_delivering: ContextVar[tuple[object, ...]] = ContextVar("twisted_safelog_delivering", default=())


def deliverMarked(owner: object, sink: Callable[[T], object], item: T) -> None:
    """
    Call C{sink(item)} inside a mark that says "delivering to C{owner}",
    visible to anything the call causes on this thread, and on other threads
    that carry C{contextvars} or L{twisted.python.context} (C{deferToThread}).
    """
    marks = _delivering.get()
    token = _delivering.set((*marks, owner))
    try:
        outer = context.get(_CONTEXT_KEY) or ()  # type: ignore[no-untyped-call]
        context.call({_CONTEXT_KEY: (*outer, owner)}, sink, item)  # type: ignore[no-untyped-call]
    finally:
        _delivering.reset(token)


def unmarked(call: Callable[[T], object], item: T) -> None:
    """
    Call C{call(item)} outside every delivery mark.
    """
    token = _delivering.set(())
    try:
        context.call({_CONTEXT_KEY: None}, call, item)  # type: ignore[no-untyped-call]
    finally:
        _delivering.reset(token)


def markedBy(owner: object) -> bool:
    """
    Was the calling code caused by a delivery to C{owner}?
    """
    if owner in _delivering.get():
        return True
    marks = context.get(_CONTEXT_KEY)  # type: ignore[no-untyped-call]
    return marks is not None and owner in marks

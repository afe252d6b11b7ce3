# -*- test-case-name: tests.test_signals -*-
"""
Telling a signal handler's log call from a feedback loop.

A Python signal handler runs on the main thread between any two bytecodes
of whatever that thread was doing, which may be a delivery to a sink:
twistd's SIGTERM handler logs "Received SIGTERM, shutting down." there. Its
event then reaches the sink on a thread that is delivering to it, as an
event the delivery caused would (the sink logged, or wrote to a redirected
C{sys.stderr}), and the reentry guard would drop it; but the delivery did
not cause it, and plain Twisted writes it. L{interruptedDelivery} tells the
two apart by the frames between the log call and the delivery: a handler's
frame, called by CPython for a signal, is among them only if the handler
interrupted the delivery.
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Collection
from types import CodeType, FrameType
from typing import TypeVar

from ._guard import currentThread

#: CPython's C function (imported by C{signal}): C{signal.getsignal}
#: converts every answer to an enum, which costs 50 times as much.
_getsignal: Callable[[int], object] = getattr(
    sys.modules.get("_signal"), "getsignal", signal.getsignal
)

__all__ = ["afterSignal", "interruptedDelivery"]

T = TypeVar("T")

_CO_VARARGS = inspect.CO_VARARGS

_defaultIntHandler = signal.default_int_handler

_SIGNALS = sorted(int(signum) for signum in signal.valid_signals())

#: Frames looked at, at most, between a log call and the delivery it reached.
_MAX_FRAMES = 400


def _codeOf(handler: object) -> CodeType | None:
    """
    The code a signal handler runs: a function's, a method's, a
    C{functools.partial}'s or a callable object's.
    """
    for _ in range(4):
        code = getattr(handler, "__code__", None)
        if isinstance(code, CodeType):
            return code
        inner = getattr(handler, "__func__", None) or getattr(handler, "func", None)
        if inner is None:
            # A callable object: its class's method.
            inner = getattr(type(handler), "__call__", None)  # noqa: B004
        if inner is None or inner is handler:
            return None
        handler = inner
    return None


def _handlerCodes() -> set[int]:
    """
    The code of every Python signal handler installed now, by identity
    (hashing a code object hashes its constants and names, every time).
    """
    codes = set()
    # The signals without a handler (SIG_DFL, SIG_IGN: ints, or None) are
    # passed over in C, not by a Python loop: a reentry (the incident's
    # echoes) pays for this. Handlers are not hashed (they may not be).
    for handler in filter(callable, map(_getsignal, _SIGNALS)):
        if handler is _defaultIntHandler:
            continue
        code = _codeOf(handler)
        if code is not None:
            codes.add(id(code))
    return codes


def _calledForSignal(frame: FrameType) -> bool:
    """
    Was C{frame}, running a signal handler's code, called by CPython for a
    signal? Then one of its arguments is the frame it interrupted (its
    caller's). The same function called by the delivery itself (a sink's
    method installed as a handler, a stats dump it also calls) is not, and
    what it logs there is an echo.
    """
    back = frame.f_back
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    if code.co_flags & _CO_VARARGS:
        count += 1
    values = frame.f_locals
    for name in code.co_varnames[:count]:
        value = values.get(name)
        if value is back or (type(value) is tuple and any(item is back for item in value)):
            return True
    return False


def interruptedDelivery(owner: object, deliveries: Collection[int]) -> bool:
    """
    Called inside C{owner} (a sink) for a call that reached it on a thread
    delivering to it: was that call made by a signal handler that
    interrupted the delivery, rather than caused by it?

    @param owner: the sink, the C{self} of its delivery's frame.
    @param deliveries: the code of the methods that deliver to the sink, by
        identity (C{id()} of each; the code of a class's methods lives as
        long as the class).
    """
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers run on the main thread only.
        return False
    try:
        handlers = _handlerCodes()
        if not handlers:
            return False
        frame: FrameType | None = sys._getframe(1)
        entered = False
        for _ in range(_MAX_FRAMES):
            if frame is None:
                return False
            code = id(frame.f_code)
            if entered and code in handlers and _calledForSignal(frame):
                return True
            if code in deliveries and frame.f_locals.get("self") is owner:
                if entered:
                    # The delivery itself, with no handler in between.
                    return False
                # The log call's own entry into the sink.
                entered = True
            frame = frame.f_back
    except Exception:
        pass
    return False


def afterSignal(interrupting: deque[T], deliver: Callable[[T], object], active: set[int]) -> None:
    """
    Deliver the events signal handlers logged during deliveries on this
    thread (held in C{interrupting}), unless it is still inside one (in
    C{active}, the reentry guard's threads).
    """
    while interrupting and currentThread() not in active:
        try:
            event = interrupting.popleft()
        except IndexError:
            break
        deliver(event)

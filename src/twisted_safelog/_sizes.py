# -*- test-case-name: tests.test_safe -*-
"""
A cheap estimate of how much memory a buffered event holds, so that replay
buffers can be bounded in bytes as well as in events.

Not a deep size walk: an event's own values are looked at, and one level
into the containers among them, which catches what makes events big in
practice (a long message, a large payload string, a list of them) in about
a microsecond. It runs only for events that are buffered, never on the
healthy path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["approximateSize"]

# Rough CPython costs: a small object, a dict or list slot.
_OBJECT = 64
_SLOT = 16
_PEEK = 32
_BYTES = frozenset((bytes, bytearray))
#: What is sized beyond a slot, besides C{str}.
_SIZED = frozenset((bytes, bytearray, dict, list, tuple, set, frozenset))


def _containerSize(value: Any, kind: type) -> int:
    size = _SLOT * len(value)
    for n, item in enumerate(value.values() if kind is dict else value):
        if n == _PEEK:
            break
        itemKind = type(item)
        if itemKind is str or itemKind in _BYTES:
            size += len(item)
    return size


def approximateSize(item: object) -> int:
    """
    About how many bytes C{item} (an event dict, or an object such as a
    L{logging.LogRecord} whose attributes are its data) keeps alive. Never
    raises.
    """
    try:
        if type(item) is dict:
            values: Any = item.values()
        elif isinstance(item, dict):
            # A dict subclass (an OrderedDict, a defaultdict): its items, not
            # its attributes (it has none: a 12 kB event was 64 bytes).
            values = dict.values(item)
        else:
            values = vars(item).values()
        # Every value costs about an object and a slot; strings, bytes and
        # containers their length on top (the loop is the hot part: no call
        # per value for the common str and scalars, and one test of the
        # type for each of them).
        size = _OBJECT + (_OBJECT + _SLOT) * len(values)
        for value in values:
            kind = type(value)
            if kind is str:
                size += len(value)
            elif kind in _SIZED:
                size += len(value) if kind in _BYTES else _containerSize(value, kind)
        return size
    except Exception:
        return _OBJECT

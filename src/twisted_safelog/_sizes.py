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

# Rough CPython costs: a small object, a dict or list slot, a str header.
_OBJECT = 64
_SLOT = 16
_PEEK = 32


def _valueSize(value: object) -> int:
    kind = type(value)
    if kind is str or kind is bytes or kind is bytearray:
        return _OBJECT + len(value)  # type: ignore[arg-type]
    if kind is dict or kind is list or kind is tuple or kind is set or kind is frozenset:
        items: Any = value.values() if kind is dict else value  # type: ignore[attr-defined]
        size = _OBJECT + _SLOT * len(value)  # type: ignore[arg-type]
        for n, item in enumerate(items):
            if n == _PEEK:
                break
            itemKind = type(item)
            if itemKind is str or itemKind is bytes or itemKind is bytearray:
                size += len(item)
        return size
    return _OBJECT


def approximateSize(item: object) -> int:
    """
    About how many bytes C{item} (an event dict, or an object such as a
    L{logging.LogRecord} whose attributes are its data) keeps alive. Never
    raises.
    """
    try:
        values = item.values() if type(item) is dict else vars(item).values()
    except Exception:
        return _OBJECT + _valueSize(item)
    try:
        size = _OBJECT + _SLOT * len(values)
        for value in values:
            size += _valueSize(value)
        return size
    except Exception:
        return _OBJECT

# -*- test-case-name: tests.test_repeats -*-
"""
What makes two log items identical for suppression (L{twisted_safelog._repeats}):
the same namespace (logger name), level and rendered text; times are not
compared. L{EVENTS} tells Twisted events apart, L{RECORDS} stdlib records.
"""

from __future__ import annotations

import logging
import string
import time
from collections.abc import Hashable
from typing import Any, Protocol, TypeVar

from twisted.logger import LogEvent, LogLevel, formatEvent

__all__ = ["EVENTS", "RECORDS", "EventIdentity", "Identity", "RecordIdentity"]

T = TypeVar("T")


class Identity(Protocol[T]):
    """
    How a kind of item (Twisted events, stdlib records) is told apart and
    summarised.
    """

    def coarse(self, item: T) -> Hashable:
        """
        A cheap key that identical items share (namespace, level, format);
        may raise, and then the item is never suppressed.
        """

    def fine(self, item: T) -> tuple[Any, Any, str]:
        """
        (namespace, level, rendered text): equal for identical items only;
        may raise, and then the item is never suppressed.
        """

    def quick(self, item: T) -> Hashable | None:
        """
        A key that, if equal for two items, makes their L{fine} keys equal
        too, found without rendering (the format and the plain values it
        refers to); L{None} if there is none. May raise.
        """

    def summary(self, item: T, text: str, count: int) -> T:
        """
        The item that stands for C{count} held-back copies of C{item}.
        """


#: Values whose rendering depends on nothing but their type and value (but
#: C{-0.0 == 0.0}: see L{_plainKey}).
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def _plainKey(kind: type, value: Any) -> tuple[type, Any]:
    """
    A value of a L{_PLAIN} type, as a key that is equal only for values
    rendered the same: C{-0.0} and C{0.0} are equal, but render differently.
    """
    if kind is float and not value:
        return (kind, str(value))
    return (kind, value)


_MISSING = object()
_formatter = string.Formatter()
_fields: dict[str, tuple[str, ...] | None] = {}


def _fieldNames(form: str) -> tuple[str, ...] | None:
    """
    The fields a format refers to, if each is a plain name (not an attribute,
    an index or a call, whose rendering can change while the value stays the
    same object) and no format spec refers to another field (C{"{x:>{width}}"}:
    the width is a value too); L{None} otherwise. Cached, boundedly.
    """
    try:
        return _fields[form]
    except KeyError:
        pass
    names: tuple[str, ...] | None
    try:
        parsed = [
            (field, spec) for _, field, spec, _ in _formatter.parse(form) if field is not None
        ]
        names = (
            tuple(field for field, _ in parsed)
            if all(field.isidentifier() and "{" not in (spec or "") for field, spec in parsed)
            else None
        )
    except ValueError:
        names = None
    if len(_fields) >= 1024:
        _fields.clear()
    _fields[form] = names
    return names


class EventIdentity:
    """
    L{Identity} of Twisted log events.
    """

    def coarse(self, item: LogEvent) -> Hashable:
        return (item.get("log_namespace"), item.get("log_level"), item.get("log_format"))

    def fine(self, item: LogEvent) -> tuple[Any, Any, str]:
        text = formatEvent(item)
        failure = item.get("log_failure")
        if failure is not None:
            text += f"\n{type(failure.value).__qualname__}: {failure.value}"
        elif "log_format" not in item and not text:
            # Nothing to tell it by: never the same as another.
            raise ValueError("an event without a format")
        return (item.get("log_namespace"), item.get("log_level"), text)

    def quick(self, item: LogEvent) -> Hashable | None:
        form = item.get("log_format")
        if type(form) is not str or "log_failure" in item or "log_flattened" in item:
            return None
        names = _fieldNames(form)
        if names is None:
            return None
        values = []
        for name in names:
            value = item.get(name, _MISSING)
            kind = type(value)
            if kind not in _PLAIN:
                return None
            values.append(_plainKey(kind, value))
        return (form, item.get("log_namespace"), item.get("log_level"), *values)

    def summary(self, item: LogEvent, text: str, count: int) -> LogEvent:
        return {
            "log_namespace": item.get("log_namespace"),
            "log_level": item.get("log_level", LogLevel.info),
            "log_source": None,
            "log_system": item.get("log_system", "-"),
            "log_time": time.time(),
            "log_format": "repeated {log_repeated} times: {log_repeated_text}",
            "log_repeated": count,
            "log_repeated_text": text,
        }


EVENTS = EventIdentity()


class RecordIdentity:
    """
    L{Identity} of stdlib log records.
    """

    def coarse(self, item: logging.LogRecord) -> Hashable:
        return (item.name, item.levelno, item.msg)

    def fine(self, item: logging.LogRecord) -> tuple[Any, Any, str]:
        text = item.getMessage()
        if item.exc_info and item.exc_info[1] is not None:
            error = item.exc_info[1]
            text += f"\n{type(error).__qualname__}: {error}"
        return (item.name, item.levelno, text)

    def quick(self, item: logging.LogRecord) -> Hashable | None:
        args = item.args
        if type(item.msg) is not str or item.exc_info or type(args) is not tuple:
            return None
        values = []
        for value in args:
            kind = type(value)
            if kind not in _PLAIN:
                return None
            values.append(_plainKey(kind, value))
        return (item.name, item.levelno, item.msg, *values)

    def summary(self, item: logging.LogRecord, text: str, count: int) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": item.name,
                "levelno": item.levelno,
                "levelname": item.levelname,
                "msg": "repeated %d times: %s",
                "args": (count, text),
                "repeated": count,
                "repeatedText": text,
            }
        )


RECORDS = RecordIdentity()

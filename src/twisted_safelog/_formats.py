# -*- test-case-name: tests.test_file -*-
"""
How the file sinks turn an event into one line: Twisted's classic text or
JSON, never raising, with a fallback rendering that says why an event could
not be formatted as usual.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.logger import (
    LogEvent,
    eventAsJSON,
    formatEvent,
    formatEventAsClassicLogText,
    formatTime,
)

from ._escape import escapeControl
from ._report import describe

__all__ = ["FORMATS", "formatJSONLine", "formatTextLine"]


def formatTextLine(event: LogEvent) -> str:
    """
    An event as one line of classic Twisted log text, never raising.

    Control characters from the event (CR, VT, NEL, U+2028, ANSI escapes:
    see L{escapeControl}) are escaped, so that an event cannot forge or
    hide lines; a newline becomes a new line indented by a tab, as Twisted
    does. An event Twisted's formatter cannot format (a C{log_time} that is
    not a number, a C{log_level} that is not a
    L{twisted.logger.LogLevel}) is written with
    a fallback rendering that says why, never skipped.

    @param event: the event, formatted as C{textFileLogObserver} would.
    """
    try:
        text = formatEventAsClassicLogText(event)
    except Exception as error:
        text = _fallbackTextLine(event, error)
    if text is None:
        # formatEventAsClassicLogText returns None for an empty message (as
        # textFileLogObserver, nothing is written).
        return ""
    return escapeControl(text)


def _fallbackTextLine(event: LogEvent, error: Exception) -> str:
    """
    The classic text line for an event whose time, level or system cannot be
    formatted: what can be, and the reason. Never raises.
    """
    try:
        when = event.get("log_time")
        try:
            timeText = formatTime(when) if isinstance(when, (int, float)) else "-"
        except Exception:
            timeText = "-"
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            levelName = getattr(level, "name", None)
            system = (
                f"{_str(event.get('log_namespace', '-'))}#"
                f"{levelName if isinstance(levelName, str) else describe(level, 40)}"
            )
        message = formatEvent(event)
        reason = (
            f"[unformattable event: {type(error).__name__}: {_str(error)}; "
            f"log_time={describe(when, 60)}]"
        )
        text = f"{timeText} [{_str(system)}] {message} {reason}"
    except Exception:
        text = f"- [-] [unformattable event: {describe(error)}]"
    return text.replace("\n", "\n\t") + "\n"


def formatJSONLine(event: LogEvent) -> str:
    """
    An event as one line of JSON (newline-delimited, no record separator:
    what Fluent Bit, Vector and Loki's agents tail, and what
    L{twisted.logger.eventsFromJSONLogFile} reads back). An event that cannot
    be serialised (a cycle, say) is written with its text and the reason.

    @param event: the event; one that cannot be serialised is written with its text and the reason
        (C{log_unserializable}).
    """
    try:
        return eventAsJSON(event) + "\n"
    except Exception as error:
        fallback: dict[str, Any] = {
            "log_format": "{log_text}",
            "log_text": formatEvent(event),
            "log_namespace": _str(event.get("log_namespace")),
            "log_level": _level(event),
            "log_time": event.get("log_time") if isinstance(event.get("log_time"), float) else None,
            "log_unserializable": f"{type(error).__name__}: {_str(error)}",
        }
        return json.dumps(fallback) + "\n"


def _str(thing: object) -> str:
    try:
        return str(thing)
    except Exception:
        return describe(thing)


def _level(event: LogEvent) -> dict[str, str] | None:
    level = event.get("log_level")
    name = getattr(level, "name", None)
    if isinstance(name, str):
        return {"__class_uuid__": "02E59486-F24D-46AD-8224-3ACDF2A5732A", "name": name}
    return None


FORMATS: dict[str, Callable[[LogEvent], str]] = {
    "text": formatTextLine,
    "json": formatJSONLine,
}

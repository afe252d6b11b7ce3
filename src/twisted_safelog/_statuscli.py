# -*- test-case-name: tests.test_statusfile -*-
"""
C{python -m twisted_safelog status PATH}: a status file as a table a person
reads at a glance, and an exit status a monitoring system acts on.

Exit status: 0 every sink is healthy; 1 any sink is quarantined (open or
probing) or stalled; 2 the file is missing, unreadable, stale, or says the
process stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any, TextIO

from attrs import frozen

from ._statusfile import FORMAT_VERSION

__all__ = ["HEALTHY", "UNHEALTHY", "UNKNOWN", "Verdict", "formatTable", "judge", "runStatus"]

HEALTHY = 0
UNHEALTHY = 1
UNKNOWN = 2


@frozen
class Verdict:
    """
    What a status file says: an exit status, why in one line, and the
    document (L{None} if there was none to read).
    """

    exitCode: int
    reason: str
    document: Mapping[str, Any] | None


def defaultMaxAge(interval: float) -> float:
    """
    How old a status file written every C{interval} seconds may be before it
    is stale: three missed writes, and a few seconds for a loaded machine.
    """
    return 3 * interval + 5


def judge(path: str, maxAge: float | None = None, now: float | None = None) -> Verdict:
    """
    Read the status file at C{path} and judge it.
    """
    now = time.time() if now is None else now
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return Verdict(UNKNOWN, f"{path}: no status file (is the process running?)", None)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return Verdict(UNKNOWN, f"{path}: cannot read the status file ({error})", None)
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        return Verdict(UNKNOWN, f"{path}: not a twisted-safelog status file", None)
    written = _finite(document.get("written"))
    interval = _finite(document.get("interval"))
    sinks = document.get("sinks")
    if (
        written is None
        or interval is None
        or interval <= 0
        or not isinstance(sinks, list)
        or not all(isinstance(sink, dict) for sink in sinks)
    ):
        return Verdict(UNKNOWN, f"{path}: not a twisted-safelog status file", None)
    age = now - written
    limit = defaultMaxAge(interval) if maxAge is None else maxAge
    if document.get("stopped"):
        return Verdict(UNKNOWN, f"process {document.get('pid')} stopped {_ago(age)}", document)
    if age > limit:
        return Verdict(
            UNKNOWN,
            f"stale: written {_ago(age)}, expected every {interval:g}s "
            f"(is process {document.get('pid')} alive?)",
            document,
        )
    bad = [sink for sink in sinks if sink.get("healthy") is not True]
    if bad:
        states = ", ".join(
            f"{_printable(sink.get('name'))} {_printable(sink.get('state'))}" for sink in bad
        )
        return Verdict(UNHEALTHY, f"{len(bad)} of {len(sinks)} sinks unhealthy: {states}", document)
    return Verdict(HEALTHY, f"all {len(sinks)} sinks healthy", document)


def _finite(value: object) -> float | None:
    """
    C{value} as a finite number, or L{None} if it is not one.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _printable(value: object) -> str:
    """
    C{value} as text on one line: newlines, tabs, escape sequences and other
    unprintable characters escaped, so one sink is one row and a monitoring
    system's first line is the whole verdict.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _since(entry: Mapping[str, Any], now: float, key: str = "since") -> str:
    since = _finite(entry.get(key))
    return "-" if since is None else _ago(now - since)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _drops(sink: Mapping[str, Any]) -> str:
    byReason = sink.get("droppedByReason")
    if not isinstance(byReason, Mapping):
        byReason = {}
    detail = ", ".join(
        f"{_printable(reason)}={_printable(count)}" for reason, count in byReason.items() if count
    )
    total = _printable(sink.get("dropped", 0))
    return f"{total} ({detail})" if detail else total


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def formatTable(verdict: Verdict, now: float | None = None) -> str:
    """
    The verdict as a heading line and, if there was a document, one row per
    sink: sink, state, since, delivered, failed, dropped by reason, last
    error.
    """
    now = time.time() if now is None else now
    document = verdict.document
    word = {HEALTHY: "OK", UNHEALTHY: "UNHEALTHY"}.get(verdict.exitCode, "UNKNOWN")
    if document is None:
        return f"{word}: {_printable(verdict.reason)}\n"
    heading = (
        f"{word}: {_printable(verdict.reason)} "
        f"(pid {_printable(document.get('pid'))}, written {_since(document, now, 'written')})"
    )
    header = ("SINK", "STATE", "SINCE", "DELIVERED", "FAILED", "DROPPED", "LAST ERROR")
    rows = [header]
    for sink in document["sinks"]:
        rows.append(
            (
                _cut(_printable(sink.get("name")), 60),
                _printable(sink.get("state")),
                _since(sink, now),
                _printable(sink.get("delivered", 0)),
                _printable(sink.get("failed", 0)),
                _drops(sink),
                _cut(_printable(sink.get("lastError") or "-"), 60),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [heading, ""]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def runStatus(
    path: str, asJSON: bool = False, maxAge: float | None = None, out: TextIO | None = None
) -> int:
    """
    The C{status} command: print the table (or, with C{asJSON}, the document
    and the verdict as JSON) and return the exit status.
    """
    import sys

    out = sys.stdout if out is None else out
    try:
        verdict = judge(os.fspath(path), maxAge)
        if asJSON:
            result = dict(verdict.document or {})
            result["check"] = {"exitCode": verdict.exitCode, "reason": verdict.reason}
            text = json.dumps(result, indent=1, sort_keys=True) + "\n"
        else:
            text = formatTable(verdict)
    except Exception as error:
        # A check that crashed would exit 1, "unhealthy", for a file that
        # says nothing: it is unknown.
        verdict = Verdict(UNKNOWN, f"{path}: cannot judge the status file ({error!r})", None)
        if asJSON:
            check = {"exitCode": verdict.exitCode, "reason": verdict.reason}
            text = json.dumps({"check": check}, indent=1) + "\n"
        else:
            text = formatTable(verdict)
    out.write(text)
    return verdict.exitCode

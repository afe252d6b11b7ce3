# -*- test-case-name: tests.test_report -*-
"""
Names for sinks in reports, status and metrics: short, readable, without
memory addresses, and distinct for two live sinks that look alike.
"""

from __future__ import annotations

import io
import re
import threading
import weakref

from ._instattrs import attributeValues

__all__ = ["describe", "releaseName", "uniqueName"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DEFAULT_REPR = re.compile(r"^<(?:[\w.]+\.)?(\w+) object>$")


def _where(thing: object, depth: int = 2) -> str | None:
    """
    The file a sink writes to, if it says: a handler's C{baseFilename}, or
    the C{name} of a file object among its attributes (or the file behind a
    bound C{write} method, as structlog's observers keep), looking one
    wrapped object deep. Never raises.
    """
    try:
        path = getattr(thing, "baseFilename", None)
        if isinstance(path, str):
            return path
        # Its attribute values, not its __dict__: reading that would slow
        # every later attribute access of the application's object (see
        # _instattrs).
        inner = []
        for value in attributeValues(thing):
            owner = getattr(value, "__self__", value)
            if isinstance(owner, io.IOBase):
                name = getattr(owner, "name", None)
                if isinstance(name, str):
                    return name
            elif depth > 1 and type(value).__dictoffset__ and not isinstance(value, type):
                inner.append(value)
        for value in inner:
            found = _where(value, depth - 1)
            if found is not None:
                return found
    except Exception:
        pass
    return None


def describe(thing: object, limit: int = 80) -> str:
    """
    A short, readable name for a sink in reports: its C{repr} without memory
    addresses (a default C{repr} becomes the class name), the file it writes
    to when that is not already said, C{Class.method} for a bound method,
    and the legacy observer inside a L{twisted.logger.LegacyLogObserverWrapper}; truncated
    to C{limit} characters in the middle. Never raises.

    Two live sinks can still look alike (two observers writing to one
    stream): L{uniqueName} tells them apart.
    """
    try:
        text = _describe(thing)
    except Exception:
        text = ""
    if not text:
        text = str(getattr(thing, "__qualname__", None) or type(thing).__qualname__)
    if len(text) > limit:
        # Cut in the middle: a path's end (the file name) tells sinks apart.
        head = (limit - 3) // 2
        text = text[:head] + "..." + text[len(text) - (limit - 3 - head) :]
    return text


def _describe(thing: object) -> str:
    legacy = getattr(thing, "legacyObserver", None)
    if legacy is not None and type(thing).__name__ == "LegacyLogObserverWrapper":
        return f"legacy {_describe(legacy)}"
    owner = getattr(thing, "__self__", None)
    function = getattr(thing, "__func__", None)
    if owner is not None and function is not None:
        method = getattr(function, "__name__", "?")
        ownerText = _describe(owner)
        if method == "__call__":
            return ownerText
        if ownerText.startswith("<") and ownerText.endswith(">"):
            return f"<{ownerText[1:-1]}>.{method}"
        return f"{ownerText}.{method}"
    try:
        text = repr(thing)
    except Exception:
        text = ""
    hadAddress = _ADDRESS.search(text) is not None
    text = _ADDRESS.sub("", text)
    default = _DEFAULT_REPR.match(text)
    if default is not None:
        text = default.group(1)
    elif not text or (hadAddress and text.startswith("<function ")):
        text = str(getattr(thing, "__qualname__", None) or type(thing).__qualname__)
    where = _where(thing)
    if where is not None and where not in text:
        text = f"{text} ({where})"
    return text


#: The names of live sinks, so that two alike get different ones.
_liveNames: weakref.WeakValueDictionary[str, object] = weakref.WeakValueDictionary()
# Reentrant: the garbage collector may run a finalizer on a thread that
# holds it (a collected handler's hardening is closed, and gives up its
# name), as a signal handler may run there; a plain lock deadlocked that
# thread on itself.
_namesLock = threading.RLock()


def uniqueName(name: str, sink: object) -> str:
    """
    C{name}, or C{name} with C{" #2"}, C{" #3"}, ... appended if a live sink
    already has it; reserved for C{sink} while it lives (held weakly).
    """
    with _namesLock:
        candidate, number = name, 1
        while True:
            try:
                taken = _liveNames.get(candidate)
            except Exception:
                taken = None
            if taken is None or taken is sink:
                break
            number += 1
            candidate = f"{name} #{number}"
        try:
            _liveNames[candidate] = sink
        except TypeError:
            pass  # not weakly referenceable: nothing to reserve
        return candidate


def releaseName(name: str, sink: object) -> None:
    """
    Give up C{name} if L{uniqueName} reserved it for C{sink}: a sink that
    is done with lets the next one alike have the plain name again, even
    before it is collected.
    """
    with _namesLock:
        try:
            if _liveNames.get(name) is sink:
                del _liveNames[name]
        except Exception:
            pass

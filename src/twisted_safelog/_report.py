# -*- test-case-name: tests.test_report -*-
"""
Out-of-band reports about the sinks themselves.

A report about a broken sink must not travel through anything that could
reach that sink again: not a Twisted publisher, not C{sys.stderr} (under
twistd it is a L{twisted.logger.LoggingFile}), not stdlib logging. The default
reporter writes lines straight to the process's standard error file
descriptor with C{os.write}. Repeats are rate-limited per sink and kind, with
an exact count of what was suppressed.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TextIO

from zope.interface import Interface, implementer

from ._breaker import IClock, MonotonicClock
from ._escape import escapeControl
from ._fdwriter import FileDescriptorWriter
from ._fork import registerForFork
from ._names import describe, releaseName, uniqueName

# FileDescriptorWriter and the sink names (_names) are re-exported: the
# sinks and tests import them from here.
__all__ = [
    "REPORT_PREFIX",
    "FileDescriptorWriter",
    "IReporter",
    "Reporter",
    "StreamWriter",
    "defaultReporter",
    "describe",
    "releaseName",
    "setDefaultReporter",
    "uniqueName",
]

#: Every report line starts with this, so operators (and tests) can tell the
#: library's own lines from the application's in a shared log file.
REPORT_PREFIX = "twisted-safelog:"

#: The longest report line (after the prefix and time), in characters; the
#: rest is cut, and the cut marked.
LINE_LIMIT = 2000

#: The most lines one report has (a traceback included).
REPORT_LINES = 30

#: The most lines a traceback in a report has.
TRACEBACK_LINES = 20


class IReporter(Interface):
    """
    Receives reports about hardened sinks. Implementations must not log
    through Twisted or stdlib logging, and should not raise (callers contain
    it if they do).
    """

    def stateChanged(sink: str, old: str, new: str, detail: str) -> None:
        """
        The sink named C{sink} went from state C{old} to C{new}.
        """

    def failure(sink: str, error: BaseException | None, description: str) -> None:
        """
        Delivering to C{sink} failed; C{error} is the exception if there was
        one, C{description} says what happened in words.
        """

    def dropped(sink: str, reason: str, count: int) -> None:
        """
        C{count} events meant for C{sink} were dropped for C{reason}.
        """

    def note(line: str) -> None:
        """
        A one-off line that is not rate-limited (start-up, shutdown).
        """

    def flush() -> None:
        """
        Write out the counts of suppressed repeats now.
        """


class StreamWriter:
    """
    Write text to a file object that is known not to feed the log (an
    explicitly opened file, a test's C{io.StringIO}), flushing each time.

    @param stream: a text stream with C{write} (and, if it has one, C{flush}).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        registerForFork(self)

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._lock = threading.Lock()
        return None

    def __repr__(self) -> str:
        return f"StreamWriter({self.stream!r})"

    def __call__(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()


class _Repeats:
    """
    Rate-limiting state for one kind of report: when it was last written and
    how many were suppressed since.
    """

    __slots__ = ("lastWritten", "suppressed", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.lastWritten = float("-inf")
        self.suppressed = 0


@implementer(IReporter)
class Reporter:
    """
    The standard L{IReporter}: one line per report, prefixed with
    L{REPORT_PREFIX} and a UTC timestamp; failures and drops of the same
    kind for the same sink are written at most once per C{interval} seconds,
    the next line saying exactly how many were suppressed in between.

    @param write: where lines go; file descriptor 2 by default, written
        without ever blocking (see L{FileDescriptorWriter}). Anything it
        raises is swallowed; a writer you pass must not block either.
    @param clock: for the rate limit; a monotonic clock by default.
    @param interval: seconds between two lines of the same kind.
    @param tracebackLimit: frames shown with the first failure of a kind.
    """

    def __init__(
        self,
        write: Callable[[str], object] | None = None,
        clock: IClock | None = None,
        interval: float = 10.0,
        tracebackLimit: int = 4,
    ) -> None:
        self.write = FileDescriptorWriter(2) if write is None else write
        self.clock = MonotonicClock() if clock is None else clock
        self.interval = interval
        self.tracebackLimit = tracebackLimit
        # Reentrant: a signal handler that logs may run on a thread that
        # holds it, between any two bytecodes (see Channel.reset).
        self._lock = threading.RLock()
        self._repeats: dict[tuple[str, ...], _Repeats] = {}
        self._seen: set[tuple[str, ...]] = set()
        registerForFork(self)

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._lock = threading.RLock()
        return None

    def __repr__(self) -> str:
        return f"Reporter(write={self.write!r}, interval={self.interval:g})"

    def _emit(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = text.rstrip("\n").split("\n")
        if len(lines) > REPORT_LINES:
            cut = len(lines) - REPORT_LINES + 1
            lines = [*lines[: REPORT_LINES - 1], f"[... {cut} more lines cut]"]
        out = "".join(f"{REPORT_PREFIX} {stamp} {_boundedLine(line)}\n" for line in lines)
        try:
            self.write(out)
        except Exception:
            # A reporter that fails is contained: there is nowhere safe left
            # to say so.
            pass

    def _limited(self, key: tuple[str, ...], what: str, count: int = 1) -> int | None:
        """
        Return the number of suppressed repeats to mention if a line for
        C{key} may be written now, or L{None} if it is suppressed (and
        counted, C{count} at a time).
        """
        now = self.clock.seconds()
        with self._lock:
            repeats = self._repeats.get(key)
            if repeats is None:
                repeats = self._repeats[key] = _Repeats(what)
            if now - repeats.lastWritten < self.interval:
                repeats.suppressed += count
                return None
            repeats.lastWritten = now
            suppressed, repeats.suppressed = repeats.suppressed, 0
            return suppressed

    def stateChanged(self, sink: str, old: str, new: str, detail: str) -> None:
        # State changes are already rate-limited by the breaker's backoff;
        # write out what was suppressed first so the counts read in order.
        self._flushSink(sink)
        self._emit(f"sink {_oneLine(sink)} {_oneLine(detail)}")

    def failure(self, sink: str, error: BaseException | None, description: str) -> None:
        kind = type(error).__name__ if error is not None else description
        key = ("failure", sink, kind)
        suppressed = self._limited(key, f"similar failures of sink {sink}")
        if suppressed is None:
            return
        with self._lock:
            first = key not in self._seen
            self._seen.add(key)
        text = f"sink {_oneLine(sink)} failed: {_oneLine(description)}"
        if suppressed:
            text += f" ({suppressed} similar failures suppressed)"
        if first and error is not None:
            text += "\n" + _shortTraceback(error, self.tracebackLimit)
        self._emit(text)

    def dropped(self, sink: str, reason: str, count: int) -> None:
        key = ("dropped", sink, reason)
        suppressed = self._limited(key, f"similar drops ({reason}) for sink {sink}", count)
        if suppressed is None:
            return
        text = (
            f"sink {_oneLine(sink)} dropped {count} event{'s' if count != 1 else ''} "
            f"({_oneLine(reason)})"
        )
        if suppressed:
            text += f" ({suppressed} similar drops suppressed)"
        self._emit(text)

    def note(self, line: str) -> None:
        self._emit(_oneLine(line))

    def _flushSink(self, sink: str | None) -> None:
        pending = []
        with self._lock:
            # A snapshot: a signal handler that logs runs on this thread
            # between two bytecodes (the lock is reentrant), and its report
            # may add a kind to the table (walking the table itself raised
            # RuntimeError: dictionary changed size during iteration). A
            # count is taken and zeroed in one step with no call in between
            # (where the handler could add to it), then kept.
            for key, repeats in list(self._repeats.items()):
                if sink is None or key[1] == sink:
                    count, repeats.suppressed = repeats.suppressed, 0
                    if count:
                        pending.append((repeats.what, count))
        for what, count in pending:
            self._emit(f"{count} {_oneLine(what)} suppressed")

    def flush(self) -> None:
        self._flushSink(None)


def _boundedLine(line: str) -> str:
    """
    One report line, control characters escaped (nothing from an event or
    an exception can start a line of its own, or reach a terminal as an
    escape sequence) and cut at L{LINE_LIMIT} characters, the cut marked.
    """
    if len(line) <= LINE_LIMIT:
        safe = escapeControl(line)
        if len(safe) <= LINE_LIMIT:
            return safe
    safe = escapeControl(line[:LINE_LIMIT])[:LINE_LIMIT]
    return f"{safe}[... cut: the line had {len(line)} characters]"


def _oneLine(text: str) -> str:
    """
    C{text} (from an event or an exception) as part of a single report
    line: newlines escaped too, and cut well before it could be huge.
    """
    try:
        text = str(text)
        if len(text) > LINE_LIMIT:
            text = text[:LINE_LIMIT] + f"[... cut: {len(text)} characters]"
        return escapeControl(text, newlines=False)
    except Exception:
        return "<unprintable>"


def _shortTraceback(error: BaseException, limit: int) -> str:
    """
    The last C{limit} frames of C{error}'s traceback, at most
    L{TRACEBACK_LINES} lines of at most about L{LINE_LIMIT} characters.
    """
    try:
        lines: list[str] = []
        exception = traceback.TracebackException(
            type(error), error, error.__traceback__, limit=-limit
        )
        for chunk in exception.format():
            # Split at newlines only: other line breaks in the message are
            # escaped by _boundedLine, visibly.
            for line in chunk[: LINE_LIMIT * 2].rstrip("\n").split("\n"):
                lines.append("  " + line)
            if len(lines) > TRACEBACK_LINES:
                break
        if len(lines) > TRACEBACK_LINES:
            lines = [*lines[: TRACEBACK_LINES - 1], "  [... more traceback lines cut]"]
        return "\n".join(lines)
    except Exception:
        return f"  {type(error).__name__} (traceback could not be formatted)"


@implementer(IReporter)
class _DefaultReporter:
    """
    Forwards to whichever reporter is the process-wide default at the time of
    each report, so sinks made before L{setDefaultReporter} follow it.
    """

    def __init__(self) -> None:
        self.target: IReporter | None = None
        self._lock = threading.Lock()
        registerForFork(self)

    def _afterForkInChild(self, keepPending: bool) -> Callable[[], object] | None:
        self._lock = threading.Lock()
        return None

    def __repr__(self) -> str:
        return f"defaultReporter() -> {self.current()!r}"

    def current(self) -> IReporter:
        target = self.target
        if target is None:
            with self._lock:
                if self.target is None:
                    self.target = Reporter()
                target = self.target
        return target

    def stateChanged(self, sink: str, old: str, new: str, detail: str) -> None:
        self.current().stateChanged(sink, old, new, detail)

    def failure(self, sink: str, error: BaseException | None, description: str) -> None:
        self.current().failure(sink, error, description)

    def dropped(self, sink: str, reason: str, count: int) -> None:
        self.current().dropped(sink, reason, count)

    def note(self, line: str) -> None:
        self.current().note(line)

    def flush(self) -> None:
        self.current().flush()


_default = _DefaultReporter()


def defaultReporter() -> IReporter:
    """
    The process-wide reporter that hardened sinks use when given none: by
    default file descriptor 2, ten seconds between repeats of a kind.
    """
    return _default


def setDefaultReporter(reporter: IReporter | None) -> None:
    """
    Make C{reporter} the process-wide default (the twistd factory points it
    at the log file when daemonized); L{None} restores the fd 2 default.

    @param reporter: the reporter for the whole process, or L{None} for the default (fd 2).
    """
    _default.target = reporter

"""
Tests for L{twisted_safelog._report}.
"""

from __future__ import annotations

import io
import os
import re

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_safelog import (
    REPORT_PREFIX,
    FileDescriptorWriter,
    IReporter,
    Reporter,
    SafeObserver,
    StreamWriter,
    _report,
    defaultReporter,
    setDefaultReporter,
)
from twisted_safelog._escape import _UNSAFE, _UNSAFE_WITH_NEWLINE, escapeControl
from twisted_safelog._report import LINE_LIMIT, TRACEBACK_LINES, describe
from twisted_safelog.testing import RaisingObserver

from .helpers import LineCollector, atEachLine, collectingReporter, event, interruptedAt


def test_reportersProvideIReporter() -> None:
    assert verifyObject(IReporter, Reporter())
    assert verifyObject(IReporter, defaultReporter())


def test_everyLineIsPrefixed() -> None:
    reporter, lines = collectingReporter()
    reporter.failure("s", ValueError("x"), "ValueError: x")
    reporter.stateChanged("s", "closed", "open", "quarantined")
    assert lines.lines
    assert all(line.startswith(REPORT_PREFIX) for line in lines.lines)


def test_dropsAreRateLimitedAndCountedExactly() -> None:
    clock = Clock()
    reporter, lines = collectingReporter(clock, interval=5)
    for _ in range(4):
        reporter.dropped("s", "overflow", 3)
    assert len(lines.matching("dropped")) == 1
    clock.advance(5)
    reporter.dropped("s", "overflow", 1)
    assert "(9 similar drops suppressed)" in lines.matching("dropped")[1]


def test_flushWritesPendingSuppressionCounts() -> None:
    clock = Clock()
    reporter, lines = collectingReporter(clock)
    for _ in range(3):
        reporter.failure("s", None, "wrote error output")
    reporter.flush()
    assert lines.matching("2 similar failures of sink s suppressed")
    reporter.flush()
    assert len(lines.matching("suppressed")) == 1


def test_stateChangeFlushesThatSinksSuppressedCountsFirst() -> None:
    reporter, lines = collectingReporter()
    reporter.failure("s", None, "bad")
    reporter.failure("s", None, "bad")
    reporter.stateChanged("s", "closed", "open", "quarantined")
    assert "1 similar failures of sink s suppressed" in lines.lines[-2]
    assert lines.lines[-1].endswith("sink s quarantined")


def reportsInterrupted(at: tuple[str, int] | None) -> set[tuple[str, int]]:
    """
    Failures and drops of sink C{s}, some suppressed, then a state change
    of C{s} and a flush, while the reporter's code is interrupted at line
    C{at} by a signal handler whose sink reports a failure of a kind not
    seen yet (a new sink) and one more failure of C{s}: check that every
    failure of C{s} is written or counted in a suppression line, and that
    no line is lost; return the lines of the reporter reached.
    """
    clock = Clock()
    reporter, lines = collectingReporter(clock, interval=10)
    failures = [0]
    handlers: list[str] = []

    def handler() -> None:
        handlers.append(f"h{len(handlers)}")
        reporter.failure(handlers[-1], OSError("no space"), "OSError: no space")
        failures[0] += 1
        reporter.failure("s", OSError("no space"), "OSError: no space")

    for _ in range(3):
        failures[0] += 1
        reporter.failure("s", OSError("no space"), "OSError: no space")
    reporter.dropped("s", "overflow", 2)
    reporter.dropped("s", "overflow", 3)
    with interruptedAt([_report], handler, at) as reached:
        reporter.stateChanged("s", "closed", "open", "quarantined")
        reporter.flush()
    reporter.flush()
    written = lines.matching("sink s failed")
    suppressed = [
        int(m.group(1))
        for line in lines.lines
        for m in [re.search(r"(\d+) similar failures of sink s suppressed", line)]
        if m
    ]
    assert len(written) + sum(suppressed) == failures[0], (at, lines.lines)
    assert lines.matching("3 similar drops (overflow) for sink s suppressed"), (at, lines.lines)
    assert lines.matching("sink s quarantined"), (at, lines.lines)
    for name in handlers:
        assert lines.matching(f"sink {name} failed: OSError: no space"), (at, lines.lines)
    return reached


def test_aSignalHandlerThatReportsInTheMiddleOfAReportLosesNothing() -> None:
    """
    A signal handler that logs runs on the main thread between two bytecodes
    of what it was doing, which may be the reporter writing out a sink's
    suppressed counts (its lock is reentrant, so the handler does not wait
    for itself), and its own sink's failure may be a kind the reporter has
    not seen (a new key in the table being walked) or one more of a kind
    being written out. Interrupted so at any one line of the reporter's
    code, no count is lost, and every line is written (the walk raised
    C{RuntimeError: dictionary changed size during iteration}, which the
    state change's caller swallowed, with the suppressed counts taken so far
    and the state change line).
    """
    atEachLine(reportsInterrupted, 20)


def test_tracebackOnlyWithTheFirstFailureOfAKind() -> None:
    clock = Clock()
    reporter, lines = collectingReporter(clock, interval=1)
    for _ in range(2):
        try:
            raise OSError("nope")
        except OSError as e:
            reporter.failure("s", e, "OSError: nope")
        clock.advance(2)
    assert len(lines.matching("Traceback")) == 1


def test_fileDescriptorWriterBypassesPythonFiles() -> None:
    read, write = os.pipe()
    try:
        FileDescriptorWriter(write)("hello\n")
        assert os.read(read, 100) == b"hello\n"
    finally:
        os.close(read)
        os.close(write)


def test_streamWriterFlushes() -> None:
    stream = io.StringIO()
    StreamWriter(stream)("x\n")
    assert stream.getvalue() == "x\n"


def test_setDefaultReporterRedirectsExistingUsers() -> None:
    proxy = defaultReporter()
    reporter, lines = collectingReporter()
    setDefaultReporter(reporter)
    try:
        proxy.note("hello")
    finally:
        setDefaultReporter(None)
    assert lines.matching("hello")


def test_describeNeverRaises() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert describe(BadRepr()) == "test_describeNeverRaises.<locals>.BadRepr"
    long = describe("a" * 250 + "z" * 250)
    assert len(long) == 80
    assert "..." in long and long.endswith("z'"), "cut in the middle: the end is kept"


# -- bounded and safe ---------------------------------------------------------------


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_aHugeExceptionMessageGivesABoundedReport() -> None:
    """
    An observer raising an exception with a 10 MB message used to put 20 MB
    on fd 2: now each line is cut at about 2 kB, the cut marked.
    """
    written: list[str] = []
    reporter = Reporter(write=written.append, clock=Clock())
    safe = SafeObserver(RaisingObserver(lambda: ValueError("m" * 10_000_000)), reporter=reporter)
    safe(event(0))
    out = "".join(written)
    assert len(out) < 40_000
    lines = out.splitlines()
    assert all(len(line) < LINE_LIMIT + 200 for line in lines)
    assert any("cut" in line for line in lines)
    assert all(line.startswith(REPORT_PREFIX) for line in lines)


def test_tracebacksAreCappedInLines() -> None:
    lines = LineCollector()
    reporter = Reporter(write=lines, clock=Clock())
    message = "\n".join(f"line {n}" for n in range(10_000))
    reporter.failure("sink", raised(RuntimeError(message)), "RuntimeError: many lines")
    assert len(lines.lines) <= TRACEBACK_LINES + 2
    assert any("more traceback lines cut" in line for line in lines.lines)


@pytest.mark.parametrize(
    "char", ["\r", "\x0b", "\x0c", "\x1c", "\x1e", "\x85", "\u2028", "\u2029", "\x1b[31m", "\n"]
)
def test_controlCharactersCannotForgeReportLines(char: str) -> None:
    """
    A reader splitting lines the Unicode way sees only the lines the
    library wrote, and no escape sequence reaches a terminal.
    """
    written: list[str] = []
    reporter = Reporter(write=written.append, clock=Clock())
    forged = f"x{char}{REPORT_PREFIX} forged"
    reporter.failure(f"sink{char}name", raised(ValueError(forged)), f"ValueError: {forged}")
    reporter.dropped(f"other{char}sink", "overflow", 3)
    reporter.note(f"note{char}{REPORT_PREFIX} forged")
    reporter.stateChanged(f"s{char}", "closed", "open", f"detail{char}{REPORT_PREFIX} forged")
    out = "".join(written)
    assert "\x1b" not in out
    for line in out.splitlines():
        assert line.startswith(REPORT_PREFIX)
        assert not line[len(REPORT_PREFIX) :].lstrip().startswith(REPORT_PREFIX)
    # The description, the note and the state change are one line each.
    assert sum(1 for line in out.splitlines() if "failed: ValueError" in line) == 1
    assert sum(1 for line in out.splitlines() if " note" in line) == 1


@pytest.mark.parametrize(
    "char",
    [
        "\u200e",  # LEFT-TO-RIGHT MARK
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u061c",  # ARABIC LETTER MARK: the third implicit bidi mark
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u2067",  # RIGHT-TO-LEFT ISOLATE
    ],
)
def test_everyBidiControlIsEscapedInReports(char: str) -> None:
    """
    Every Unicode bidirectional formatting character (the marks included,
    as the README promises for bidi controls) is written as a visible
    escape, so a sink name or message cannot reorder what a terminal shows.
    """
    written: list[str] = []
    reporter = Reporter(write=written.append, clock=Clock())
    reporter.note(f"a{char}b")
    out = "".join(written)
    assert char not in out
    assert f"\\u{ord(char):04x}" in out


def test_escapingSkipsOnlyTextWithNothingToEscape() -> None:
    """
    escapeControl returns ASCII text with nothing to escape as it is without
    searching it with its pattern; the shortcut never lets through a
    character the pattern escapes.
    """
    for code in range(0x10000):
        char = chr(code)
        text = f"line {char} end\n"
        escaped = escapeControl(text)
        assert (escaped != text) == bool(_UNSAFE.match(char)), f"U+{code:04X}"
        escaped = escapeControl(text, newlines=False)
        assert escaped != text, f"U+{code:04X}"  # the final newline at least
        assert (char in escaped) != bool(_UNSAFE_WITH_NEWLINE.match(char)), f"U+{code:04X}"
    assert escapeControl("GET /chart-data -> 200\n") == "GET /chart-data -> 200\n"
    assert escapeControl("two\n\tlines\n") == "two\n\tlines\n"
    assert escapeControl("a\nb", newlines=False) == "a\\nb"


class _LyingText(str):
    """
    A C{str} subclass whose C{isascii} and C{encode} say nothing needs
    escaping, whatever it holds.
    """

    def isascii(self) -> bool:
        return True

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"nothing to see"


@pytest.mark.parametrize("newlines", [True, False])
def test_escapingReadsTheCharactersOfAStrSubclass(newlines: bool) -> None:
    """
    escapeControl escapes a C{str} subclass (what C{str(error)} returns
    when an exception's C{__str__} does) by its characters, not by what
    its own C{isascii} and C{encode} say.
    """
    text = _LyingText("red\x1b[31m\rforged")
    escaped = escapeControl(text, newlines=newlines)
    assert escaped == "red\\x1b[31m\\rforged"
    assert _UNSAFE.search(escaped) is None

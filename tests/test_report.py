"""
Tests for L{twisted_safelog._report}.
"""

from __future__ import annotations

import io
import os

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from twisted_safelog import (
    REPORT_PREFIX,
    FileDescriptorWriter,
    IReporter,
    Reporter,
    StreamWriter,
    defaultReporter,
    setDefaultReporter,
)
from twisted_safelog._report import describe

from .helpers import collectingReporter


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

"""
Tests for the loop doctor, L{twisted_safelog.findFeedbackLoops}.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from twisted.logger import (
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    STDLibLogObserver,
    textFileLogObserver,
)
from twisted.python.log import PythonLoggingObserver

from twisted_safelog import (
    SafeHandler,
    SafeObserver,
    StdlibObserver,
    TwistedHandler,
    findFeedbackLoops,
)

from .helpers import RecordingReporter


@pytest.fixture
def publisher() -> LogPublisher:
    return LogPublisher()


def redirected(publisher: LogPublisher) -> SimpleNamespace:
    return SimpleNamespace(
        stdout=LoggingFile(Logger(namespace="stdout", observer=publisher)),
        stderr=LoggingFile(Logger(namespace="stderr", observer=publisher), LogLevel.error),
    )


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("loops.test")
    logger.propagate = False
    yield logger
    logger.handlers[:] = []


def paths(loops: list[object]) -> list[str]:
    return [str(loop) for loop in loops]


def test_theIncidentsLoop(publisher: LogPublisher, logger: logging.Logger) -> None:
    logger.addHandler(logging.FileHandler("/dev/null"))
    publisher.addObserver(STDLibLogObserver("loops.test"))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert str(loop) == (
        "twisted publisher -> STDLibLogObserver -> logger 'loops.test' -> "
        "FileHandler(/dev/null) -> (on failure) handleError -> "
        "sys.stderr <stderr LoggingFile> -> twisted publisher  [UNGUARDED]"
    )
    assert not loop.guarded


def test_noRedirectionNoLoop(publisher: LogPublisher, logger: logging.Logger) -> None:
    logger.addHandler(logging.FileHandler("/dev/null"))
    publisher.addObserver(STDLibLogObserver("loops.test"))
    plain = SimpleNamespace(stdout=io.StringIO(), stderr=io.StringIO())
    assert findFeedbackLoops(publisher, plain) == []


def test_streamHandlerOnRedirectedStderrLoopsEvenWhenHealthy(
    publisher: LogPublisher, logger: logging.Logger
) -> None:
    stdio = redirected(publisher)
    logger.addHandler(logging.StreamHandler(stdio.stderr))
    publisher.addObserver(STDLibLogObserver("loops.test"))
    found = paths(findFeedbackLoops(publisher, stdio))
    assert (
        "twisted publisher -> STDLibLogObserver -> logger 'loops.test' -> "
        "StreamHandler(<stderr LoggingFile>) -> <stderr LoggingFile> -> twisted publisher"
        "  [UNGUARDED]"
    ) in found


def test_lastResortWhenNoHandler(publisher: LogPublisher, logger: logging.Logger) -> None:
    publisher.addObserver(STDLibLogObserver("loops.test"))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert "logging.lastResort -> <stderr LoggingFile> -> twisted publisher" in str(loop)


def test_legacyBridgeIsSeenThrough(publisher: LogPublisher, logger: logging.Logger) -> None:
    logger.addHandler(logging.FileHandler("/dev/null"))
    observer = PythonLoggingObserver("loops.test")
    publisher.addObserver(SafeObserver(observer.emit, reporter=RecordingReporter()))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert "STDLibLogObserver -> logger 'loops.test'" in str(loop)
    assert loop.guards == ("SafeObserver",)


def test_hardenedHandlerIsGuarded(publisher: LogPublisher, logger: logging.Logger) -> None:
    logger.addHandler(SafeHandler(logging.FileHandler("/dev/null"), reporter=RecordingReporter()))
    publisher.addObserver(STDLibLogObserver("loops.test"))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert loop.guarded
    assert "SafeHandler" in loop.guards


def test_bothBridgesAreCutByProvenanceMarks(
    publisher: LogPublisher, logger: logging.Logger
) -> None:
    logger.addHandler(TwistedHandler(publisher))
    publisher.addObserver(StdlibObserver("loops.test"))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert "TwistedHandler -> twisted publisher" in str(loop)
    assert "provenance marks" in loop.guards


def test_plainBridgeIntoTwistedHandlerIsStillCutByItsGuard(
    publisher: LogPublisher, logger: logging.Logger
) -> None:
    logger.addHandler(TwistedHandler(publisher))
    publisher.addObserver(STDLibLogObserver("loops.test"))
    (loop,) = findFeedbackLoops(publisher, redirected(publisher))
    assert loop.guards == ("TwistedHandler reentry guard",)


def test_fileObserverOnRedirectedStdout(publisher: LogPublisher) -> None:
    stdio = redirected(publisher)
    publisher.addObserver(textFileLogObserver(stdio.stdout))
    (loop,) = findFeedbackLoops(publisher, stdio)
    assert str(loop) == (
        "twisted publisher -> FileLogObserver -> <stdout LoggingFile> -> twisted publisher"
        "  [UNGUARDED]"
    )

"""
Tests for the stdlib bridges and L{SafeHandler}, in process. The incident
itself, in subprocesses, is in test_incident.py.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import (
    ILogObserver,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    STDLibLogObserver,
)
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from twisted_safelog import (
    ORIGIN_KEY,
    BreakerState,
    SafeHandler,
    SafeObserver,
    StdlibObserver,
    TwistedHandler,
    hardenHandlers,
    hardeningOf,
    unhardenHandlers,
)
from twisted_safelog.testing import RecordingObserver

from .helpers import BrokenHandler, ListHandler, RecordingReporter, event


@pytest.fixture(autouse=True)
def isolatedLogging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = []
    root.setLevel(logging.DEBUG)
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


def test_stdlibObserverProvidesILogObserver() -> None:
    assert verifyObject(ILogObserver, StdlibObserver())


def test_loggerNameComesFromNamespace() -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    publisher = LogPublisher(StdlibObserver())
    Logger(namespace="myapp.web", observer=publisher).warn("hi {who}", who="there")
    (record,) = handler.records
    assert record.name == "myapp.web"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "hi there"
    assert record.who == "there"  # type: ignore[attr-defined]
    assert getattr(record, ORIGIN_KEY) == "twisted"


def test_fixedLoggerName() -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    StdlibObserver("everything")(event(log_namespace="x.y"))
    assert handler.records[0].name == "everything"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (LogLevel.debug, logging.DEBUG),
        (LogLevel.info, logging.INFO),
        (LogLevel.warn, logging.WARNING),
        (LogLevel.error, logging.ERROR),
        (LogLevel.critical, logging.CRITICAL),
    ],
)
def test_levelsAreMapped(level: LogLevel, expected: int) -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    StdlibObserver()(event(log_level=level))
    assert handler.records[0].levelno == expected


def test_disabledLevelsAreNotFormatted() -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    logging.getLogger("quiet").setLevel(logging.ERROR)
    StdlibObserver()(event(log_namespace="quiet"))
    assert handler.records == []


def test_failureBecomesExcInfo() -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        failure = Failure()
    StdlibObserver()(event(log_failure=failure))
    StdlibObserver()(event(log_failure=failure.cleanFailure() or failure))
    for record in handler.records:
        assert record.exc_info is not None
        assert record.exc_info[0] is ZeroDivisionError
        text = logging.Formatter().format(record)
        assert "ZeroDivisionError" in text


def test_eventFieldsDoNotClobberRecordAttributes() -> None:
    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    StdlibObserver()(event(name="not-the-logger", msg="nope", levelno=99, extra_field=1))
    (record,) = handler.records
    assert record.name == "tests"
    assert record.levelno == logging.INFO
    assert record.extra_field == 1  # type: ignore[attr-defined]
    assert record.twisted_event["name"] == "not-the-logger"  # type: ignore[attr-defined]


def test_oddEventsAreFormattedAsWellAsPossibleAndNeverRaise() -> None:
    class BadRepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        __str__ = __repr__

    handler = ListHandler()
    logging.getLogger().addHandler(handler)
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    observer = StdlibObserver()
    observer(event(log_format="{bad}", bad=BadRepr()))
    observer(event(log_format=42))
    observer(event(log_format="{c}", c=cyclic))
    observer(event(log_format="{big}", big="x" * 1_000_000))
    texts = [logging.Formatter().format(r) for r in handler.records]
    assert len(texts) == 4
    assert "Unable to format event" in texts[0]
    assert "Unable to format event" in texts[1]
    assert "{...}" in texts[2]
    assert len(texts[3]) >= 1_000_000


def test_twistedHandlerPublishesEvents() -> None:
    events = RecordingObserver()
    handler = TwistedHandler(LogPublisher(events))
    logger = logging.getLogger("app.db")
    logger.addHandler(handler)
    try:
        logger.warning("slow query %s", "q1")
        try:
            {}["k"]
        except KeyError:
            logger.exception("lookup failed")
    finally:
        logger.removeHandler(handler)
    first, second = events.events
    assert first["log_namespace"] == "app.db"
    assert first["log_level"] is LogLevel.warn
    assert first[ORIGIN_KEY] == "stdlib"
    from twisted.logger import formatEvent

    assert formatEvent(first) == "slow query q1"
    assert second["log_level"] is LogLevel.error
    assert second["log_failure"].check(KeyError)


def test_twistedHandlerRendersBrokenMessagesClearly() -> None:
    events = RecordingObserver()
    handler = TwistedHandler(LogPublisher(events))
    record = logging.LogRecord("x", logging.INFO, "p", 1, "%d apples", ("many",), None)
    handler.handle(record)
    text = events.events[0]["stdlib_message"]
    assert "message could not be formatted" in text
    assert "%d apples" in text


def test_bridgingBothWaysDeliversEachMessageOnceOnEachSide() -> None:
    twistedSide = RecordingObserver()
    publisher = LogPublisher(twistedSide)
    publisher.addObserver(StdlibObserver())
    stdlibSide = ListHandler()
    root = logging.getLogger()
    root.addHandler(stdlibSide)
    root.addHandler(TwistedHandler(publisher))
    Logger(namespace="from.twisted", observer=publisher).info("t")
    logging.getLogger("from.stdlib").info("s")
    assert [formatEventText(e) for e in twistedSide.events] == ["t", "s"]
    assert [r.getMessage() for r in stdlibSide.records] == ["t", "s"]


def formatEventText(e: dict[str, object]) -> str:
    from twisted.logger import formatEvent

    return formatEvent(e)


# -- SafeHandler ---------------------------------------------------------------


def makeSafeHandler(
    handler: logging.Handler, **kw: object
) -> tuple[SafeHandler, Clock, RecordingReporter]:
    clock = Clock()
    reporter = RecordingReporter()
    return SafeHandler(handler, clock=clock, reporter=reporter, **kw), clock, reporter  # type: ignore[arg-type]


def test_safeHandlerCountsHandleErrorAsFailureAndWritesNothingToStderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    broken = BrokenHandler()
    safe, _, reporter = makeSafeHandler(broken, failureThreshold=3)
    logger = logging.getLogger("safe.handler")
    logger.addHandler(safe)
    logger.propagate = False
    for n in range(10):
        logger.error("event %d", n)
    assert stderr.getvalue() == ""
    assert broken.calls == 3
    stats = safe.stats()
    assert stats.state == BreakerState.open
    assert (stats.failed, stats.buffered) == (3, 7)
    assert isinstance(reporter.failures[0][1], FileNotFoundError)


def test_plainHandlerErrorWritesToStderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    What SafeHandler prevents is real: stdlib prints the traceback.
    """
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    logger = logging.getLogger("plain.handler")
    logger.addHandler(BrokenHandler())
    logger.propagate = False
    logger.error("x")
    assert "--- Logging error ---" in stderr.getvalue()


def test_safeHandlerReplaysRecordsAfterRecovery() -> None:
    inner = ListHandler()
    failing = [True, True]

    def emit(record: logging.LogRecord) -> None:
        if failing:
            failing.pop()
            raise OSError("not yet")
        inner.records.append(record)

    inner.emit = emit  # type: ignore[method-assign]
    safe, clock, _ = makeSafeHandler(inner, failureThreshold=2)
    for n in range(5):
        safe.handle(logging.LogRecord("r", logging.INFO, "p", n, "m%d", (n,), None))
    clock.advance(1)
    safe.handle(logging.LogRecord("r", logging.INFO, "p", 5, "m%d", (5,), None))
    assert [r.getMessage() for r in inner.records] == ["m2", "m3", "m4", "m5"]
    assert safe.stats().balanced


def test_safeHandlerMirrorsLevelAndFormatter() -> None:
    inner = ListHandler()
    inner.setLevel(logging.WARNING)
    safe, _, _ = makeSafeHandler(inner)
    assert safe.level == logging.WARNING
    safe.setLevel(logging.ERROR)
    assert inner.level == logging.ERROR
    formatter = logging.Formatter("%(message)s!")
    safe.setFormatter(formatter)
    assert inner.formatter is formatter


def test_safeHandlerCloseRestoresHandleError() -> None:
    broken = BrokenHandler()
    safe, _, _ = makeSafeHandler(broken)
    assert "handleError" in broken.__dict__
    safe.close()
    assert "handleError" not in broken.__dict__


def test_hardenHandlersWrapsTheTreeInPlaceAndUnhardenRestores() -> None:
    root = logging.getLogger()
    a, b = ListHandler(), ListHandler()
    root.addHandler(a)
    child = logging.getLogger("harden.child")
    child.addHandler(b)
    twistedBridge = TwistedHandler(LogPublisher())
    child.addHandler(twistedBridge)
    try:
        hardened = hardenHandlers(reporter=RecordingReporter())
        assert {h.handler for h in hardened} >= {a, b}
        assert root.handlers[0] is a, "hardened in place: the same object"
        assert child.handlers == [b, twistedBridge]
        assert hardeningOf(a) is not None and hardeningOf(b) is not None
        assert hardeningOf(twistedBridge) is None
        assert hardenHandlers() == [], "hardening twice is harmless"
        child.info("still works")
        assert b.records[0].getMessage() == "still works"
        unhardenHandlers()
        assert root.handlers == [a]
        assert child.handlers == [b, twistedBridge]
        assert "emit" not in vars(a) and "handleError" not in vars(a)
    finally:
        child.handlers[:] = []


def test_safeObserverAroundPlainStdlibBridgeQuarantinesABrokenHandler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    SafeObserver(STDLibLogObserver()) in front of a broken handler, under a
    redirected stderr: handleError's traceback is the observer's own echo
    (not delivered to it again) and counts as a failure, so it is quarantined
    instead of writing a traceback into the other sinks for every event.
    """
    publisher = LogPublisher()
    witness = RecordingObserver()
    monkeypatch.setattr(
        sys, "stderr", LoggingFile(Logger(namespace="stderr", observer=publisher), LogLevel.error)
    )
    broken = BrokenHandler()
    logging.getLogger().addHandler(broken)
    safe = SafeObserver(
        STDLibLogObserver(), reporter=RecordingReporter(), clock=Clock(), failureThreshold=3
    )
    publisher.addObserver(safe)
    publisher.addObserver(witness)
    log = Logger(namespace="app", observer=publisher)
    for n in range(50):
        log.warn("event {n}", n=n)
    monkeypatch.undo()
    assert broken.calls == 3
    stats = safe.stats()
    assert stats.state == BreakerState.open
    assert stats.failed == 3
    assert [e["n"] for e in witness.events if "n" in e] == list(range(50))
    headers = [e for e in witness.events if e.get("log_io") == "--- Logging error ---"]
    assert len(headers) == 3, "one traceback per failure before quarantine, none after"


def test_bridgesStopTheirOwnReentry() -> None:
    """
    A plain STDLibLogObserver (no marks) next to TwistedHandler would
    ping-pong; TwistedHandler's own guard stops the second turn.
    """
    publisher = LogPublisher()
    publisher.addObserver(STDLibLogObserver("bridge.reentry"))
    logger = logging.getLogger("bridge.reentry")
    logger.propagate = False
    handler = TwistedHandler(publisher)
    logger.addHandler(handler)
    witness = RecordingObserver()
    publisher.addObserver(witness)
    try:
        logger.warning("once")
    finally:
        logger.handlers[:] = []
    assert handler.reentered.value == 1
    assert len(witness.events) == 1


def test_stdlibObserverStopsItsOwnReentry() -> None:
    publisher = LogPublisher()
    observer = StdlibObserver("observer.reentry")
    publisher.addObserver(observer)

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            Logger(namespace="echo", observer=publisher).info("echo")

    logger = logging.getLogger("observer.reentry")
    logger.propagate = False
    logger.addHandler(Echo())
    try:
        Logger(namespace="app", observer=publisher).info("once")
    finally:
        logger.handlers[:] = []
    assert observer.reentered.value == 1

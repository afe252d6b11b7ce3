"""
Tests for hardening stdlib handlers in place: while a handler works, an
application sees exactly what it would see without twisted-safelog (the
same objects in C{logger.handlers}, its levels, filters and formatter
honoured whenever they are set, C{removeHandler} by the object); only a
failure takes the hardened path. Nothing is kept alive that the application
let go, and nothing is printed at exit for handlers their owner closed.
"""

from __future__ import annotations

import gc
import io
import logging
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogPublisher, textFileLogObserver

from twisted_safelog import (
    BreakerState,
    SafeHandler,
    SafeObserver,
    hardenHandler,
    hardeningOf,
    install,
    uninstall,
)

from .helpers import (
    BrokenHandler,
    ListHandler,
    RecordingReporter,
    brokenHandlerLogged,
    privateLogger,
)


@pytest.fixture
def installed() -> Iterator[RecordingReporter]:
    """
    install() on a private publisher (stdlib handlers process-wide), undone
    afterwards; yields the reporter every hardened sink reports to.
    """
    reporter = RecordingReporter()
    publisher = LogPublisher()
    install(publisher, reporter=reporter, clock=Clock())
    try:
        yield reporter
    finally:
        uninstall(publisher)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    yield from privateLogger("tests.handlers")


def test_handlersStayTheApplicationsOwnObjects(
    installed: RecordingReporter, logger: logging.Logger, tmp_path: Path
) -> None:
    before = logging.FileHandler(tmp_path / "before.log")
    logger.addHandler(before)
    uninstall(LogPublisher())  # harmless: not installed there
    after = logging.FileHandler(tmp_path / "after.log")
    formatter = logging.Formatter("%(levelname)s %(message)s")
    after.setFormatter(formatter)
    logger.addHandler(after)
    assert logger.handlers == [before, after]
    assert logger.handlers[1] is after
    assert after in logger.handlers
    assert isinstance(logger.handlers[1], logging.FileHandler)
    assert after.baseFilename == str(tmp_path / "after.log")
    assert after.formatter is formatter
    assert after.stream is not None and not after.stream.closed
    logger.info("hello")
    after.flush()
    assert (tmp_path / "after.log").read_text() == "INFO hello\n"
    assert hardeningOf(after) is not None, "but hardened"
    before.close()
    after.close()


def test_levelFiltersAndFormatterSetAfterAddHandlerAreHonoured(
    installed: RecordingReporter, logger: logging.Logger
) -> None:
    """
    An alerting handler whose level is set after it was attached receives
    only what its level lets through (a copied level would let INFO in).
    """
    alerts = ListHandler()
    logger.addHandler(alerts)
    alerts.setLevel(logging.ERROR)
    logger.info("routine")
    logger.error("page someone")
    assert [r.getMessage() for r in alerts.records] == ["page someone"]
    alerts.addFilter(lambda record: "ignore" not in record.getMessage())
    logger.error("ignore me")
    assert len(alerts.records) == 1
    stream = io.StringIO()
    formatted = logging.StreamHandler(stream)
    logger.addHandler(formatted)
    formatted.setFormatter(logging.Formatter("<%(message)s>"))
    logger.warning("w")
    assert stream.getvalue() == "<w>\n"


def test_removeHandlerByTheObjectTheApplicationHolds(
    installed: RecordingReporter,
) -> None:
    """
    Scrapy's idiom: replace the root handler only if it is still in
    C{logging.root.handlers}. Under install() the check holds, so handlers
    do not pile up and each line is written once.
    """
    root = logging.getLogger()
    stream = io.StringIO()
    saved = root.handlers[:]
    current: logging.Handler | None = None
    try:
        for _ in range(3):
            if current is not None and current in root.handlers:
                root.removeHandler(current)
            current = logging.StreamHandler(stream)
            root.addHandler(current)
        assert [h for h in root.handlers if h not in saved] == [current]
        logging.getLogger("tests.scrapylike").warning("once")
        assert stream.getvalue() == "once\n"
    finally:
        root.handlers[:] = saved


def test_handleReturnsWhatItReturnsWithoutTheLibrary(installed: RecordingReporter) -> None:
    plain, hardened = ListHandler(), ListHandler()
    hardenHandler(hardened, reporter=installed)
    for handler in (plain, hardened):
        handler.addFilter(lambda record: record.levelno > logging.INFO)
    for level in (logging.INFO, logging.ERROR):
        record = logging.LogRecord("r", level, "p", 1, "m", None, None)
        assert plain.handle(record) == hardened.handle(record)
    assert len(plain.records) == len(hardened.records) == 1


def test_aFailingHandlerTakesTheHardenedPath(
    installed: RecordingReporter, logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    broken = BrokenHandler()
    logger.addHandler(broken)
    for n in range(10):
        logger.error("event %d", n)
    assert stderr.getvalue() == "", "handleError's traceback never written"
    assert logger.handlers == [broken]
    hardening = hardeningOf(broken)
    assert hardening is not None
    stats = hardening.stats()
    assert stats.state == BreakerState.open
    assert (stats.failed, stats.buffered) == (5, 5)
    assert installed.failures[0][0] == hardening.name


def test_aHandlerWhoseEmitRaisesNoLongerRaisesIntoTheApplication(
    installed: RecordingReporter, logger: logging.Logger
) -> None:
    class Raising(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("emit raised")

    raising = Raising()
    logger.addHandler(raising)
    logger.error("contained")
    hardening = hardeningOf(raising)
    assert hardening is not None and hardening.stats().failed == 1


def test_plainLoggingLetsARaisingEmitOutIntoTheApplication() -> None:
    """
    What in-place hardening prevents is real (and is what hangs Scrapy's
    crawl when its root handler raises).
    """

    class Raising(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("emit raised")

    logger = logging.getLogger("tests.handlers.plain")
    logger.propagate = False
    logger.addHandler(Raising())
    try:
        with pytest.raises(RuntimeError):
            logger.error("escapes")
    finally:
        logger.handlers[:] = []


def test_thousandHandlersAddedRemovedAndClosedAreCollected(
    installed: RecordingReporter, logger: logging.Logger
) -> None:
    gc.collect()
    baseline = len(logging._handlerList)  # type: ignore[attr-defined]
    refs = []
    # Without the cycle collector: nothing of ours refers back to a handler,
    # so it goes the moment its owner lets it go.
    gc.disable()
    try:
        for n in range(1000):
            handler = logging.StreamHandler(io.StringIO())
            logger.addHandler(handler)
            logger.info("event %d", n)
            logger.removeHandler(handler)
            handler.close()
            refs.append(weakref.ref(handler))
            del handler
        alive = sum(1 for ref in refs if ref() is not None)
    finally:
        gc.enable()
    assert alive == 0
    assert len(logging._handlerList) <= baseline  # type: ignore[attr-defined]


def test_aHandlerCollectedWithRecordsBufferedIsAccounted(
    installed: RecordingReporter, logger: logging.Logger
) -> None:
    broken, hardening = brokenHandlerLogged(logger, 8)
    name = hardening.name
    assert hardening.stats().buffered == 3
    logger.removeHandler(broken)
    # The recorded errors' tracebacks hold the handler's frames.
    installed.failures.clear()
    del broken, hardening
    gc.collect()
    assert (name, "shutdown", 3) in installed.drops


def test_hardeningCanBeUndoneAndKeepsAnInstanceEmitOverride() -> None:
    handler = ListHandler()
    seen: list[str] = []

    def emit(record: logging.LogRecord) -> None:
        seen.append(record.getMessage())

    handler.emit = emit  # type: ignore[method-assign]
    hardening = hardenHandler(handler, reporter=RecordingReporter())
    assert hardenHandler(handler) is hardening, "hardened once"
    handler.handle(logging.LogRecord("r", logging.INFO, "p", 1, "m", None, None))
    assert seen == ["m"]
    hardening.undo()
    assert handler.emit is emit
    assert "handleError" not in vars(handler)
    assert hardeningOf(handler) is None


def test_safeHandlersAroundOneHandlerShareItsHardening() -> None:
    inner = ListHandler()
    a = SafeHandler(inner, reporter=RecordingReporter())
    b = SafeHandler(inner)
    assert a.core is b.core is hardeningOf(inner).core  # type: ignore[union-attr]
    a.close()
    b.close()


# -- names ---------------------------------------------------------------------


def test_twoAlikeHandlersGetDistinctReadableNames(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    one, two = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stdout)
    first = hardenHandler(one, reporter=reporter)
    second = hardenHandler(two, reporter=reporter)
    assert first.name != second.name
    assert "StreamHandler" in first.name and "StreamHandler" in second.name
    filed = logging.FileHandler(tmp_path / "app.log", delay=True)
    filedName = hardenHandler(filed, reporter=reporter).name
    assert "FileHandler" in filedName and "app.log" in filedName
    assert first.stats().name == first.name
    for handler in (one, two, filed):
        hardeningOf(handler).undo()  # type: ignore[union-attr]


def test_twoAlikeObserversGetDistinctNamesAndBothFirstFailuresAreReported() -> None:
    """
    Two observers of one kind (two legacy sinks, say) are told apart, so
    the second one's first failure is not rate-limited away as a repeat of
    the first one's.
    """
    from twisted.python.log import PythonLoggingObserver

    from .helpers import collectingReporter

    reporter, lines = collectingReporter()
    first = SafeObserver(PythonLoggingObserver().emit, reporter=reporter)
    second = SafeObserver(PythonLoggingObserver().emit, reporter=reporter)
    assert first.name != second.name
    assert "PythonLoggingObserver" in first.name
    assert "PythonLoggingObserver" in second.name

    def broken(event: object) -> None:
        raise OSError("gone")

    first._target = second._target = broken
    first({"log_format": "x"})
    second({"log_format": "x"})
    assert len(lines.matching("failed: OSError: gone")) == 2
    stream = io.StringIO()
    assert (
        SafeObserver(textFileLogObserver(stream)).name
        != SafeObserver(textFileLogObserver(stream)).name
    )


# -- at exit -------------------------------------------------------------------


_EXIT_SCRIPT = textwrap.dedent(
    """
    import io, logging, sys
    if sys.argv[1] == "installed":
        import twisted_safelog
        twisted_safelog.install()
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    root.warning("before close")
    # The owner closes its stream and the handler (Twisted's own test_stdlib
    # does this), and leaves it attached.
    stream.close()
    handler.close()
    print("done")
    """
)


@pytest.mark.parametrize("mode", ["plain", "installed"])
def test_nothingPrintedAtExitForAHandlerItsOwnerClosed(mode: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, mode],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "done\n", "")


def test_handleErrorCalledOutsideEmitIsReportedNotRaisedNorPrinted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    reporter = RecordingReporter()
    handler = ListHandler()
    hardening = hardenHandler(handler, reporter=reporter)
    record = logging.LogRecord("r", logging.INFO, "p", 1, "m", None, None)
    try:
        raise OSError("from the handler's own thread")
    except OSError:
        handler.handleError(record)
    assert stderr.getvalue() == ""
    assert [(name, type(error)) for name, error, _ in reporter.failures] == [
        (hardening.name, OSError)
    ]
    hardening.undo()


# -- observers on a publisher --------------------------------------------------


def test_observersKeepTheirPublicBehaviourUnderInstall() -> None:
    """
    What Twisted's API lets an application do with its observers works as
    without the library: adding one twice adds it once, removing it by the
    object it holds removes it, and the legacy publisher's C{observers}
    lists the application's own.
    """
    from twisted.python import log as legacyLog

    from twisted_safelog.testing import RecordingObserver

    publisher = LogPublisher()
    install(publisher, reporter=RecordingReporter(), clock=Clock(), stdlib=False)
    try:
        observer = RecordingObserver()
        publisher.addObserver(observer)
        publisher.addObserver(observer)
        assert len(publisher._observers) == 1
        publisher({"log_format": "x"})
        assert len(observer.events) == 1
        publisher.removeObserver(observer)
        assert publisher._observers == []
    finally:
        uninstall(publisher)

    legacy = legacyLog.LogPublisher(observerPublisher=publisher, publishPublisher=publisher)
    install(publisher, reporter=RecordingReporter(), clock=Clock(), stdlib=False)
    try:
        seen: list[object] = []
        legacy.addObserver(seen.append)
        assert legacy.observers == [seen.append]
        legacy.msg("hello")
        assert len(seen) == 1
        legacy.removeObserver(seen.append)
        assert legacy.observers == [] and publisher._observers == []
    finally:
        uninstall(publisher)


def test_thousandObserversAddedAndRemovedUnderInstallAreCollected() -> None:
    from twisted_safelog.testing import RecordingObserver

    publisher = LogPublisher()
    install(publisher, reporter=RecordingReporter(), clock=Clock(), stdlib=False)
    try:
        refs = []
        for _ in range(1000):
            observer = RecordingObserver()
            publisher.addObserver(observer)
            publisher({"log_format": "x"})
            publisher.removeObserver(observer)
            refs.append(weakref.ref(observer))
            del observer
        gc.collect()
        assert sum(1 for ref in refs if ref() is not None) == 0
        assert publisher._observers == []
    finally:
        uninstall(publisher)


def test_argumentsAreCheckedWhereGivenEvenWithNothingToHarden() -> None:
    from twisted_safelog import ConfigurationError, hardenHandlers

    empty = logging.getLogger("tests.handlers.empty")
    with pytest.raises(TypeError, match="failureTreshold"):
        hardenHandlers(empty, failureTreshold=3)
    with pytest.raises(ConfigurationError, match="bufferSize"):
        hardenHandlers(empty, bufferSize=-1)
    with pytest.raises(TypeError, match="failureTreshold"):
        hardenHandler(ListHandler(), failureTreshold=3)

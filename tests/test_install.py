"""
Tests for L{twisted_safelog.install} and L{twisted_safelog.uninstall}.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher

from twisted_safelog import SafeObserver, hardeningOf, install, installed, uninstall
from twisted_safelog._handlers import hardenings
from twisted_safelog.testing import RaisingObserver, RecordingObserver

from .helpers import ListHandler, RecordingReporter


@pytest.fixture
def publisher() -> Iterator[LogPublisher]:
    publisher = LogPublisher()
    yield publisher
    uninstall(publisher)


def kw() -> dict[str, object]:
    return {"reporter": RecordingReporter(), "clock": Clock(), "stdlib": False}


def test_wrapsPresentAndFutureObservers(publisher: LogPublisher) -> None:
    before = RecordingObserver()
    publisher.addObserver(before)
    install(publisher, **kw())  # type: ignore[arg-type]
    after = RecordingObserver()
    publisher.addObserver(after)
    assert all(isinstance(o, SafeObserver) for o in publisher._observers)
    Logger(observer=publisher).info("x")
    assert len(before.events) == len(after.events) == 1


def test_brokenObserverAddedLaterCannotBeReEmitted(publisher: LogPublisher) -> None:
    witness = RecordingObserver()
    publisher.addObserver(witness)
    install(publisher, **kw())  # type: ignore[arg-type]
    publisher.addObserver(RaisingObserver())
    Logger(observer=publisher).info("x")
    assert len(witness.events) == 1, "no 'Temporarily disabling observer' event"


def test_removeObserverByOriginalStillWorks(publisher: LogPublisher) -> None:
    a, b = RecordingObserver(), RecordingObserver()
    publisher.addObserver(a)
    install(publisher, **kw())  # type: ignore[arg-type]
    publisher.addObserver(b)
    publisher.removeObserver(a)
    publisher.removeObserver(b)
    assert publisher._observers == []


def test_addingTheSameObserverTwiceAddsItOnce(publisher: LogPublisher) -> None:
    install(publisher, **kw())  # type: ignore[arg-type]
    a = RecordingObserver()
    publisher.addObserver(a)
    publisher.addObserver(a)
    assert len(publisher._observers) == 1


def test_installTwiceIsHarmless(publisher: LogPublisher) -> None:
    a = RecordingObserver()
    publisher.addObserver(a)
    first = install(publisher, **kw())  # type: ignore[arg-type]
    second = install(publisher, **kw())  # type: ignore[arg-type]
    assert first is second
    assert isinstance(publisher._observers[0], SafeObserver)
    assert publisher._observers[0].observer is a
    assert installed(publisher) is first


def test_uninstallRestoresThePublisherExactly(publisher: LogPublisher) -> None:
    a, b = RecordingObserver(), RecordingObserver()
    publisher.addObserver(a)
    publisher.addObserver(b)
    original = list(publisher._observers)
    install(publisher, **kw())  # type: ignore[arg-type]
    c = RecordingObserver()
    publisher.addObserver(c)
    uninstall(publisher)
    assert publisher._observers == [*original, c]
    assert "addObserver" not in publisher.__dict__
    assert "removeObserver" not in publisher.__dict__
    assert installed(publisher) is None
    uninstall(publisher)  # harmless


def test_stdlibHandlersNowAndLaterAreHardenedAndRestored(publisher: LogPublisher) -> None:
    logger = logging.getLogger("install.test")
    logger.propagate = False
    early, late = ListHandler(), ListHandler()
    logger.addHandler(early)
    stdlibMethods = (logging.Logger.addHandler, logging.Logger.removeHandler)
    try:
        install(publisher, reporter=RecordingReporter(), clock=Clock())
        assert logging.Logger.addHandler is not stdlibMethods[0]
        logger.addHandler(late)
        assert logger.handlers == [early, late], "the application's own objects"
        assert all(hardeningOf(h) is not None for h in logger.handlers)
        logger.warning("x")
        assert len(early.records) == len(late.records) == 1
        logger.removeHandler(late)
        assert logger.handlers == [early]
        logger.addHandler(late)
        uninstall(publisher)
        assert logger.handlers == [early, late]
        assert hardeningOf(early) is None and hardeningOf(late) is None
        assert "handleError" not in early.__dict__ and "emit" not in early.__dict__
        assert (logging.Logger.addHandler, logging.Logger.removeHandler) == stdlibMethods
        other = ListHandler()
        logger.addHandler(other)
        assert logger.handlers[-1] is other, "handlers added after uninstall are left alone"
    finally:
        logger.handlers[:] = []


def test_sharedHandlerGetsOneBreaker(publisher: LogPublisher) -> None:
    shared = ListHandler()
    a, b = logging.getLogger("install.a"), logging.getLogger("install.b")
    try:
        install(publisher, reporter=RecordingReporter(), clock=Clock())
        a.addHandler(shared)
        b.addHandler(shared)
        assert a.handlers[0] is b.handlers[0] is shared
        assert len([h for h in hardenings() if h.handler is shared]) == 1
    finally:
        uninstall(publisher)
        a.handlers[:] = []
        b.handlers[:] = []

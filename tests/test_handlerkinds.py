"""
Hardening stdlib handlers in place, tried with the handler kinds and the
life cycles a production application has: a long-lived handler hardened
and given back many times, and the stdlib handlers whose own
C{handleError} does more than print.
"""

from __future__ import annotations

import gc
import io
import logging
import logging.handlers
import queue
import socket
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogPublisher

from twisted_safelog import (
    SafeHandler,
    hardenHandler,
    hardenHandlers,
    hardeningOf,
    install,
    uninstall,
)
from twisted_safelog._registry import hardenedSinks

from .helpers import BrokenHandler, RecordingReporter, brokenHandlerLogged, privateLogger


class _Unprintable:
    """
    A log message whose C{str} raises: any handler that formats it fails.
    """

    def __str__(self) -> str:
        raise ValueError("cannot format this message")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    yield from privateLogger("tests.handlerkinds")


# -- a long-lived handler, hardened and given back many times -------------------


def test_aHandlerHardenedAndGivenBackManyTimesKeepsNoOldHardening() -> None:
    """
    An application's one long-lived handler, wrapped in a L{SafeHandler}
    that is closed, or hardened by C{install()} that is undone, again and
    again: each hardening given back is gone (not listed among the process's
    hardened sinks, collected), and the handler keeps its plain name.
    """
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    gc.collect()
    before = len(hardenedSinks())
    cores: list[weakref.ref[object]] = []
    names = set()
    try:
        for _ in range(50):
            safe = SafeHandler(handler, reporter=RecordingReporter())
            cores.append(weakref.ref(safe.core))
            names.add(safe.core.name)
            safe.close()
            del safe
        root.addHandler(handler)
        for _ in range(50):
            publisher = LogPublisher()
            install(publisher, reporter=RecordingReporter(), clock=Clock())
            hardening = hardeningOf(handler)
            assert hardening is not None
            cores.append(weakref.ref(hardening.core))
            names.add(hardening.name)
            del hardening
            uninstall(publisher)
    finally:
        root.removeHandler(handler)
    gc.collect()
    assert hardeningOf(handler) is None
    assert len(hardenedSinks()) == before
    assert [ref for ref in cores if ref() is not None] == []
    assert names == {"<StreamHandler (NOTSET)>"}


def test_recordsBufferedWhenTheHardeningIsUndoneAreAccounted(logger: logging.Logger) -> None:
    """
    C{uninstall()} gives a quarantined handler back: what its hardening
    still buffered is counted and reported then (reason C{"shutdown"}), not
    kept by a hardening nobody can reach.
    """
    reporter = RecordingReporter()
    publisher = LogPublisher()
    install(publisher, reporter=reporter, clock=Clock(), failureThreshold=2, bufferSize=10)
    try:
        broken, hardening = brokenHandlerLogged(logger, 6)
        name = hardening.name
        assert hardening.stats().buffered == 4
        del hardening
    finally:
        uninstall(publisher)
    assert hardeningOf(broken) is None
    assert (name, "shutdown", 4) in reporter.drops


# -- handlers whose own handleError does more than print ------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    """
    A TCP server on 127.0.0.1 that accepts and never reads; yields its port.
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _failOnce(handler: logging.handlers.SocketHandler, logger: logging.Logger) -> None:
    handler.closeOnError = True
    logger.addHandler(handler)
    logger.warning("connects")
    assert handler.sock is not None
    logger.warning(_Unprintable())


def test_plainSocketHandlerClosesItsSocketOnErrorWhenAskedTo(
    listening: int, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Without the library: a C{SocketHandler} with C{closeOnError} closes its
    socket in C{handleError} (instead of printing a traceback).
    """
    handler = logging.handlers.SocketHandler("127.0.0.1", listening)
    _failOnce(handler, logger)
    assert handler.sock is None
    assert capsys.readouterr().err == ""
    handler.close()


@pytest.mark.parametrize("kind", ["SocketHandler", "DatagramHandler"])
def test_aHardenedSocketHandlerStillClosesItsSocketOnError(
    kind: str, listening: int, logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Hardened, C{handleError} no longer prints, but still does the rest of
    what the handler's own did: with C{closeOnError}, close the socket (the
    next record connects again).
    """
    handler = getattr(logging.handlers, kind)("127.0.0.1", listening)
    reporter = RecordingReporter()
    hardenHandler(handler, reporter=reporter)
    _failOnce(handler, logger)
    assert handler.sock is None
    assert [error for _, error, _ in reporter.failures if isinstance(error, ValueError)]
    assert capsys.readouterr().err == ""
    logger.warning("connects again")
    assert handler.sock is not None
    handler.close()


# -- arguments checked where they are given ---------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"stdlib": "no"}, "stdlib"),
        ({"reporter": "stderr"}, "reporter"),
        ({"clock": 5}, "clock"),
        ({"publisher": 42}, "publisher"),
    ],
)
def test_installRejectsNonsensicalArgumentsNamingThem(
    arguments: dict[str, object], named: str
) -> None:
    """
    C{install()} given a value that cannot work (a truthy string for
    C{stdlib}, a reporter or clock lacking what they are used for, a
    publisher that is none) fails at once naming it, and installs nothing.
    """
    from twisted.logger import globalLogPublisher

    publisher = arguments.pop("publisher", LogPublisher())
    with pytest.raises(TypeError, match=named):
        install(publisher, **arguments)  # type: ignore[arg-type]
    assert "addObserver" not in vars(globalLogPublisher)
    assert logging.Logger.addHandler is _plainAddHandler


_plainAddHandler = logging.Logger.addHandler


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: SafeHandler(logging.StreamHandler(), fallback=42), "fallback"),
        (lambda: hardenHandler(logging.StreamHandler(), fallback="stderr"), "fallback"),
        (lambda: hardenHandler(logging.StreamHandler(), name=3), "name"),
        (lambda: hardenHandler(logging.StreamHandler(), reporter=object()), "reporter"),
        (lambda: SafeHandler(logging.StreamHandler(), clock="monotonic"), "clock"),
        (lambda: hardenHandlers("root"), "logger"),
    ],
)
def test_handlerHardeningRejectsNonsensicalArgumentsNamingThem(
    make: Callable[[], object], named: str
) -> None:
    with pytest.raises(TypeError, match=named):
        make()


# -- handlers behind a queue or a memory buffer --------------------------------


class _RaisingOn(logging.Handler):
    """
    Keeps every message, but raises from C{emit} for one containing C{bad}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "bad" in record.getMessage():
            raise RuntimeError("sink down")
        self.messages.append(record.getMessage())


def _throughAListener(logger: logging.Logger) -> tuple[_RaisingOn, bool]:
    """
    Log C{one}, C{bad}, C{two} through a C{QueueHandler} to a
    C{QueueListener} whose handler raises on C{bad}; the handler, and
    whether the listener's thread is still alive afterwards.
    """
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    target = _RaisingOn()
    listener = logging.handlers.QueueListener(records, target)
    listener.start()
    logger.addHandler(logging.handlers.QueueHandler(records))
    for message in ("one", "bad", "two"):
        logger.info(message)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and listener._thread.is_alive():  # type: ignore[attr-defined]
        if "two" in target.messages:
            break
        time.sleep(0.01)
    alive = listener._thread.is_alive()  # type: ignore[attr-defined]
    if alive:
        listener.stop()
    return target, alive


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_plainQueueListenerDiesWhenItsHandlerRaises(logger: logging.Logger) -> None:
    """
    Without the library: a handler behind a C{QueueListener} that raises
    ends the listener's thread; every later record stays in the queue.
    """
    target, alive = _throughAListener(logger)
    assert target.messages == ["one"]
    assert not alive


def test_aQueueListenersHandlersAreHardenedUnderInstall(logger: logging.Logger) -> None:
    """
    Under C{install()}, the handlers a C{QueueListener} delivers to are
    hardened too (in place, like handlers attached to loggers): the raising
    one is counted and reported, the listener lives on and delivers the
    next record; C{uninstall()} gives them back.
    """
    reporter = RecordingReporter()
    publisher = LogPublisher()
    install(publisher, reporter=reporter, clock=Clock())
    try:
        target, alive = _throughAListener(logger)
        assert alive
        assert target.messages == ["one", "two"]
        assert [str(error) for _, error, _ in reporter.failures] == ["sink down"]
        assert hardeningOf(target) is not None
    finally:
        uninstall(publisher)
    assert hardeningOf(target) is None
    assert logging.handlers.QueueListener.handle is _plainListenerHandle


_plainListenerHandle = logging.handlers.QueueListener.handle


def test_aMemoryHandlersTargetIsHardenedUnderInstall(
    logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Under C{install()}, the target a C{MemoryHandler} flushes to is
    hardened too: its failures are reported out of band, not printed.
    """
    reporter = RecordingReporter()
    publisher = LogPublisher()
    install(publisher, reporter=reporter, clock=Clock())
    try:
        target = BrokenHandler()
        memory = logging.handlers.MemoryHandler(2, target=target)
        logger.addHandler(memory)
        for n in range(4):
            logger.info("event %d", n)
        assert target.calls == 4
        hardening = hardeningOf(target)
        assert hardening is not None
        assert {sink for sink, _, _ in reporter.failures} == {hardening.name}
        assert hardening.stats().failed == 4
        del hardening
        memory.close()
    finally:
        uninstall(publisher)
    assert hardeningOf(target) is None
    assert capsys.readouterr().err == ""

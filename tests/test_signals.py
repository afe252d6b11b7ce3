"""
Tests for a signal handler that logs in the middle of a delivery
(L{twisted_safelog._signals}): twistd's SIGTERM handler logs "Received
SIGTERM, shutting down." on the main thread between any two bytecodes of
what it was doing, which may be a sink's own call. The event reaches the
sink on a thread that is delivering to it, like one the delivery caused,
but it was not caused by it: plain Twisted writes it, and so must we (after
the delivery it interrupted), while a real feedback loop is still cut.

Each test sends a real signal to the process from inside the sink, on the
main thread; CPython runs the handler there before the sink's next line.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import ILogObserver, LogEvent, Logger, LogPublisher, formatEvent
from zope.interface import implementer

from twisted_safelog import SafeObserver, StdlibObserver, TwistedHandler

from .helpers import RecordingReporter, childResult, privateLogger

SIGNAL = signal.SIGUSR2
SIGTERM_LINE = "Received SIGTERM, shutting down."


@pytest.fixture(autouse=True)
def restoreHandler() -> Iterator[None]:
    before = signal.getsignal(SIGNAL)
    yield
    signal.signal(SIGNAL, before)


def line(text: str) -> LogEvent:
    return {"log_format": "{text}", "text": text, "log_time": 0.0, "log_namespace": "app"}


def raiseSignal() -> None:
    """
    Send L{SIGNAL} to this process: its handler runs on the main thread
    before the caller's next line.
    """
    os.kill(os.getpid(), SIGNAL)


@implementer(ILogObserver)
class InterruptedSink:
    """
    Records each event's text; the delivery of C{at} is interrupted by the
    signal (once), and then fails if C{fails}. With C{echo}, every
    delivery logs into C{echo} (a feedback loop).
    """

    def __init__(self, at: str = "interrupted", fails: bool = False) -> None:
        self.at = at
        self.fails = fails
        self.texts: list[str] = []
        self.echo: Callable[[LogEvent], object] | None = None
        self.signalled = False

    def __call__(self, event: LogEvent) -> None:
        text = str(event.get("text"))
        if text == self.at and not self.signalled:
            self.signalled = True
            raiseSignal()
        self.texts.append(text)
        if self.echo is not None:
            self.echo(line(f"echo of {text}"))
        if self.fails and text == self.at:
            raise OSError("the sink failed")


def onSignal(log: Callable[[LogEvent], object]) -> None:
    """
    Install a handler for L{SIGNAL} that logs L{SIGTERM_LINE} into C{log}.
    """

    def handler(signum: int, frame: object) -> None:
        log(line(SIGTERM_LINE))

    signal.signal(SIGNAL, handler)


def test_plainTwistedWritesAHandlersLineLoggedDuringADelivery() -> None:
    """
    The scenario is real: with plain Twisted, the handler's line, logged in
    the middle of the sink's call, reaches the sink (inside that call).
    """
    sink = InterruptedSink()
    publisher = LogPublisher(sink)
    onSignal(publisher)
    for text in ("before", "interrupted", "after"):
        publisher(line(text))
    assert sink.signalled
    assert sink.texts == ["before", SIGTERM_LINE, "interrupted", "after"]


@pytest.mark.parametrize("fails", [False, True], ids=["healthy", "failing"])
def test_aHandlersLineLoggedDuringADeliveryIsDeliveredAfterIt(fails: bool) -> None:
    """
    The handler's line reaches the sink on a thread delivering to it; it is
    not an echo of the delivery, so it is delivered (once that delivery
    returns, whether or not it failed), not dropped as a reentry.
    """
    sink = InterruptedSink(fails=fails)
    reporter = RecordingReporter()
    observer = SafeObserver(sink, reporter=reporter)
    onSignal(observer)
    for text in ("before", "interrupted", "after"):
        observer(line(text))
    assert sink.signalled
    assert sink.texts == ["before", "interrupted", SIGTERM_LINE, "after"]
    stats = observer.stats()
    assert stats.droppedByReason["reentry"] == 0
    assert stats.received == 4
    assert stats.delivered == 4 - fails and stats.failed == fails
    assert stats.balanced
    assert not any("reentry" in note for note in reporter.notes)


def test_aMethodOrPartialOrCallableObjectAsTheHandler() -> None:
    """
    twistd's handlers are the reactor's bound methods; others install a
    C{functools.partial} or a callable object (which may not be hashable).
    Each is told apart from the delivery the same way.
    """

    class Stopper:
        def __init__(self, log: Callable[[LogEvent], object]) -> None:
            self.log = log

        def sigTerm(self, signum: int, frame: object) -> None:
            self.log(line(SIGTERM_LINE))

        def __call__(self, signum: int, frame: object) -> None:
            self.log(line(SIGTERM_LINE))

    class Unhashable(Stopper):
        # A class that defines __eq__ alone: its objects cannot be hashed.
        def __eq__(self, other: object) -> bool:
            return other is self

    def logIt(log: Callable[[LogEvent], object], signum: int, frame: object) -> None:
        log(line(SIGTERM_LINE))

    for install in (
        lambda o: Stopper(o).sigTerm,
        lambda o: Stopper(o),
        lambda o: Unhashable(o),
        lambda o: functools.partial(logIt, o),
    ):
        sink = InterruptedSink()
        observer = SafeObserver(sink, reporter=RecordingReporter())
        signal.signal(SIGNAL, install(observer))
        observer(line("interrupted"))
        assert sink.texts == ["interrupted", SIGTERM_LINE]
        assert observer.stats().droppedByReason["reentry"] == 0


def test_aTwistedLoggerInTheHandlerThroughAPublisher() -> None:
    """
    As under twistd: the handler logs with a L{Logger} into the publisher
    the hardened sink observes.
    """
    sink = InterruptedSink()
    observer = SafeObserver(sink, reporter=RecordingReporter())
    publisher = LogPublisher(observer)
    log = Logger(namespace="app", observer=publisher)

    def sigTerm(signum: int, frame: object) -> None:
        log.info("{text}", text=SIGTERM_LINE)

    signal.signal(SIGNAL, sigTerm)
    for text in ("before", "interrupted", "after"):
        log.info("{text}", text=text)
    assert sink.texts == ["before", "interrupted", SIGTERM_LINE, "after"]


def test_aFeedbackLoopIsStillCutWhileAHandlerIsInstalled() -> None:
    """
    A Python signal handler installed changes nothing for a sink that logs
    into itself: each echo is dropped as a reentry, including the echo of
    the handler's line when it is delivered.
    """
    sink = InterruptedSink()
    observer = SafeObserver(sink, reporter=RecordingReporter())
    sink.echo = observer
    onSignal(observer)
    for text in ("before", "interrupted", "after"):
        observer(line(text))
    assert sink.texts == ["before", "interrupted", SIGTERM_LINE, "after"]
    stats = observer.stats()
    assert stats.droppedByReason["reentry"] == 4
    assert stats.balanced


def test_aHandlersFunctionCalledByTheSinkItselfIsAFeedbackLoop() -> None:
    """
    The function installed as the handler may also be called by the sink
    in its delivery (a stats dump, a flush, a method of the sink itself):
    what it logs then is an echo of the delivery and is dropped as a
    reentry, although the handler's code is between the log call and the
    delivery (it was not called by the signal: CPython hands a handler the
    frame it interrupted). Before, each echo was held and delivered after
    the delivery, whose call logged the next one: a loop without end, cut
    here by the sink after 20. Called by the signal, its line is still
    delivered after the delivery it interrupted.
    """

    class StatsSink:
        def __init__(self) -> None:
            self.texts: list[str] = []
            self.observer: Callable[[LogEvent], object] = lambda event: None

        def __call__(self, event: LogEvent) -> None:
            text = str(event.get("text"))
            if text == "interrupted":
                raiseSignal()
            self.texts.append(text)
            if len(self.texts) < 20:
                self.dumpStats()

        def dumpStats(self, *args: object) -> None:
            self.observer(line(f"stats after {len(self.texts)}"))

    sink = StatsSink()
    observer = SafeObserver(sink, reporter=RecordingReporter())
    sink.observer = observer
    signal.signal(SIGNAL, sink.dumpStats)
    observer(line("hello"))
    assert sink.texts == ["hello"]
    assert observer.stats().droppedByReason["reentry"] == 1
    observer(line("interrupted"))
    assert sink.texts == ["hello", "interrupted", "stats after 1"]
    stats = observer.stats()
    assert stats.droppedByReason["reentry"] == 3
    assert stats.delivered == 3 and stats.balanced


def test_aLoopStartedByAHandlersLineIsCut() -> None:
    """
    A handler that logs while no delivery is under way: its line is
    delivered at once, and what that delivery logs into the sink is its
    echo (the handler's frame is outside the delivery), dropped as a
    reentry.
    """
    sink = InterruptedSink()
    observer = SafeObserver(sink, reporter=RecordingReporter())
    sink.echo = observer
    onSignal(observer)
    raiseSignal()
    assert sink.texts == [SIGTERM_LINE]
    stats = observer.stats()
    assert stats.droppedByReason["reentry"] == 1
    assert stats.received == 2 and stats.delivered == 1
    assert stats.balanced


def test_aHandlerInterruptingTheHandlersLine() -> None:
    """
    A second signal in the middle of the delivery of the first handler's
    line: both lines are delivered, in order.
    """
    sink = InterruptedSink(at=SIGTERM_LINE)
    observer = SafeObserver(sink, reporter=RecordingReporter())
    sent = []

    def handler(signum: int, frame: object) -> None:
        sent.append(f"{SIGTERM_LINE} {len(sent)}")
        observer(line(sent[-1]))

    signal.signal(SIGNAL, handler)
    sink.at = "interrupted"
    original = sink.__call__

    def interruptEach(event: LogEvent) -> None:
        text = str(event.get("text"))
        if text.startswith(SIGTERM_LINE) and len(sent) < 3:
            raiseSignal()
        original(event)

    observer._target = interruptEach
    observer(line("interrupted"))
    assert sink.texts == ["interrupted", *sent]
    assert len(sent) == 3
    assert observer.stats().balanced


def test_aHandlerThatLogsThenExits() -> None:
    """
    A handler that logs and then raises C{SystemExit}: the exception leaves
    the log call it interrupted, and the handler's line is delivered before
    it does.
    """
    sink = InterruptedSink()
    observer = SafeObserver(sink, reporter=RecordingReporter())

    def handler(signum: int, frame: object) -> None:
        observer(line(SIGTERM_LINE))
        raise SystemExit(0)

    signal.signal(SIGNAL, handler)
    with pytest.raises(SystemExit):
        observer(line("interrupted"))
    assert sink.texts == [SIGTERM_LINE]
    stats = observer.stats()
    # The interrupted event never arrived: counted failed (interrupted).
    assert stats.received == 2 and stats.delivered == 1 and stats.failed == 1
    assert stats.balanced


def test_stdlibObserver(logger: logging.Logger) -> None:
    """
    The bridge into stdlib logging: a stdlib handler interrupted by a
    signal whose handler logs through Twisted into the same bridge.
    """
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message == "interrupted" and SIGTERM_LINE not in seen:
                raiseSignal()
            seen.append(message)

    logger.addHandler(Handler())
    bridge = StdlibObserver(logger.name)
    onSignal(bridge)
    for text in ("before", "interrupted", "after"):
        bridge(line(text))
    assert seen == ["before", "interrupted", SIGTERM_LINE, "after"]
    assert bridge.reentered.value == 0


def test_twistedHandler(logger: logging.Logger) -> None:
    """
    The bridge from stdlib logging: a Twisted observer interrupted by a
    signal whose handler logs through stdlib into the same bridge.
    """
    seen: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if text == "interrupted" and SIGTERM_LINE not in seen:
            raiseSignal()
        seen.append(text)

    handler = TwistedHandler(LogPublisher(observer))
    logger.addHandler(handler)

    def onTerm(signum: int, frame: object) -> None:
        logger.warning(SIGTERM_LINE)

    signal.signal(SIGNAL, onTerm)
    for text in ("before", "interrupted", "after"):
        logger.warning(text)
    assert seen == ["before", "interrupted", SIGTERM_LINE, "after"]
    assert handler.reentered.value == 0


def test_theBridgesDeliverAHandlersLineWhenItExits(logger: logging.Logger) -> None:
    """
    A handler that logs and then raises C{SystemExit} (an application's
    SIGTERM handler) in the middle of a bridge's call: the exception leaves
    the call, and the handler's line goes out before it does, as
    L{SafeObserver} does. Before, it stayed held until the bridge's next
    call, which at exit never comes: lost, and counted nowhere.
    """
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message == "interrupted":
                raiseSignal()
            seen.append(message)

    handler = Handler()
    logger.addHandler(handler)
    bridge = StdlibObserver(logger.name)

    def exitFromBridge(signum: int, frame: object) -> None:
        bridge(line(SIGTERM_LINE))
        raise SystemExit(0)

    signal.signal(SIGNAL, exitFromBridge)
    with pytest.raises(SystemExit):
        bridge(line("interrupted"))
    assert seen == [SIGTERM_LINE]
    assert bridge.reentered.value == 0
    logger.removeHandler(handler)

    published: list[str] = []

    def observer(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        if text == "interrupted":
            raiseSignal()
        published.append(text)

    twistedHandler = TwistedHandler(LogPublisher(observer))
    logger.addHandler(twistedHandler)

    def exitFromStdlib(signum: int, frame: object) -> None:
        logger.warning(SIGTERM_LINE)
        raise SystemExit(0)

    signal.signal(SIGNAL, exitFromStdlib)
    with pytest.raises(SystemExit):
        logger.warning("interrupted")
    assert published == [SIGTERM_LINE]
    assert twistedHandler.reentered.value == 0


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    yield from privateLogger("twisted_safelog.tests.signals")


WRITER_SWEEP = textwrap.dedent(
    """
    import faulthandler, glob, json, os, sys
    faulthandler.dump_traceback_later(100, exit=True)
    from twisted_safelog import Reporter, _fdwriter, _logfile, _pathcheck
    from twisted_safelog._logfile import LogFileWriter

    directory = sys.argv[1]
    path = os.path.join(directory, "app.log")
    files = {module.__file__ for module in (_logfile, _pathcheck, _fdwriter)}


    def scenario(at):
        for old in glob.glob(path + "*"):
            os.remove(old)
        writer = LogFileWriter(
            path, rotateLength=300, reporter=Reporter(write=lambda line: None), watcher=None
        )
        sent = []

        def handler():
            n = len(sent)
            sent.append(f"handler {n}")
            writer.write(f"handler {n}\\n")
            if n % 2 == 0:
                writer.reopen()

        reached = set()

        def atLine(frame, what, arg):
            if what == "line":
                where = (frame.f_code.co_filename, frame.f_lineno)
                reached.add(where)
                if where == at and len(sent) < 4:
                    handler()
            return atLine

        def onCall(frame, what, arg):
            return atLine if frame.f_code.co_filename in files else None

        main = []
        sys.settrace(onCall)
        try:
            for n in range(20):
                main.append(f"main {n}")
                writer.write(f"main {n}\\n")
                if n % 5 == 0:
                    writer.writeReport(f"report {n}\\n")
                if n == 7:
                    writer.reopen()
                if n == 12:
                    writer.rotate()
        finally:
            sys.settrace(None)
        writer.close()
        lines = []
        for name in glob.glob(path + "*"):
            with open(name) as f:
                lines += f.read().splitlines()
        wrong = [line for line in main + sent if lines.count(line) != 1]
        return reached, wrong, writer.lostLater


    reached, wrong, _ = scenario(None)
    assert not wrong, wrong
    failures = []
    for at in sorted(reached):
        _, wrong, lost = scenario(at)
        if wrong or lost:
            failures.append([os.path.basename(at[0]), at[1], wrong, lost])
    faulthandler.cancel_dump_traceback_later()
    print(json.dumps({"lines": len(reached), "failures": failures}))
    """
)


def test_theFileWriterInterruptedAtAnyLine(tmp_path: Path) -> None:
    """
    A signal handler (or a finalizer) runs on a thread in the middle of the
    log file writer's own work: a write, a report, a reopening, a
    rotation. One that writes a line and reopens the file (as a SIGUSR1
    handler for logrotate does) must not wait for the writer's lock its
    own thread holds (with a plain lock the process hung for good), nor
    change the file under the work in progress: each line is written
    exactly once. Interrupted at each line of the writer's code in turn, in
    a child process (a hang ends it, with the stacks).
    """
    found = childResult(WRITER_SWEEP, str(tmp_path))
    assert found["lines"] > 100
    assert found["failures"] == []


FORK_WHILE_HELD = textwrap.dedent(
    """
    import json, os, signal, threading
    from twisted_safelog import Reporter, SafeObserver

    def line(text):
        return {"log_format": "{text}", "text": text, "log_time": 0.0}

    seen = []
    entered, release = threading.Event(), threading.Event()

    def sink(event):
        if event["text"] == "interrupted":
            # The handler logs; then the delivery waits for the fork.
            os.kill(os.getpid(), signal.SIGUSR2)
            entered.set()
            assert release.wait(30)
        seen.append(event["text"])

    observer = SafeObserver(sink, reporter=Reporter(write=lambda line: None))
    signal.signal(signal.SIGUSR2, lambda signum, frame: observer(line("handler")))
    result = {}

    def forker():
        assert entered.wait(30)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            observer(line("child"))
            stats = observer.stats()
            os.write(w, json.dumps([seen, stats.balanced]).encode())
            os._exit(0)
        os.close(w)
        result["child"] = json.loads(os.read(r, 65536))
        os.waitpid(pid, 0)
        release.set()

    thread = threading.Thread(target=forker)
    thread.start()
    observer(line("interrupted"))
    thread.join(30)
    result["parent"] = seen
    print(json.dumps(result))
    """
)


def test_aForkFromAnotherThreadLeavesTheHeldLineToTheParent() -> None:
    """
    The main thread is inside a delivery, holding a signal handler's line
    for after it, when another thread forks: in the child that delivery
    (and its thread) is gone, and the held line is the parent's to deliver,
    not the child's too.
    """
    found = childResult(FORK_WHILE_HELD)
    assert found["parent"] == ["interrupted", "handler"]
    assert found["child"] == [["child"], True]

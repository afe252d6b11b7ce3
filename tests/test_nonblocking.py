"""
Tests for L{twisted_safelog.NonBlockingObserver}.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import (
    ILogObserver,
    LogEvent,
    Logger,
    LoggingFile,
    LogLevel,
    LogPublisher,
    STDLibLogObserver,
)
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_safelog import (
    NonBlockingObserver,
    SafeObserver,
    SinkStats,
    _nbshutdown,
    _nonblocking,
    _worker,
)
from twisted_safelog._worker import Channel
from twisted_safelog.testing import FlakyObserver, RecordingObserver

from .helpers import (
    BrokenHandler,
    RecordingReporter,
    atEachLine,
    event,
    interruptedAt,
    waitFor,
)


@implementer(ILogObserver)
class GateObserver(RecordingObserver):
    """
    Blocks on every event until the gate opens; says when it is blocked.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, e: dict[str, object]) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        super().__call__(e)


def blocked(
    queue: deque[Any] | None = None, **kw: object
) -> tuple[NonBlockingObserver, GateObserver, RecordingReporter]:
    """
    A NonBlockingObserver whose worker is stuck inside event 0 (its queue
    C{queue}, if given: the worker takes it as it starts).
    """
    sink = GateObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter, **kw)  # type: ignore[arg-type]
    if queue is not None:
        observer._channel.queue = queue
    observer(event(0))
    assert sink.entered.wait(10)
    return observer, sink, reporter


def delivered(sink: RecordingObserver) -> list[object]:
    return [e["n"] for e in sink.events]


def test_providesILogObserver() -> None:
    assert verifyObject(ILogObserver, NonBlockingObserver(RecordingObserver()))


def test_deliversInOrderFromAWorkerThread() -> None:
    threads: set[str] = set()
    sink = RecordingObserver()

    def record(e: dict[str, object]) -> None:
        threads.add(threading.current_thread().name)
        sink(e)

    observer = NonBlockingObserver(record, reporter=RecordingReporter())
    for n in range(200):
        observer(event(n))
    assert observer.flush(10)
    assert delivered(sink) == list(range(200))
    assert threads == {f"twisted-safelog worker: {observer.name}"}
    stats = observer.stats()
    assert (stats.received, stats.delivered, stats.buffered) == (200, 200, 0)
    observer.stop()


def test_theCallerDoesNotWaitForASlowSink() -> None:
    observer, sink, _ = blocked(maxQueue=100)
    for n in range(1, 51):
        observer(event(n))  # returns although the sink is stuck
    assert observer.stats().buffered == 51
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == list(range(51))


def test_theWorkerTakesQueuedEventsWithoutTheLock() -> None:
    """
    While the queue holds events the worker takes them without the queue's
    lock (it takes the lock only once the queue is empty): a thread holding
    the lock, as a caller of the block policy or a flush does, does not hold
    up the delivery of what is queued.
    """
    observer, sink, _ = blocked(maxQueue=100)
    for n in range(1, 6):
        observer(event(n))
    with observer._channel.lock:
        sink.gate.set()
        assert waitFor(lambda: delivered(sink) == list(range(6)), timeout=30)
    assert observer.flush(10)
    assert observer.stats().balanced


def test_dropNewest() -> None:
    observer, sink, reporter = blocked(maxQueue=5, policy="drop-newest")
    for n in range(1, 11):
        observer(event(n))
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == [0, 1, 2, 3, 4, 5]
    stats = observer.stats()
    assert stats.droppedByReason["overflow"] == 5
    assert stats.received == stats.delivered + stats.dropped == 11
    assert sum(count for _, reason, count in reporter.drops if reason == "overflow") == 5


def test_dropOldest() -> None:
    observer, sink, _ = blocked(maxQueue=5, policy="drop-oldest")
    for n in range(1, 11):
        observer(event(n))
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == [0, 6, 7, 8, 9, 10]
    assert observer.stats().droppedByReason["overflow"] == 5
    assert observer.stats().balanced


def test_blockWaitsThenDrops() -> None:
    observer, sink, _ = blocked(maxQueue=5, policy="block", blockTimeout=0.01)
    for n in range(1, 8):
        observer(event(n))
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == [0, 1, 2, 3, 4, 5]
    assert observer.stats().droppedByReason["overflow"] == 2


def test_aFlushThatGivesUpWakesCallersWaitingForRoom() -> None:
    """
    A flush that gives up on a stuck sink empties the queue (counted
    "shutdown"): a caller the block policy holds for room gets it then, not
    at the end of its blockTimeout.
    """
    observer, sink, _ = blocked(maxQueue=2, policy="block", blockTimeout=60)
    observer(event(1))
    observer(event(2))
    caller = threading.Thread(target=observer, args=(event(3),))
    caller.start()
    assert waitFor(lambda: observer._channel.roomWaiters == 1)
    assert not observer.flush(0.1)
    caller.join(20)
    assert not caller.is_alive()
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == [0, 3]
    stats = observer.stats()
    assert (stats.received, stats.delivered, stats.droppedByReason["shutdown"]) == (4, 2, 2)
    observer.stop()


def test_blockGetsRoomWhenTheSinkCatchesUp() -> None:
    observer, sink, _ = blocked(maxQueue=2, policy="block", blockTimeout=10)
    observer(event(1))
    observer(event(2))
    threading.Timer(0.05, sink.gate.set).start()
    observer(event(3))  # waits for room rather than dropping
    assert observer.flush(10)
    assert delivered(sink) == [0, 1, 2, 3]
    assert observer.stats().dropped == 0


def test_lowLevelsAreDiscardedFirstWhenNearlyFull() -> None:
    observer, sink, _ = blocked(maxQueue=10, discardThreshold=0.3)
    for n in range(1, 9):
        level = LogLevel.warn if n % 2 else LogLevel.info
        observer(event(n, log_level=level))
    sink.gate.set()
    assert observer.flush(10)
    # Below 3 queued everything goes in; from then on only warnings.
    assert delivered(sink) == [0, 1, 2, 3, 5, 7]
    assert observer.stats().droppedByReason["discarded"] == 3


def test_eventsAreShallowCopiedWhenQueued() -> None:
    observer, sink, _ = blocked()
    shared = event(1, tags=["a"])
    observer(shared)
    shared["n"] = 99
    shared["tags"].append("b")
    sink.gate.set()
    assert observer.flush(10)
    assert delivered(sink) == [0, 1]
    assert sink.events[1]["tags"] == ["a", "b"], "values are shared, not copied"


def test_shutdownWithEventsStillQueuedCountsAndReportsThem() -> None:
    observer, sink, reporter = blocked()
    for n in range(1, 6):
        observer(event(n))
    assert observer.flush(0.05) is False
    stats = observer.stats()
    assert stats.droppedByReason["shutdown"] == 5
    assert "5 queued events could not be delivered within 0.05s" in reporter.notes[0]
    sink.gate.set()
    observer.stop(10)
    assert observer.stats().balanced
    assert observer.stats().delivered == 1


def test_workerStartsAgainAfterItStopped() -> None:
    sink = RecordingObserver()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter())
    observer(event(0))
    assert observer.stop(10)
    observer(event(1))
    assert observer.flush(10)
    assert delivered(sink) == [0, 1]


def test_raisingSinkDoesNotKillTheWorker() -> None:
    sink = FlakyObserver([True, True])
    observer = NonBlockingObserver(sink, reporter=RecordingReporter())
    for n in range(5):
        observer(event(n))
    assert observer.flush(10)
    assert delivered(sink) == [2, 3, 4]
    assert isinstance(observer.observer, SafeObserver)
    assert observer.observer.stats().failed == 2


def test_quarantinedSinkIsRetriedInTheBackground() -> None:
    sink = FlakyObserver([True])
    inner = SafeObserver(sink, failureThreshold=1, resetTimeout=0.05, reporter=RecordingReporter())
    observer = NonBlockingObserver(inner, reporter=RecordingReporter())
    observer(event(0))
    observer(event(1))
    deadline = time.monotonic() + 10
    while delivered(sink) != [1] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert delivered(sink) == [1], "replayed without another event arriving"


def test_workerSurvivesAFork(tmp_path: Path) -> None:
    """
    twistd builds its observer, then daemonizes: the worker thread does not
    survive the fork, and must start again in the child.
    """
    out = tmp_path / "child.log"
    script = textwrap.dedent(
        f"""
        import os, sys
        from twisted.logger import textFileLogObserver
        from twisted_safelog import NonBlockingObserver
        f = open({str(out)!r}, "a")
        observer = NonBlockingObserver(textFileLogObserver(f))
        def ev(n):
            return {{"log_format": "event {{n}}", "n": n, "log_time": 0.0,
                     "log_namespace": "fork"}}
        observer(ev(0))
        observer.flush(5)
        pid = os.fork()
        if pid == 0:
            observer(ev(1))
            ok = observer.flush(5)
            f.flush()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "event 0" in out.read_text() and "event 1" in out.read_text()


def test_flushedAtReactorShutdown(tmp_path: Path) -> None:
    out = tmp_path / "flushed.log"
    script = textwrap.dedent(
        f"""
        import time
        from twisted.internet import reactor
        from twisted.logger import textFileLogObserver
        from twisted_safelog import NonBlockingObserver
        f = open({str(out)!r}, "a")
        sink = textFileLogObserver(f)
        def slow(event):
            time.sleep(0.005)
            sink(event)
        observer = NonBlockingObserver(slow)
        def logSome():
            for n in range(100):
                observer({{"log_format": "event {{n}}", "n": n, "log_time": 0.0,
                          "log_namespace": "shutdown"}})
            reactor.stop()
        reactor.callWhenRunning(logSome)
        reactor.run()
        f.flush()
        print(observer.stats().delivered)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["100"]
    assert out.read_text().count("event ") == 100


def test_echoFromTheWorkerDoesNotLoop(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A failing stdlib handler behind a NonBlockingObserver, under stdio
    redirection: the handler's traceback, written to sys.stderr from the
    worker thread, is not queued again, and it tells the hardened bridge it
    is failing, so the bridge is quarantined.
    """
    publisher = LogPublisher()
    witness = RecordingObserver()
    stdlibLogger = logging.getLogger("nonblocking.echo")
    stdlibLogger.propagate = False
    broken = BrokenHandler(lambda: OSError(5, "Input/output error"))
    stdlibLogger.addHandler(broken)
    bridge = SafeObserver(
        STDLibLogObserver("nonblocking.echo"), failureThreshold=3, reporter=RecordingReporter()
    )
    observer = NonBlockingObserver(bridge, reporter=RecordingReporter())
    publisher.addObserver(observer)
    publisher.addObserver(witness)
    monkeypatch.setattr(
        sys, "stderr", LoggingFile(Logger(namespace="stderr", observer=publisher), LogLevel.error)
    )
    try:
        log = Logger(namespace="app", observer=publisher)
        for n in range(50):
            log.warn("event {n}", n=n)
        assert observer.flush(10)
    finally:
        monkeypatch.undo()
        stdlibLogger.handlers[:] = []
    assert broken.calls == 3
    assert bridge.stats().failed == 3
    assert bridge.stats().state == "open"
    stats = observer.stats()
    assert stats.droppedByReason["reentry"] > 0
    assert stats.balanced
    assert [e["n"] for e in witness.events if "n" in e] == list(range(50))


def test_badSettingsAreClear() -> None:
    with pytest.raises(ValueError, match="policy must be one of drop-newest, drop-oldest, block"):
        NonBlockingObserver(RecordingObserver(), policy="random")
    with pytest.raises(ValueError, match="maxQueue must be >= 1"):
        NonBlockingObserver(RecordingObserver(), maxQueue=0)
    with pytest.raises(ValueError, match="discardThreshold"):
        NonBlockingObserver(RecordingObserver(), discardThreshold=2)


def workers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("twisted-safelog worker")]


def test_noThreadBeforeTheFirstEvent() -> None:
    before = workers()
    observer = NonBlockingObserver(RecordingObserver())
    assert workers() == before
    observer(event(0))
    assert workers() == [*before, f"twisted-safelog worker: {observer.name}"]
    observer.close(10)
    assert workers() == before


def test_notStartedDeliversOnTheCallersThreadUntilStart() -> None:
    """
    C{start=False} (the twistd factory, before twistd daemonizes): no
    thread; events are delivered synchronously until L{start}.
    """
    sink = RecordingObserver()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter(), start=False)
    before = workers()
    observer(event(0))
    assert delivered(sink) == [0], "delivered before the call returned"
    assert workers() == before
    observer.start()
    assert len(workers()) == len(before) + 1
    observer(event(1))
    assert observer.flush(10)
    assert delivered(sink) == [0, 1]
    assert observer.stats().balanced
    observer.close(10)


def test_afterShutdownEventsAreDeliveredBeforeTheCallReturns() -> None:
    sink = RecordingObserver()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter())
    observer(event(0))
    assert observer.shutdown(10)
    observer(event(1))
    # Written before the call returned (by the worker; the caller waited
    # for it, with a deadline).
    assert delivered(sink) == [0, 1]
    assert observer.stats().balanced


@pytest.mark.parametrize(
    "thing", [None, "a string", b"bytes", ["a", "list"], [("log_format", "pairs")], 42, ""]
)
def test_nonDictEventsNeverRaiseAndKeepTheAccountingBalanced(thing: object) -> None:
    sink = RecordingObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter)
    try:
        observer(thing)  # type: ignore[arg-type]
        observer({"log_format": "fine", "n": 1})
        assert observer.flush(10)
    finally:
        observer.stop(10)
    stats = observer.stats()
    assert (stats.received, stats.delivered, stats.failed) == (2, 1, 1)
    assert stats.balanced
    assert [e.get("n") for e in sink.events] == [1]
    assert "not a log event" in reporter.failures[0][2]


class _UncopyableMapping(Mapping[str, object]):
    """
    A mapping that cannot be iterated, so it cannot be copied for the queue.
    """

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("broken __getitem__")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("broken __iter__")

    def __len__(self) -> int:
        raise RuntimeError("broken __len__")


class _UncopyableDict(dict):  # type: ignore[type-arg]
    """
    A dict subclass whose C{__iter__} and C{keys} raise: C{dict(event)}
    fails.
    """

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("broken __iter__")

    def keys(self) -> Any:
        raise RuntimeError("broken keys")


@pytest.mark.parametrize("make", [_UncopyableMapping, _UncopyableDict])
def test_eventsThatCannotBeCopiedNeverRaiseAndAreCountedFailed(make: Any) -> None:
    """
    The queue holds a copy of each event; an event whose copy raises is
    counted failed and reported, never raised into the caller, and the
    queue (and its lock) keeps working.
    """
    sink = RecordingObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter)
    try:
        observer({"log_format": "first", "n": 0})
        observer(make())
        observer({"log_format": "fine", "n": 1})
        assert observer.flush(10)
    finally:
        observer.stop(10)
    stats = observer.stats()
    assert (stats.received, stats.delivered, stats.failed) == (3, 2, 1)
    assert stats.balanced
    assert [e.get("n") for e in sink.events] == [0, 1]
    assert "cannot be copied" in reporter.failures[0][2]


@pytest.mark.parametrize("make", [_UncopyableMapping, _UncopyableDict])
def test_eventsThatCannotBeCopiedAfterShutdownNeverRaise(make: Any) -> None:
    """
    After shutdown each event is copied and handed to the worker: one whose
    copy raises is counted failed and reported, never raised into the caller
    (twistd's last lines, logged after the reactor's shutdown flush, and
    the ones after it, still go through).
    """
    sink = RecordingObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter)
    observer({"log_format": "first", "n": 0})
    assert observer.shutdown(10)
    observer(make())
    observer({"log_format": "fine", "n": 1})
    stats = observer.stats()
    observer.close()
    assert (stats.received, stats.delivered, stats.failed) == (3, 2, 1)
    assert stats.balanced
    assert [e.get("n") for e in sink.events] == [0, 1]
    assert "cannot be copied" in reporter.failures[0][2]


def _switches(thread: threading.Thread) -> int:
    """
    How many times C{thread} gave up the CPU of its own accord (to sleep,
    or to wait for the GIL or a lock), from Linux's C{/proc}.
    """
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def test_aSteadyStreamDoesNotWakeTheWorkerForEachEvent() -> None:
    """
    Under a steady stream (faster than C{BATCH_RATE}) the worker takes
    what came in while it waited (at most C{BATCH_WAIT}) instead of being
    woken for every event: each wake-up is a context switch and a GIL
    hand-over the caller pays for. (A machine loaded enough to stretch the
    caller's short sleeps past C{1 / BATCH_RATE} makes the stream a trickle,
    which is woken for each event by design: up to three streams are tried.)
    """
    sink = RecordingObserver()
    observer = NonBlockingObserver(sink)
    observer(event(-1))
    assert waitFor(lambda: len(sink.events) == 1, 10)
    worker = observer._channel.worker
    assert worker is not None and worker.native_id is not None
    count = 2_000
    tried = []
    sent = 1
    for _ in range(3):
        before = _switches(worker)
        began = time.monotonic()
        for n in range(count):
            observer(event(n))
            # A caller that sleeps between events, as a server between
            # requests: without the wait for more, each event wakes the
            # worker.
            time.sleep(0.0002)
        rate = count / (time.monotonic() - began)
        sent += count
        assert waitFor(lambda sent=sent: len(sink.events) == sent, 30)
        switches = _switches(worker) - before
        tried.append(f"{switches} context switches for {count} events at {rate:.0f}/s")
        if switches < count / 4:
            break
    observer.close()
    assert switches < count / 4, "; ".join(tried)


class _SlowToCopy(Mapping[str, Any]):
    """
    An event mapping whose items take a while to read: copying it runs
    Python code, during which other threads run.
    """

    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        time.sleep(0.01)
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _atOnce(
    observer: NonBlockingObserver, sink: GateObserver, events: list[Any]
) -> tuple[int, SinkStats, SinkStats]:
    """
    Log each of C{events} from a thread of its own, all at once, into
    C{observer}, whose worker is stuck in C{sink}; then let the worker go
    and flush. Returns how many were queued while it was stuck, and the
    stats then and after the flush.
    """
    assert _callers(observer, events) == []
    queued = deque.__len__(observer._channel.queue)
    stats = observer.stats()
    sink.gate.set()
    assert observer.flush(30)
    after = observer.stats()
    observer.close()
    return queued, stats, after


def test_threadsLoggingAtOnceNeverQueueMoreThanMaxQueue() -> None:
    """
    Sixteen threads log at once into an observer whose worker is stuck on
    the first event, with C{maxQueue=4}: each caller found the queue under
    the lock-free threshold, then copied its event (a mapping slow to
    copy) while the others did the same. The queue never holds more than
    C{maxQueue} (it held all 16), the rest is dropped as overflow, and the
    accounts balance.
    """
    observer, sink, _ = blocked(maxQueue=4)
    queued, stats, after = _atOnce(
        observer, sink, [_SlowToCopy(n=n, log_namespace="t") for n in range(16)]
    )
    assert queued <= 4
    assert stats.received == 17
    assert stats.droppedByReason["overflow"] == 16 - queued
    assert after.balanced
    assert len(sink.events) == 1 + queued


class _YieldingDeque(deque[Any]):
    """
    A queue whose length takes a while to read: a caller is preempted
    between its look at the queue and its append, as a thread switch there
    would do.
    """

    def __len__(self) -> int:
        length = super().__len__()
        time.sleep(0.005)
        return length


def test_callersPreemptedBetweenTheirLookAndTheirAppendNeverLeaveMoreThanMaxQueue() -> None:
    """
    Sixteen threads each look at the queue (under the lock-free threshold)
    and are preempted before they append: together they take it past
    C{maxQueue}, and the newest events beyond it are dropped at once as
    overflow (not discarded, with no discard threshold set, though the
    queue was briefly past C{maxQueue}); the accounts balance.
    """
    observer, sink, reporter = blocked(maxQueue=4, queue=_YieldingDeque())
    queued, stats, after = _atOnce(observer, sink, [event(n) for n in range(16)])
    assert queued <= 4
    assert stats.received == 17, stats
    assert stats.droppedByReason["overflow"] == 16 - queued, (stats, queued, after)
    assert sum(n for _, why, n in reporter.drops if why == "overflow") == 16 - queued
    assert after.balanced
    assert len(sink.events) == 1 + queued


class _HeldWhileCopied(Mapping[str, Any]):
    """
    An event mapping whose copy, once begun, waits until C{release} is
    set: the caller is then between its look at the worker and its append.
    """

    def __init__(self, **items: Any) -> None:
        self._items = items
        self.copying = threading.Event()
        self.release = threading.Event()

    def __getitem__(self, key: str) -> Any:
        self.copying.set()
        assert self.release.wait(30)
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@pytest.mark.parametrize("maxQueue", [10, 1])
def test_anEventLoggedWhileTheWorkerStopsIsDeliveredWithoutAnotherEvent(maxQueue: int) -> None:
    """
    Another thread logs while C{stop()} ends the worker: it found the worker
    running, and it appends (without the queue's lock; with C{maxQueue=1},
    under it) after the worker's last look at the queue. The event is
    delivered without waiting for another event to start the worker again
    (it stayed queued, with no worker, until the next one).
    """
    delivered: list[Any] = []
    observer = NonBlockingObserver(
        lambda e: delivered.append(e["n"]), maxQueue=maxQueue, reporter=RecordingReporter()
    )
    observer(event(-1))
    assert waitFor(lambda: delivered == [-1], 10)
    late = _HeldWhileCopied(n=0, log_namespace="t")
    caller = threading.Thread(target=observer, args=(late,))
    caller.start()
    try:
        assert late.copying.wait(10)
        observer.stop(10)
        assert not observer._channel.alive
    finally:
        late.release.set()
        caller.join(30)
    assert not caller.is_alive()
    assert waitFor(lambda: 0 in delivered, 10), (delivered, len(observer._channel.queue))
    observer.close()
    assert observer.stats().balanced


class _SwitchWhenCounted(deque):  # type: ignore[type-arg]
    """
    The observer's queue, where a flush that gives up counts what is left
    first lets another thread run to the end (as a thread switch right
    after that count would): C{run} is called once, there.
    """

    run: Any = None

    def __len__(self) -> int:
        length = super().__len__()
        self._switch(sys._getframe(1).f_code.co_name)
        return length

    def __bool__(self) -> bool:
        # Python 3.10 tests a deque subclass's truth without its __len__.
        full = super().__len__() > 0
        self._switch(sys._getframe(1).f_code.co_name)
        return full

    def popleft(self) -> Any:
        # Or as it takes them out, one by one, to count them.
        self._switch(sys._getframe(1).f_code.co_name)
        return super().popleft()

    def _switch(self, caller: str) -> None:
        run = self.run
        if run is not None and caller == "waitDelivered":
            self.run = None
            thread = threading.Thread(target=run)
            thread.start()
            thread.join(30)


def test_anEventQueuedAsAFlushGivesUpIsCountedNotLost() -> None:
    """
    A flush that gives up (its sink stuck) counts what is left as dropped
    and empties the queue, while another thread logs (without the queue's
    lock): an event that thread queues after the count is either counted
    with the others or stays queued and is delivered, never emptied away
    uncounted (it was: received one more than every outcome together).
    """
    queue = _SwitchWhenCounted()
    observer, sink, _ = blocked(stallTimeout=0, queue=queue)
    for n in range(3):
        observer(event(n))
    queue.run = lambda: observer(event(99))
    assert not observer.flush(0.05)
    assert queue.run is None, "the other thread ran as the flush counted"
    sink.gate.set()
    assert observer.flush(10)
    stats = observer.stats()
    observer.close()
    assert stats.received == 5
    assert stats.balanced, stats
    assert stats.delivered + stats.droppedByReason["shutdown"] == 5


def flushInterrupted(at: tuple[str, int] | None) -> set[tuple[str, int]]:
    """
    Five events, then a flush whose code (the observer's, the worker
    channel's) is interrupted at line C{at} by a signal handler that logs
    into the same observer (twice at most: a signal, not every pass of a
    loop): check that the flush said everything was delivered, and that
    every event was, none dropped; return the lines reached.
    """
    sink = RecordingObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(SafeObserver(sink, reporter=reporter), reporter=reporter)
    sent = [event(n) for n in range(5)]
    for each in sent:
        observer(each)
    handled: list[LogEvent] = []

    def handler() -> None:
        if len(handled) < 2:
            handled.append(event(100 + len(handled)))
            observer(handled[-1])

    with interruptedAt([_nbshutdown, _nonblocking, _worker], handler, at) as reached:
        flushed = observer.flush(30)
    assert observer.flush(30)
    stats = observer.stats()
    observer.close()
    assert flushed, (at, stats)
    assert stats.dropped == 0, (at, stats)
    assert [e["n"] for e in sink.events] == [e["n"] for e in sent + handled], at
    assert stats.received == stats.delivered == len(sent + handled), (at, stats)
    return reached


def test_aSignalHandlerThatLogsDuringAFlushIsDeliveredNotDropped() -> None:
    """
    A signal handler that logs (twistd's "Received SIGTERM") runs on the
    main thread between two bytecodes of what it was doing, which may be a
    flush, after it has seen the queue delivered: its event is queued while
    the worker runs, and is delivered, not taken back out and dropped as
    not delivered in time ("shutdown", with a report saying so, and the
    flush saying it failed: it did, at each line from the last look at the
    queue on). Interrupted at each line of the flush's code in turn.
    """
    atEachLine(flushInterrupted, 10)


class _ClearedBetweenReads(Channel):
    """
    A channel whose L{Channel.busySince} is read as the worker writes it,
    without the lock, between two reads of the same check: each read gives
    the next of C{values}; once they are used up the queue is delivered
    (emptied) and it reads 0.
    """

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.reads = 0
        super().__init__()

    @property  # type: ignore[override]
    def busySince(self) -> float:
        self.reads += 1
        if self.values:
            return self.values.pop(0)
        self.queue.clear()
        return 0.0

    @busySince.setter
    def busySince(self, value: float) -> None:
        pass


def test_stalledForIsNeverTheTimeSinceBoot() -> None:
    """
    C{stalledFor} is how long the delivery in progress has not returned,
    even when the worker ends that delivery (and clears its mark, without
    the lock) while L{NonBlockingObserver.stats} looks: never
    C{time.monotonic()} itself (the system's uptime).
    """
    observer = NonBlockingObserver(RecordingObserver(), stallTimeout=1.0, start=False)
    stalled = time.monotonic() - 5.0
    observer._channel = _ClearedBetweenReads([stalled, 0.0, 0.0])
    assert 5.0 <= observer.stats().stalledFor < 60
    assert observer.stats().stalledFor == 0


def test_aFlushWaitsWhileSlowDeliveriesFollowEachOther() -> None:
    """
    A flush gives up on a delivery that stays stalled, not on slow
    deliveries that follow each other: one that ends (its mark cleared
    without the lock) as the flush looks, then the next, are two
    deliveries, and the flush waits until the queue is delivered.
    """
    channel = _ClearedBetweenReads([])
    channel.alive = True
    channel.queue.extend([{"n": 1}, {"n": 2}])
    now = time.monotonic()
    # The first delivery, stalled, ends as the flush looks; the next one,
    # stalled too, ends as the flush looks again.
    channel.values = [now - 2.0, 0.0, 0.0, now - 1.0, 0.0, 0.0]
    left, inFlight = channel.waitDelivered(now + 30.0, 0.5)
    assert (left, inFlight) == (0, 0)
    assert not channel.values


# -- the worker takes queued events without the lock ----------------------------


class _TakenAfterTheLook(deque):  # type: ignore[type-arg]
    """
    The observer's queue, where a thread holding the queue's lock looks at
    it (its length, its truth, its items) from the function named
    C{where}, or takes from it there, and is switched out right then (as a
    thread switch there would do): C{letRun()} lets the worker go, and the
    worker, which takes queued events without the lock, runs until it has
    taken them all. Once.

    Calls from C{__call__} meet at C{barrier}, if set, before and after
    they read the length: callers that all look at once, before any of them
    appends.
    """

    where = ""
    letRun: Any = None
    switched = False
    barrier: threading.Barrier | None = None

    def __len__(self) -> int:
        caller = sys._getframe(1).f_code.co_name
        if self.barrier is not None and caller == "__call__":
            self.barrier.wait()
            length = super().__len__()
            self.barrier.wait()
            return length
        length = super().__len__()
        self._switch(caller)
        return length

    def __bool__(self) -> bool:
        # Python 3.10 tests a deque subclass's truth without its __len__.
        full = super().__len__() > 0
        self._switch(sys._getframe(1).f_code.co_name)
        return full

    def __iter__(self) -> Iterator[Any]:
        items = super().__iter__()
        self._switch(sys._getframe(1).f_code.co_name)
        return items

    def popleft(self) -> Any:
        self._switch(sys._getframe(1).f_code.co_name)
        return super().popleft()

    def pop(self) -> Any:
        self._switch(sys._getframe(1).f_code.co_name)
        return super().pop()

    def remove(self, value: Any) -> None:
        self._switch(sys._getframe(1).f_code.co_name)
        super().remove(value)

    def _switch(self, caller: str) -> None:
        if self.switched or caller != self.where:
            return
        self.switched = True
        self.letRun()
        assert waitFor(lambda: deque.__len__(self) == 0, 30), "the worker took nothing"


def _callers(observer: NonBlockingObserver, events: list[Any]) -> list[BaseException]:
    """
    Log each of C{events} into C{observer} from a thread of its own, all at
    once; return what the calls raised.
    """
    raised: list[BaseException] = []

    def log(e: Any) -> None:
        try:
            observer(e)
        except BaseException as error:
            raised.append(error)

    callers = [threading.Thread(target=log, args=(e,)) for e in events]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(60)
    assert not any(caller.is_alive() for caller in callers)
    return raised


def test_dropOldestWhileTheWorkerTakesEverythingNeverRaises() -> None:
    """
    With C{policy="drop-oldest"}, a caller finds the queue full, and before
    it drops the oldest event the worker (which takes events without the
    lock the caller holds) takes every one: the call does not raise (it
    raised C{IndexError: pop from an empty deque}), nothing is dropped, the
    event is delivered, and the accounts balance.
    """
    queue = _TakenAfterTheLook()
    observer, sink, _ = blocked(maxQueue=2, policy="drop-oldest", queue=queue)
    observer(event(1))
    observer(event(2))
    queue.where, queue.letRun = "_enqueue", sink.gate.set
    observer(event(3))
    assert queue.switched
    assert observer.flush(10)
    stats = observer.stats()
    observer.close()
    assert delivered(sink) == [0, 1, 2, 3]
    assert stats.dropped == 0, stats
    assert stats.balanced, stats


def test_aTrimWhileTheWorkerTakesEverythingNeverRaises() -> None:
    """
    Three threads find the queue under the lock-free threshold at once and
    all append, past C{maxQueue}; the one that trims it first finds it past
    C{maxQueue} and, before it drops the newest, the worker (which takes
    events without the lock) takes every one. No call raises (one raised
    C{IndexError: pop from an empty deque}, and the accounts no longer
    balanced), every event is delivered, none dropped.
    """
    queue = _TakenAfterTheLook()
    observer, sink, _ = blocked(maxQueue=2, queue=queue)
    queue.barrier = threading.Barrier(3, timeout=30)
    queue.where, queue.letRun = "_trim", sink.gate.set
    raised = _callers(observer, [event(n) for n in (1, 2, 3)])
    assert raised == []
    assert queue.switched
    assert observer.flush(10)
    stats = observer.stats()
    observer.close()
    assert sorted(delivered(sink)) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert stats.dropped == 0, stats
    assert stats.balanced, stats


def test_aFlushThatGivesUpWhileTheWorkerTakesTheRestNeverRaises() -> None:
    """
    A flush gives up (its deadline passed) and takes what is left out of
    the queue, to count it; meanwhile the worker (which takes events
    without the lock the flush holds) takes the rest. The flush does not
    raise (it raised C{IndexError: pop from an empty deque} into C{flush},
    C{stop}, C{close} and C{shutdown}), and every event is delivered or
    counted once.
    """
    queue = _TakenAfterTheLook()
    observer, sink, _ = blocked(stallTimeout=0, queue=queue)
    for n in (1, 2):
        observer(event(n))
    queue.where, queue.letRun = "waitDelivered", sink.gate.set
    observer.flush(0.05)
    assert queue.switched
    assert observer.flush(10)
    stats = observer.stats()
    observer.close()
    assert stats.received == 3
    assert len(sink.events) + stats.droppedByReason["shutdown"] == 3, stats
    assert stats.balanced, stats


def test_anEventHandedOffAfterShutdownIsTakenBackWithoutRacingTheWorker() -> None:
    """
    After shutdown each caller waits (up to C{flushTimeout}) until its event
    is written, then takes it back out of the queue if the worker has not
    taken it. Two callers wait behind a slow delivery; as the first gives up
    and looks for its event in the queue, the worker (which takes events
    without the lock) takes the other one. Neither call raises (one raised
    C{RuntimeError: deque mutated during iteration}), both events are
    delivered, and the accounts balance.
    """
    queue = _TakenAfterTheLook()
    sink = GateObserver()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter(), flushTimeout=3)
    observer._channel.queue = queue
    assert observer.shutdown(10)
    raised: list[BaseException] = []

    def log(n: int) -> None:
        try:
            observer(event(n))
        except BaseException as error:
            raised.append(error)

    first = threading.Thread(target=log, args=(1,))
    first.start()
    assert sink.entered.wait(10)
    second = threading.Thread(target=log, args=(2,))
    second.start()
    assert waitFor(lambda: deque.__len__(queue) == 1, 10)
    queue.where, queue.letRun = "handOff", sink.gate.set
    first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert raised == []
    assert queue.switched
    assert observer.flush(10)
    stats = observer.stats()
    observer.close()
    assert delivered(sink) == [1, 2]
    assert stats.balanced, stats


def test_stopWhileAnotherThreadStartsTheWorkerNeverRaises(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A caller's first event starts the worker; C{stop()} on another thread
    comes between the worker's creation and its start, and finds a thread
    not started yet. It does not raise (it raised C{RuntimeError: cannot
    join thread before it is started}), and the caller's event is
    delivered.
    """
    sink = RecordingObserver()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter())
    start = threading.Thread.start
    stopped: list[object] = []

    def stop() -> None:
        try:
            stopped.append(observer.stop(10))
        except BaseException as error:
            stopped.append(error)

    def startAfterAStop(thread: threading.Thread) -> None:
        if thread.name.startswith("twisted-safelog worker") and not stopped:
            stopper = threading.Thread(target=stop)
            start(stopper)
            stopper.join(30)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", startAfterAStop)
    observer(event(0))
    monkeypatch.undo()
    assert stopped == [True]
    assert waitFor(lambda: delivered(sink) == [0], 10)
    observer.close()
    assert observer.stats().balanced


class _LetThrough(RecordingObserver):
    """
    A sink slow to deliver: each event waits until it is let through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)

    def __call__(self, e: dict[str, object]) -> None:
        assert self.permits.acquire(timeout=30)
        super().__call__(e)


def test_aSlowSinkIsNotDeclaredStuckWhenAShutdownFlushGivesUp() -> None:
    """
    At shutdown the flush gives up on a slow sink (as on a backlog written
    to a slow pipe), with a delivery in progress that began during the
    flush: the sink is slow, not stuck, so it is not reported as "its
    delivery has not returned", and the next events (twistd's last lines)
    are still written, not dropped.
    """
    queue = _TakenAfterTheLook()
    sink = _LetThrough()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter)
    observer._channel.queue = queue
    observer(event(0))
    observer(event(1))
    assert waitFor(lambda: deque.__len__(queue) == 1, 10)
    # The flush's first look at the queue lets the worker deliver event 0:
    # it then delivers event 1, slowly, until the flush has given up.
    queue.where, queue.letRun = "flush", sink.permits.release
    assert observer.shutdown(0.3) is False
    assert queue.switched
    assert not any("has not returned" in note for note in reporter.notes), reporter.notes
    sink.permits.release(2)
    observer(event(2))
    assert delivered(sink) == [0, 1, 2]
    stats = observer.stats()
    observer.close()
    assert stats.dropped == 0, stats
    assert stats.balanced, stats


def test_aSinkReplayingItsBufferAtShutdownIsNotDeclaredStuck() -> None:
    """
    At shutdown the worker is replaying a recovered sink's buffer, a replay
    that began before the flush and goes on, slowly: it is not a delivery
    that has not returned, so the sink is not reported as "its delivery has
    not returned", and the next events (twistd's last lines) are still
    written, not dropped.
    """
    gate = threading.Event()
    entered = threading.Event()
    seen: list[object] = []
    calls = [0]

    def sink(e: dict[str, object]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise OSError("down")
        entered.set()
        assert gate.wait(10)
        seen.append(e["n"])

    reporter = RecordingReporter()
    # Event 1 comes while the breaker is open: it is buffered, and the
    # worker replays it once the breaker lets a probe through.
    inner = SafeObserver(sink, failureThreshold=1, resetTimeout=2.0, reporter=reporter)
    observer = NonBlockingObserver(inner, reporter=reporter, flushTimeout=10)
    observer(event(0))
    assert waitFor(lambda: inner.stats().failed == 1, 10, interval=0.005)
    observer(event(1))
    assert entered.wait(10)
    assert observer._channel.busySince and not observer._channel.inFlight
    assert observer.shutdown(0.3)
    assert not any("has not returned" in note for note in reporter.notes), reporter.notes
    gate.set()
    observer(event(2))
    assert seen == [1, 2]
    stats = observer.stats()
    observer.close()
    assert stats.dropped == 0, stats
    assert stats.balanced, stats


def test_afterShutdownACallerThatFindsTheQueueFullWaitsForRoom() -> None:
    """
    After shutdown each caller hands its event to the worker and waits for
    it to be written. With a small C{maxQueue}, several threads logging at
    once fill the queue while the sink is slow: a caller that finds it full
    waits for room (up to C{flushTimeout}), as the others wait for their
    events. It was refused at once, the sink was reported as "its delivery
    has not returned" and every later event (twistd's last lines) dropped.
    """
    sink = GateObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter, maxQueue=1, flushTimeout=30)
    assert observer.shutdown(10)
    first = threading.Thread(target=observer, args=(event(1),))
    first.start()
    assert sink.entered.wait(10)
    second = threading.Thread(target=observer, args=(event(2),))
    second.start()
    assert waitFor(lambda: len(observer._channel.queue) == 1, 10)
    third = threading.Thread(target=observer, args=(event(3),))
    third.start()
    waiting = waitFor(lambda: observer._channel.roomWaiters == 1, 10)
    sink.gate.set()
    for caller in (first, second, third):
        caller.join(30)
        assert not caller.is_alive()
    assert waiting, "the third caller did not wait for room"
    observer(event(4))
    stats = observer.stats()
    observer.close()
    assert not any("has not returned" in note for note in reporter.notes), reporter.notes
    assert delivered(sink) == [1, 2, 3, 4]
    assert stats.dropped == 0, stats
    assert stats.balanced, stats

"""
The process's life: a real C{os.fork()} in the middle of a delivery (with
and without a queue), a sink stuck on an C{Event} that is never set, a full
pipe as file descriptor 2, a worker thread that cannot start, and descriptor
and thread counts from C{/proc/self} over many create-use-close cycles.

Forks and descriptor games run in a child interpreter, so that the test
process's own state is never at stake; each is bounded by a timeout.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from twisted_safelog import NonBlockingObserver, SafeObserver, isHealthy
from twisted_safelog._status import shownState
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter, event, fullPipe

PRELUDE = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from twisted_safelog import NonBlockingObserver, SafeObserver, Reporter
    from twisted_safelog.testing import RecordingObserver

    def ev(n):
        return {"log_format": "event {n}", "n": n, "log_time": 0.0,
                "log_namespace": "lifecycle"}

    class Gate:
        # A sink that blocks inside its delivery until the gate opens.
        def __init__(self):
            self.open = threading.Event()
            self.entered = threading.Event()
            self.seen = []
        def __call__(self, e):
            self.entered.set()
            assert self.open.wait(30)
            self.seen.append(e["n"])

    def inChild(body):
        # Run body() in a forked child; return its JSON result.
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                out = json.dumps(body()).encode()
            except BaseException as e:
                out = json.dumps({"error": repr(e)}).encode()
            os.write(w, out)
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
        return json.loads(b"".join(chunks))

    def logUnderSignals(observer, flush=False, seconds=2):
        # Log into observer as fast as possible for seconds while SIGALRM
        # fires every 2 ms into a handler that logs into it too (as twistd's
        # SIGTERM handler does); then (flushed, if asked) the counts: events
        # logged, signals handled, events received and accounted for.
        import signal
        handled = [0]
        def onSignal(signum, frame):
            handled[0] += 1
            observer({"log_format": "Received SIGTERM, shutting down.",
                      "log_time": 0.0, "log_namespace": "signal"})
        signal.signal(signal.SIGALRM, onSignal)
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        n = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            observer(ev(n))
            n += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
        if flush:
            observer.flush(20)
        s = observer.stats()
        return {"logged": n, "handled": handled[0], "received": s.received,
                "accounted": s.delivered + s.failed + s.dropped + s.buffered,
                "summaries": observer.repeats.summaries}
    """
)


def runScriptCapturing(
    body: str, timeout: float = 60, **popen: object
) -> tuple[dict[str, Any], str]:
    """
    Run C{PRELUDE + body} in a new interpreter, which must end well having
    printed one JSON line last: that line, read, and its standard error.
    """
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def runScript(body: str, timeout: float = 60, **popen: object) -> dict[str, object]:
    """
    Run C{PRELUDE + body} in a new interpreter; it prints one JSON line.
    """
    return runScriptCapturing(body, timeout, **popen)[0]


# -- fork -----------------------------------------------------------------------


def test_forkInTheMiddleOfASynchronousDelivery() -> None:
    """
    Another thread is inside the sink when the process forks. In the child
    that thread is gone: its delivery is counted as dropped (fork), a new
    thread (which may get the dead thread's identity) and the main thread
    deliver normally, nothing is dropped as reentry; the parent finishes
    its own delivery.
    """
    result = runScript(
        """
        reporter = Reporter(write=lambda text: None)
        sink = Gate()
        observer = SafeObserver(sink, reporter=reporter)
        stuck = threading.Thread(target=observer, args=(ev(0),))
        stuck.start()
        assert sink.entered.wait(10)

        def child():
            sink.open.set()   # the child's copy of the gate
            t = threading.Thread(target=observer, args=(ev(1),))
            t.start(); t.join(10)
            observer(ev(2))
            s = observer.stats()
            return {"seen": sink.seen, "byReason": dict(s.droppedByReason),
                    "balanced": s.balanced}

        inChildResult = inChild(child)
        sink.open.set()
        stuck.join(10)
        print(json.dumps({"child": inChildResult, "parent": sink.seen,
                          "parentStats": observer.stats().asDict()}))
        """
    )
    child = result["child"]
    assert child["seen"] == [1, 2], child  # type: ignore[index]
    assert child["byReason"]["fork"] == 1, child  # type: ignore[index]
    assert child["byReason"]["reentry"] == 0, child  # type: ignore[index]
    assert child["balanced"], child  # type: ignore[index]
    assert result["parent"] == [0]
    assert result["parentStats"]["delivered"] == 1  # type: ignore[index]


def test_forkInTheMiddleOfAQueuedDelivery() -> None:
    """
    The worker is inside the sink and five events wait in the queue when
    the process forks: the parent delivers all six, exactly once; the child
    counts them as dropped (fork) without a report (nothing is lost: the
    parent delivers them), and delivers its own events with a new worker.
    """
    result = runScript(
        """
        notes = []
        reporter = Reporter(write=notes.append)
        sink = Gate()
        observer = NonBlockingObserver(sink, reporter=reporter)
        observer(ev(0))
        assert sink.entered.wait(10)
        for n in range(1, 6):
            observer(ev(n))

        def child():
            sink.open.set()
            before = len(sink.seen)
            observer(ev(100))
            observer(ev(101))
            flushed = observer.flush(10)
            s = observer.stats()
            return {"seen": sink.seen[before:], "flushed": flushed,
                    "byReason": dict(s.droppedByReason), "balanced": s.balanced,
                    "notes": [n for n in notes if "forked" in n]}

        inChildResult = inChild(child)
        sink.open.set()
        assert observer.flush(10)
        print(json.dumps({"child": inChildResult, "parent": sink.seen}))
        """
    )
    child = result["child"]
    assert result["parent"] == [0, 1, 2, 3, 4, 5]
    assert child["seen"] == [100, 101], child  # type: ignore[index]
    assert child["flushed"]  # type: ignore[index]
    assert child["byReason"]["fork"] == 6, child  # type: ignore[index]
    assert child["byReason"]["reentry"] == 0, child  # type: ignore[index]
    assert child["balanced"]  # type: ignore[index]
    assert child["notes"] == [], child  # type: ignore[index]


def test_aForkJustAfterTheWorkerCountedItsEventLosesNothingTwice() -> None:
    """
    The worker marks an event in flight before it takes it off the queue,
    and clears the mark after counting it delivered, without the lock: a
    fork can come while the mark is set on an event the counters already
    count. The child's count of what the fork took (C{"fork"}) comes from
    what was received and not settled, so that event is not counted twice
    and the child's accounts balance.
    """
    result = runScript(
        """
        seen = []
        observer = NonBlockingObserver(lambda e: seen.append(e["n"]))
        for n in range(3):
            observer(ev(n))
        assert observer.flush(10)
        # The worker, frozen by the fork between counting event 2
        # delivered and clearing its mark.
        observer._channel.inFlight = 1

        def child():
            s = observer.stats()
            return {"byReason": dict(s.droppedByReason), "balanced": s.balanced,
                    "received": s.received, "delivered": s.delivered}

        inChildResult = inChild(child)
        observer._channel.inFlight = 0
        print(json.dumps({"child": inChildResult, "parent": seen}))
        """
    )
    child = result["child"]
    assert result["parent"] == [0, 1, 2]
    assert child["received"] == child["delivered"] == 3, child  # type: ignore[index]
    assert child["byReason"]["fork"] == 0, child  # type: ignore[index]
    assert child["balanced"], child  # type: ignore[index]


def test_forkWhileLocksAreHeldAndAProbeIsInFlight() -> None:
    """
    At the fork, other threads hold the file writer's lock (a write stuck
    in a sink), the reporter's lock, and a half-open breaker's probe. In the
    child none of them is held: it writes the file, reports, and probes.
    """
    result = runScript(
        """
        import tempfile
        from twisted.internet.task import Clock
        from twisted_safelog import CircuitBreaker, safeFileLogObserver
        from twisted_safelog._report import Reporter

        path = os.path.join(tempfile.mkdtemp(), "f.log")
        observer = safeFileLogObserver(path)
        writer = observer.writer
        reporter = Reporter(write=lambda text: None)
        clock = Clock()
        breaker = CircuitBreaker(failureThreshold=1, resetTimeout=1, clock=clock)
        breaker.failure()
        clock.advance(2)
        assert breaker.allow()           # the probe, never settled here
        release = threading.Event()
        held = threading.Event()

        def holdLocks():
            with writer._lock, reporter._lock:
                held.set()
                release.wait(30)

        t = threading.Thread(target=holdLocks)
        t.start()
        assert held.wait(10)

        def child():
            done = {}
            def work():
                observer(ev(7))
                reporter.note("from the child")
                done["probe"] = breaker.allow()
            w = threading.Thread(target=work)
            w.start(); w.join(10)
            return {"finished": not w.is_alive(), "probe": done.get("probe"),
                    "text": open(path).read()}

        inChildResult = inChild(child)
        release.set()
        t.join(10)
        print(json.dumps(inChildResult))
        """
    )
    assert result["finished"], result
    assert result["probe"] is True
    assert "event 7" in str(result["text"])


# -- deadlines --------------------------------------------------------------------


class StuckSink(RecordingObserver):
    """
    Blocks on an Event that is never set (an NFS write that never returns).
    """

    def __init__(self) -> None:
        super().__init__()
        self.never = threading.Event()
        self.entered = threading.Event()
        self.callers: list[str] = []

    def __call__(self, e: dict[str, object]) -> None:
        self.callers.append(threading.current_thread().name)
        self.entered.set()
        self.never.wait(30)
        super().__call__(e)


def test_afterShutdownEventsForAStuckSinkAreDroppedNotDelivered() -> None:
    sink = StuckSink()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter, stallTimeout=0.2)
    observer(event(0))
    assert sink.entered.wait(10)
    for n in range(1, 4):
        observer(event(n))
    began = time.monotonic()
    assert observer.shutdown(timeout=5) is False
    # The delivery had not returned for longer than stallTimeout: the flush
    # stops waiting for it long before its 5 s deadline.
    took = time.monotonic() - began
    began = time.monotonic()
    for n in range(4, 10):
        observer(event(n))  # twistd's "Server Shut Down." and friends
    after = time.monotonic() - began
    try:
        assert sink.callers == ["twisted-safelog worker: " + observer.name]
        stats = observer.stats()
        assert stats.droppedByReason["shutdown"] == 3 + 6
        assert stats.buffered == 1  # the one the sink never returns from
        assert stats.balanced
        assert any("has not returned" in note for note in reporter.notes)
        assert took < 4.0, took
        assert after < 1.0, after
    finally:
        sink.never.set()


def test_stalledDeliveryIsReportedOnceAndShownInStats() -> None:
    sink = StuckSink()
    reporter = RecordingReporter()
    observer = SafeObserver(sink, reporter=reporter, stallTimeout=0.2)
    caller = threading.Thread(target=observer, args=(event(0),), daemon=True)
    caller.start()
    assert sink.entered.wait(10)
    deadline = time.monotonic() + 20
    while observer.stats().stalledFor == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stalled = [n for n in reporter.notes if "stalled for" in n]
    assert observer.stats().stalledFor >= 0.2
    assert "stalled for" in observer.stats().summary()
    # status(), the status file and the metrics show it.
    assert shownState(observer.stats()) == "stalled"
    assert not isHealthy(observer.stats())
    time.sleep(0.3)  # several more watchdog samples: still one report
    assert len([n for n in reporter.notes if "stalled for" in n]) == 1, stalled
    sink.never.set()
    caller.join(10)
    deadline = time.monotonic() + 20
    while not any("resumed after" in n for n in reporter.notes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any("resumed after" in n for n in reporter.notes)
    assert observer.stats().stalledFor == 0
    assert shownState(observer.stats()) == "closed"
    assert isHealthy(observer.stats())


def test_nonBlockingStatsShowAStalledDelivery() -> None:
    sink = StuckSink()
    observer = NonBlockingObserver(sink, reporter=RecordingReporter(), stallTimeout=0.1)
    observer(event(0))
    assert sink.entered.wait(10)
    deadline = time.monotonic() + 20
    while observer.stats().stalledFor == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert observer.stats().stalledFor >= 0.1
        assert shownState(observer.stats()) == "stalled"
    finally:
        sink.never.set()
    assert observer.flush(10)
    assert observer.stats().stalledFor == 0


# -- reports and fd 2 -------------------------------------------------------------


def test_reportsNeverBlockOnAFullFd2AndSaySoWhenItDrains() -> None:
    """
    File descriptor 2 is a full pipe nobody reads: every log call through a
    failing sink makes a report, and none of them waits. When the pipe is
    read again, the next report says how many lines could not be written.
    """
    r, w = fullPipe()
    script = PRELUDE + textwrap.dedent(
        """
        from twisted_safelog.testing import RaisingObserver
        # Never quarantined: every event fails and is reported.
        observer = SafeObserver(RaisingObserver(), failureThreshold=10**9,
                                reporter=Reporter(interval=0))
        worst = 0.0
        for n in range(300):
            began = time.perf_counter()
            observer(ev(n))
            worst = max(worst, time.perf_counter() - began)
        from twisted_safelog._report import defaultReporter
        print(json.dumps({"worst": worst}), flush=True)
        sys.stdin.readline()          # the test drains fd 2
        observer(ev(1000))
        print(json.dumps({"done": True}), flush=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=w,
        text=True,
    )
    os.close(w)
    try:
        assert process.stdout is not None and process.stdin is not None
        first = json.loads(process.stdout.readline())
        fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:
            while os.read(r, 65536):
                pass
        except BlockingIOError:
            pass
        process.stdin.write("go\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"done": True}
        process.wait(30)
        text = b""
        try:
            while chunk := os.read(r, 65536):
                text += chunk
        except BlockingIOError:
            pass
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(r)
    print(f"\nslowest log call with fd 2 stalled: {first['worst'] * 1e3:.3f} ms")
    assert first["worst"] < 0.5, first
    assert b"report lines could not be written to file descriptor 2" in text, text[-500:]


# -- threads that cannot start ----------------------------------------------------


def test_aWorkerThatCannotStartNeverRaisesIntoTheCaller(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    sink = RecordingObserver()
    reporter = RecordingReporter()
    observer = NonBlockingObserver(sink, reporter=reporter)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    observer(event(0))  # does not raise
    observer(event(1))
    assert [e["n"] for e in sink.events] == [0, 1], "delivered on the caller's thread"
    assert observer.startFailures == 1, "retried a second later, not on every event"
    assert any("could not start" in d for _, _, d in reporter.failures)
    monkeypatch.undo()
    monkeypatch.setattr("twisted_safelog._nbworker._START_RETRY", 0.0)
    observer._retryStartAt = 0.0
    observer(event(2))
    assert observer.flush(10)
    assert [e["n"] for e in sink.events] == [0, 1, 2]
    assert observer._channel.alive, "the worker runs again"
    assert observer.stats().balanced
    observer.close()


# -- leaks ------------------------------------------------------------------------

LEAK_SCRIPT = """
import gc
from twisted_safelog import safeFileLogObserver
import tempfile

def counts():
    return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))

where = tempfile.mkdtemp()
before = counts()
for n in range(1000):
    file = safeFileLogObserver(os.path.join(where, f"{n % 7}.log"))
    file(ev(n))
    file.close()
    queued = NonBlockingObserver(SafeObserver(RecordingObserver()))
    queued(ev(n))
    queued.close()
gc.collect()
deadline = time.monotonic() + 20
while counts() != before and time.monotonic() < deadline:
    # Sinks are in reference cycles (breaker listeners): the cyclic
    # collector frees them, as it would in any long-running process.
    gc.collect()
    time.sleep(0.05)
closed = counts()

# Not closed, only dropped: the collector ends the thread and the file.
for n in range(100):
    file = safeFileLogObserver(os.path.join(where, f"{n % 7}.log"))
    file(ev(n))
    queued = NonBlockingObserver(file)
    queued(ev(n))
    del file, queued
gc.collect()
deadline = time.monotonic() + 20
while counts() != before and time.monotonic() < deadline:
    # Sinks are in reference cycles (breaker listeners): the cyclic
    # collector frees them, as it would in any long-running process.
    gc.collect()
    time.sleep(0.05)
print(json.dumps({"before": before, "closed": closed, "dropped": counts()}))
"""


def test_thousandCreateUseCloseCyclesLeaveNoDescriptorOrThread() -> None:
    result = runScript(LEAK_SCRIPT, timeout=120)
    print(f"\nfds, threads: {result}")
    assert result["closed"] == result["before"], result
    assert result["dropped"] == result["before"], result


def test_closeReleasesTheFileDescriptor(tmp_path: Path) -> None:
    from twisted_safelog import safeFileLogObserver

    observer = safeFileLogObserver(tmp_path / "a.log")
    observer(event(0))
    fd = observer.writer._fd
    assert fd is not None
    observer.close()
    assert observer.writer._fd is None
    with pytest.raises(OSError):
        os.fstat(fd)


def test_reportsIntoAStoppedTerminalLogFileNeverBlock() -> None:
    """
    The log file is a terminal whose output is stopped (XOFF): report lines
    written into it (the twistd factory's reports when daemonized) do not
    wait; once output resumes, the next one says how many were lost.
    """
    import termios

    from twisted_safelog import LogFileWriter

    master, slave = os.openpty()
    writer = LogFileWriter(os.ttyname(slave))
    try:
        termios.tcflow(slave, termios.TCOOFF)
        began = time.monotonic()
        refused = 0
        for n in range(2000):
            # False says so, for a caller with another place to write it.
            if not writer.writeReport(f"twisted-safelog: report {n} {'x' * 100}\n"):
                refused += 1
        took = time.monotonic() - began
        assert writer.unwrittenReports == refused > 0
        termios.tcflow(slave, termios.TCOON)
        os.set_blocking(master, False)
        try:
            while os.read(master, 65536):
                pass
        except BlockingIOError:
            pass
        writer.writeReport("twisted-safelog: after\n")
        deadline = time.monotonic() + 10
        text = b""
        while b"after" not in text and time.monotonic() < deadline:
            try:
                text += os.read(master, 65536)
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        writer.close()
        os.close(slave)
        os.close(master)
    assert took < 5.0, took
    assert b"report lines could not be written to" in text, text[-300:]


def test_aStandaloneGuardForgetsDeadThreadsInAForkedChild() -> None:
    """
    The bridges' own reentry guards (not owned by a hardened sink) are reset
    too: a thread that was inside one at the fork is not "delivering" in the
    child.
    """
    result = runScript(
        """
        from twisted_safelog._guard import ReentryGuard
        guard = ReentryGuard()
        inside, release = threading.Event(), threading.Event()

        def deliver():
            tid = guard.enter()
            inside.set()
            release.wait(30)
            guard.exit(tid)

        t = threading.Thread(target=deliver)
        t.start()
        assert inside.wait(10)
        child = inChild(lambda: {"active": len(guard.active)})
        release.set()
        t.join(10)
        print(json.dumps({"child": child, "parentBefore": 1}))
        """
    )
    assert result["child"] == {"active": 0}


def test_exitWithAStuckSinkEndsWithinTheFlushDeadlineAndSaysWhatWasLost() -> None:
    """
    An ordinary interpreter exit (atexit flush) with a non-blocking sink
    stuck for ever: the process ends within its flush timeout, and fd 2 says
    how many queued events were not delivered.
    """
    script = PRELUDE + textwrap.dedent(
        """
        never = threading.Event()
        observer = NonBlockingObserver(lambda e: never.wait(), flushTimeout=1.0)
        for n in range(10):
            observer(ev(n))
        """
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "9 queued events could not be delivered within 1s" in result.stderr, result.stderr
    assert took < 30, took


def test_noThreadOfOursIsThereWhenTheProcessForks() -> None:
    """
    A process with hardened sinks has a stall watchdog thread, and one with
    a non-blocking observer its worker; both end just before each fork
    while idle (so the process forks with no thread of ours, and Python
    3.12+ has no "multi-threaded fork" warning to give because of us) and
    run again afterwards, the worker delivering in both processes.
    """
    script = textwrap.dedent(
        """
        import json, os, threading, time
        seen = []
        # Registered before the library's: "before" hooks run in reverse
        # order, so this one runs last, just before the fork.
        os.register_at_fork(before=lambda: seen.append(
            sorted(t.name for t in threading.enumerate())))
        from twisted_safelog import NonBlockingObserver, SafeObserver
        from twisted_safelog.testing import RecordingObserver
        observer = SafeObserver(RecordingObserver())
        sink = RecordingObserver()
        queued = NonBlockingObserver(sink)
        def ev(n):
            return {"log_format": "event {n}", "n": n, "log_time": 0.0,
                    "log_namespace": "fork"}
        queued(ev(0))
        assert queued.flush(10)
        def names():
            return sorted(t.name for t in threading.enumerate())
        deadline = time.monotonic() + 10
        while "twisted-safelog stall watchdog" not in names() and time.monotonic() < deadline:
            time.sleep(0.01)
        before = names()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            deadline = time.monotonic() + 10
            while "twisted-safelog stall watchdog" not in names() and time.monotonic() < deadline:
                time.sleep(0.01)
            queued(ev(1))
            delivered = queued.flush(10)
            os.write(w, json.dumps(names() + [delivered]).encode())
            os._exit(0)
        os.close(w)
        child = json.loads(os.read(r, 65536))
        os.waitpid(pid, 0)
        deadline = time.monotonic() + 10
        while "twisted-safelog stall watchdog" not in names() and time.monotonic() < deadline:
            time.sleep(0.01)
        queued(ev(2))
        print(json.dumps({"before": before, "atFork": seen, "child": child,
                          "parentAfter": names(), "parentDelivered": queued.flush(10),
                          "parentSeen": [e["n"] for e in sink.events]}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    watchdog = "twisted-safelog stall watchdog"

    def ours(names: list[object]) -> set[str]:
        return {
            "worker" if str(n).startswith("twisted-safelog worker") else str(n)
            for n in names
            if str(n).startswith("twisted-safelog")
        }

    assert ours(found["before"]) == {watchdog, "worker"}, found
    assert found["atFork"] == [["MainThread"]]
    assert ours(found["child"]) == {watchdog, "worker"}, found
    assert found["child"][-1] is True
    assert ours(found["parentAfter"]) == {watchdog, "worker"}, found
    assert found["parentDelivered"] is True
    assert found["parentSeen"] == [0, 2]


# -- signals ----------------------------------------------------------------------


def assertEveryEventAccounted(found: dict[str, Any], names: tuple[str, ...]) -> None:
    """
    For each run in C{found} (from C{logUnderSignals}): the signal handler
    logged often, every event logged (its own included) was received, and
    every one received is accounted for. (The handler's line, logged
    hundreds of times, is held back beyond the burst allowance: the
    "repeated N times" summaries a run counted are received too.)
    """
    for name in names:
        counts = found[name]
        assert counts["handled"] > 50, found
        logged = counts["logged"] + counts["handled"] + counts["summaries"]
        assert counts["received"] == logged, found
        assert counts["accounted"] == counts["received"], found


def test_aSignalHandlerThatLogsNeverDeadlocksTheThreadItInterrupts() -> None:
    """
    twistd's SIGTERM and SIGINT handlers log ("Received SIGTERM, shutting
    down.") on the main thread, between any two bytecodes of whatever it was
    doing: often in the middle of a log call into the same non-blocking
    observer, holding its queue's lock or the reporter's. The handler's own
    log call must not wait for a lock its own thread holds: with a timer
    signal firing every 2 ms into a handler that logs, while the main thread
    logs as fast as it can (into a queue with room, then into a full one
    whose drops are reported), the process ends, and every event, the
    handler's included, is accounted for.
    """
    found, _ = runScriptCapturing(
        """
        import faulthandler
        # A deadlock ends the process with the stacks on stderr.
        faulthandler.dump_traceback_later(40, exit=True)
        lines = []
        reporter = Reporter(write=lines.append)
        results = {}
        for name, maxQueue, slow in (("room", 10_000, False), ("full", 2, True)):
            def sink(e, slow=slow):
                if slow:
                    time.sleep(0.0005)
            # Held back before the queue (the handler's line repeats), and
            # summarised by the flush only: an hour's interval.
            safe = SafeObserver(sink, reporter=reporter, repeatInterval=3600)
            observer = NonBlockingObserver(safe, maxQueue=maxQueue, reporter=reporter)
            results[name] = logUnderSignals(observer, flush=True)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(results))
        """,
        timeout=120,
    )
    assertEveryEventAccounted(found, ("room", "full"))


def test_aSignalHandlerThatLogsNeverDeadlocksAFailingSynchronousSink() -> None:
    """
    The same without a queue (C{TWISTED_SAFELOG_NONBLOCKING=false}): while a
    sink fails now and then, or is quarantined and probed, the caller's
    thread takes the hardened sink's, its breaker's and its accounts' locks
    outside the delivery; a signal handler that logs into the same sink
    while one of them is held must not wait for it. Every event is
    accounted for.
    """
    found, _ = runScriptCapturing(
        """
        import faulthandler
        faulthandler.dump_traceback_later(40, exit=True)
        lines = []
        reporter = Reporter(write=lines.append)
        results = {}
        for name, every in (("sometimes", 2), ("always", 1)):
            calls = [0]
            def sink(e, calls=calls, every=every):
                calls[0] += 1
                if calls[0] % every == 0:
                    raise ValueError("the sink failed")
            observer = SafeObserver(sink, reporter=reporter, resetTimeout=0.001,
                                    maxResetTimeout=0.001)
            results[name] = logUnderSignals(observer)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(results))
        """,
        timeout=120,
    )
    assertEveryEventAccounted(found, ("sometimes", "always"))


def test_aSignalHandlerThatLogsWhileTheSummaryTimerIsTakenNeverDeadlocks() -> None:
    """
    A flood's copies make a sink's filter join the process's summary timer
    (a background thread over the filters holding copies back), which takes
    the timer's lock on the caller's thread. A signal handler that logs,
    run on that thread between two bytecodes while it holds that lock, may
    make another sink's filter join too (its own flood's next copy): it
    must not wait for the lock its own thread holds (the lock was not
    reentrant: the process hung there for ever). Interrupted so at each
    line of the background threads' code in turn; every copy is delivered
    or held back, counted.
    """
    found, _ = runScriptCapturing(
        """
        import faulthandler
        # A deadlock ends the process with the stacks on stderr.
        faulthandler.dump_traceback_later(60, exit=True)
        from twisted.internet.task import Clock
        from twisted_safelog import _background
        from tests.helpers import RecordingReporter, atEachLine, interruptedAt

        LINE = "Received SIGTERM, shutting down."

        def joiningAt():
            # How many copies make a fresh filter join the timer.
            probe = SafeObserver(RecordingObserver(), clock=Clock(),
                                 reporter=RecordingReporter(), repeatBurst=4)
            for n in range(1, 1000):
                probe({"log_format": LINE, "log_time": 0.0, "log_namespace": "x"})
                if probe.repeats.watching:
                    return n
            raise AssertionError("never watched")

        joins = joiningAt()

        def run(at):
            clock = Clock()
            mine = SafeObserver(RecordingObserver(), clock=clock,
                                reporter=RecordingReporter(), repeatBurst=4)
            other = SafeObserver(RecordingObserver(), clock=clock,
                                 reporter=RecordingReporter(), repeatBurst=4)
            copy = {"log_format": LINE, "log_time": 0.0, "log_namespace": "x"}
            # The other's next copy makes its filter join the timer.
            for _ in range(joins - 1):
                other(dict(copy))
            handled = []

            def handler():
                if not handled:
                    handled.append(1)
                    other(dict(copy))

            with interruptedAt([_background], handler, at) as reached:
                for _ in range(joins):
                    mine(dict(copy))
            for each in (mine, other):
                s = each.stats()
                assert s.received == s.delivered + s.failed + s.dropped + s.buffered, s
            assert mine.stats().received == joins
            assert other.stats().received == joins - 1 + len(handled)
            return reached

        lines = atEachLine(run, 5)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps({"lines": lines}))
        """,
        timeout=120,
    )
    assert found["lines"] > 5


def test_aCollectedHandlersFinalizerOnAThreadMakingASinkNeverDeadlocks() -> None:
    """
    A stdlib handler hardened in place that nobody holds any more, with
    records still buffered (its disk was full), is closed by its finalizer,
    which the garbage collector runs on whatever thread allocated at that
    moment, between two bytecodes, as a signal handler runs: maybe a thread
    making a sink, inside the sink names' lock or the stall watchdog's. The
    close gives up the name and leaves the watchdog, which take those locks
    again: they must not wait for their own thread (they were not
    reentrant: the thread hung for ever, and every sink made after it).
    Collected so at each line of that code in turn, the buffered records
    are counted and the new sink works.
    """
    found, _ = runScriptCapturing(
        """
        import faulthandler, gc, logging
        faulthandler.dump_traceback_later(60, exit=True)
        from twisted_safelog import _background, _names, hardenHandler
        from tests.helpers import BrokenHandler, RecordingReporter, atEachLine, interruptedAt

        def run(at):
            gc.collect()
            broken = BrokenHandler()
            # (A reporter that keeps no exception: its traceback would
            # hold the handler.)
            core = hardenHandler(broken, reporter=Reporter(write=[].append),
                                 failureThreshold=1, resetTimeout=3600).core
            for n in range(3):
                broken.handle(logging.makeLogRecord({"msg": f"record {n}"}))
            assert core.stats().buffered == 2, core.stats()
            # Only a cycle holds it: it goes when the collector runs.
            broken.cycle = broken
            del broken
            collected = []

            def collect():
                if not collected:
                    collected.append(gc.collect())

            gc.disable()
            try:
                with interruptedAt([_background, _names], collect, at) as reached:
                    sink = RecordingObserver()
                    made = SafeObserver(sink, reporter=RecordingReporter())
            finally:
                gc.enable()
            gc.collect()
            s = core.stats()
            assert s.buffered == 0 and s.droppedByReason["shutdown"] == 2, s
            made(ev(1))
            assert [e["n"] for e in sink.events] == [1]
            return reached

        lines = atEachLine(run, 5)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps({"lines": lines}))
        """,
        timeout=120,
    )
    assert found["lines"] > 5


# -- multiprocessing ----------------------------------------------------------------


def test_aMultiprocessingChildDeliversItsLastLinesBeforeItEnds(tmp_path: Path) -> None:
    """
    A C{multiprocessing} child made with the fork start method ends with
    C{os._exit()}: no C{atexit} handler runs in it. What it logged into a
    non-blocking observer just before returning is still delivered (the
    queue is flushed when C{threading} shuts down, which the child does
    run); and with a sink stuck for ever, the child still ends within the
    flush deadline and says how many events it could not deliver.
    """
    found, stderr = runScriptCapturing(
        f"""
        import multiprocessing
        from twisted_safelog import safeFileLogObserver
        healthy = NonBlockingObserver(safeFileLogObserver({str(tmp_path / "child.log")!r}))
        never = threading.Event()
        stuck = NonBlockingObserver(lambda e: never.wait(), flushTimeout=1.0)

        def child(which):
            for n in range(200):
                which(ev(n))

        context = multiprocessing.get_context("fork")
        results = {{}}
        for name, which in (("healthy", healthy), ("stuck", stuck)):
            process = context.Process(target=child, args=(which,))
            began = time.monotonic()
            process.start()
            process.join(30)
            results[name] = {{"exitcode": process.exitcode, "took": time.monotonic() - began}}
            if process.exitcode is None:
                process.kill()
        print(json.dumps(results))
        """,
        timeout=120,
    )
    assert found["healthy"]["exitcode"] == 0, found
    lines = (tmp_path / "child.log").read_text().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == [str(n) for n in range(200)]
    assert found["stuck"]["exitcode"] == 0, found
    assert found["stuck"]["took"] < 20, found
    assert "199 queued events could not be delivered within 1s" in stderr, stderr


def test_forkWhileEightThreadsLogIntoAFlappingSinkLeavesTheChildBalanced() -> None:
    """
    A real fork while eight threads log into a sink that keeps failing and
    recovering (quarantined, probed, replayed): the threads that are gone
    in the child had events half counted (received, their outcome not yet;
    appended to the buffer, their count not yet). Each child's accounts
    balance after its own logging and close().
    """
    result = runScript(
        """
        failing = [True]
        def sink(e):
            if failing[0]:
                raise OSError(5, "flapping")
        class Reporter_:
            drops = []
            def stateChanged(self, *a): pass
            def failure(self, *a): pass
            def dropped(self, sink, reason, count): self.drops.append((reason, count))
            def note(self, line): pass
            def flush(self): pass
        reporter = Reporter_()
        safe = SafeObserver(sink, reporter=reporter, failureThreshold=3,
                            resetTimeout=0.002, maxResetTimeout=0.005,
                            bufferSize=30, repeatBurst=0)
        stop = threading.Event()
        def log(t):
            k = 0
            while not stop.is_set():
                safe(ev(k))
                k += 1
        def flap():
            while not stop.wait(0.003):
                failing[0] = not failing[0]
        def watch():
            while not stop.is_set():
                safe.stats()
        threads = [threading.Thread(target=log, args=(t,), daemon=True) for t in range(8)]
        threads += [threading.Thread(target=f, daemon=True) for f in (flap, watch)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        def child():
            reporter.drops = []
            failing[0] = False
            for k in range(200):
                safe(ev(k))
            safe.close()
            s = safe.stats()
            return {"balanced": s.balanced, "summary": s.summary(), "buffered": s.buffered}
        children = []
        for _ in range(12):
            children.append(inChild(child))
            time.sleep(0.03)
        stop.set()
        for t in threads:
            t.join(10)
        print(json.dumps({"children": children}))
        """,
        timeout=120,
    )
    children = result["children"]
    assert len(children) == 12  # type: ignore[arg-type]
    unbalanced = [c for c in children if not c["balanced"]]  # type: ignore[index,union-attr]
    assert unbalanced == []


def test_aReportLockHeldAtTheForkDoesNotHangTheChild() -> None:
    """
    A thread of the parent was reading a sink's stats (which holds its
    accounts' report lock) when another forked: in the child, where that
    thread is gone, stats(), logging and close() still return.
    """
    result = runScript(
        """
        import signal
        safe = SafeObserver(RecordingObserver())
        held, release = threading.Event(), threading.Event()
        def hold():
            with safe._accounts.reportLock:
                held.set()
                release.wait(30)
        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert held.wait(30)
        import select
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            safe(ev(1))
            safe.close()
            s = safe.stats()
            os.write(w, json.dumps({"delivered": s.delivered, "balanced": s.balanced}).encode())
            os._exit(0)
        os.close(w)
        # A hung child (in the fork handlers, even) is killed, not left behind.
        if select.select([r], [], [], 30)[0]:
            out = json.loads(os.read(r, 65536))
        else:
            os.kill(pid, signal.SIGKILL)
            out = {"hung": True}
        os.waitpid(pid, 0)
        release.set()
        holder.join(10)
        print(json.dumps(out))
        """,
        timeout=60,
    )
    assert result == {"delivered": 1, "balanced": True}


def test_forkWhileEightThreadsLogIntoANonBlockingObserverLeavesTheChildBalanced() -> None:
    """
    A real fork while eight threads log into a L{NonBlockingObserver} as
    fast as they can into a sink a little slower than that: each of those
    threads, gone in the child, was inside a call (most waiting for the
    queue's lock), its event counted as received and not yet queued or
    dropped. Each child's
    accounts balance once it has logged and flushed its own events (each
    was 8 short, one per thread, before).
    """
    result = runScript(
        """
        seen = []
        def sink(e):
            seen.append(e["n"])
            if len(seen) % 64 == 0:
                # Slower than eight threads log: the queue fills, and
                # callers wait for its lock.
                time.sleep(0.0005)
        observer = NonBlockingObserver(sink, maxQueue=1000)
        stop = threading.Event()
        def log(t):
            k = 0
            while not stop.is_set():
                observer(ev(k))
                k += 1
        threads = [threading.Thread(target=log, args=(t,), daemon=True) for t in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        def child():
            for k in range(200):
                observer(ev(-k))
            flushed = observer.flush(20)
            s = observer.stats()
            return {"balanced": s.balanced, "summary": s.summary(), "flushed": flushed}
        children = []
        for _ in range(6):
            children.append(inChild(child))
            time.sleep(0.03)
        stop.set()
        for t in threads:
            t.join(10)
        observer.flush(20)
        s = observer.stats()
        print(json.dumps({"children": children, "parent": s.balanced}))
        """,
        timeout=120,
    )
    children = result["children"]
    assert len(children) == 6  # type: ignore[arg-type]
    assert all(c["flushed"] for c in children)  # type: ignore[index,union-attr]
    unbalanced = [c for c in children if not c["balanced"]]  # type: ignore[index,union-attr]
    assert unbalanced == []
    assert result["parent"] is True

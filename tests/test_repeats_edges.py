"""
Identical-event suppression (L{twisted_safelog._repeats}) at its edges, as a
production user meets them: events that look alike but render differently,
a process that forks while copies are held back, a summary due on a sink
that has stalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, formatEvent

from twisted_safelog import NonBlockingObserver, SafeHandler, SafeObserver
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter, waitFor


def formatted(form: str, **values: Any) -> LogEvent:
    return {"log_format": form, "log_namespace": "app", "log_level": LogLevel.info, **values}


@pytest.mark.parametrize(
    "flooded, other",
    [
        pytest.param(
            formatted("v={x:>{width}}|", x="a", width=2),
            formatted("v={x:>{width}}|", x="a", width=3),
            id="width-in-the-format-spec",
        ),
        pytest.param(formatted("v={x}", x=0.0), formatted("v={x}", x=-0.0), id="minus-zero"),
    ],
)
def test_eventsThatRenderDifferentlyAreNotCopiesOfAFlood(
    flooded: LogEvent, other: LogEvent
) -> None:
    """
    While one event is held back, an event with the same format and values
    that compare equal but render differently (a width given by another
    field, C{-0.0} against C{0.0}) is a distinct line, delivered every time.
    """
    clock = Clock()
    sink = RecordingObserver()
    observer = SafeObserver(sink, clock=clock, repeatBurst=10, reporter=RecordingReporter())
    for _ in range(500):
        observer(dict(flooded))
    held = observer.stats().droppedByReason["repeated"]
    assert held > 0
    # Fewer than the burst: none of them may be held back, whatever they are.
    for _ in range(8):
        observer(dict(other))
    text = formatEvent(other)
    assert [formatEvent(e) for e in sink.events].count(text) == 8
    assert observer.stats().droppedByReason["repeated"] == held


def test_recordsThatRenderDifferentlyAreNotCopiesOfAFlood() -> None:
    """
    The same for stdlib records: C{"%s" % -0.0} is not C{"%s" % 0.0}.
    """
    clock = Clock()
    delivered: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: delivered.append(record.getMessage())  # type: ignore[method-assign]
    safe = SafeHandler(handler, clock=clock, repeatBurst=10, reporter=RecordingReporter())

    def record(value: float) -> logging.LogRecord:
        return logging.makeLogRecord(
            {"name": "app", "levelno": 20, "msg": "v=%s", "args": (value,)}
        )

    for _ in range(500):
        safe.handle(record(0.0))
    held = safe.stats().droppedByReason["repeated"]
    assert held > 0
    for _ in range(8):
        safe.handle(record(-0.0))
    assert delivered.count("v=-0.0") == 8
    assert safe.stats().droppedByReason["repeated"] == held


FORK_WITH_COPIES_HELD_BACK = """
import os, sys, time
from twisted.logger import LogLevel
from twisted_safelog import NonBlockingObserver, Reporter, safeFileLogObserver

path, kind = sys.argv[1], sys.argv[2]
reporter = Reporter(write=lambda line: None)
sink = safeFileLogObserver(path, reporter=reporter)
observer = sink if kind == "file" else NonBlockingObserver(sink, reporter=reporter)

def event(text):
    return {"log_format": text, "log_namespace": "app", "log_level": LogLevel.warn,
            "log_time": time.time()}

for _ in range(5000):
    observer(event("upstream refused; retrying"))
held = observer.stats().droppedByReason["repeated"]
pid = os.fork()
observer(event("child" if pid == 0 else "parent"))
observer.close()
stats = observer.stats()
if pid == 0:
    os._exit(0 if stats.balanced else 3)
_, status = os.waitpid(pid, 0)
print(held, os.waitstatus_to_exitcode(status), stats.balanced)
"""


@pytest.mark.parametrize("kind", ["file", "nonblocking"])
def test_aForkedChildDoesNotSummariseTheParentsCopies(tmp_path: Path, kind: str) -> None:
    """
    A process forks while a flood's copies are held back (their summary not
    yet due), and both processes go on and close the sink: the summary is
    written once (by the parent, which keeps what was pending at the fork),
    and its count plus the copies written is exactly what was sent.
    """
    path = tmp_path / "app.log"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_WITH_COPIES_HELD_BACK), str(path), kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    held, childStatus, balanced = result.stdout.split()
    assert childStatus == "0" and balanced == "True"
    lines = path.read_text().splitlines()
    copies = [line for line in lines if line.endswith("] upstream refused; retrying")]
    counts = [
        int(line.split("repeated ")[1].split(" times")[0])
        for line in lines
        if " times: upstream refused; retrying" in line
    ]
    assert counts == [int(held)]
    assert len(copies) + sum(counts) == 5000
    assert sum(1 for line in lines if line.endswith("] child")) == 1
    assert sum(1 for line in lines if line.endswith("] parent")) == 1


def test_anEventUnderTheBurstIsNeverHeldBack() -> None:
    """
    Twenty lines, each logged 80 times within one interval (the default
    burst is 100), in random order: each is under the allowance, so not
    one copy may be held back.
    """
    heldBack = 0
    for seed in range(5):
        order = [n for n in range(20) for _ in range(80)]
        random.Random(seed).shuffle(order)
        observer = SafeObserver(RecordingObserver(), clock=Clock(), reporter=RecordingReporter())
        for n in order:
            observer(formatted("job {n} retrying", n=n))
        heldBack += observer.stats().droppedByReason["repeated"]
    assert heldBack == 0


def test_aStalledSinkDoesNotHoldUpAnotherSinksSummary() -> None:
    """
    Sink A writes to a pipe nobody reads any more, and its summary falls
    due: its delivery blocks. Sink B, quiet after a flood of its own, still
    gets its summary when its interval ends (the summary timer waits for A
    at most TICK_DEADLINE), and A's summary is written once the pipe is read.
    """
    r, w = os.pipe()
    summaryStarted = threading.Event()

    def writeToPipe(event: LogEvent) -> None:
        if "log_repeated" in event:
            summaryStarted.set()
        os.write(w, (formatEvent(event) + "\n").encode())

    a = SafeObserver(writeToPipe, repeatInterval=0.2, reporter=RecordingReporter())
    recording = RecordingObserver()
    b = SafeObserver(recording, repeatInterval=0.2, reporter=RecordingReporter())
    try:
        for _ in range(1000):
            a(formatted("A retrying"))
        flags = fcntl.fcntl(w, fcntl.F_GETFL)
        fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(w, b"x" * 65536)
        fcntl.fcntl(w, fcntl.F_SETFL, flags)
        assert summaryStarted.wait(30)
        for _ in range(1000):
            b(formatted("B retrying"))
        held = b.stats().droppedByReason["repeated"]
        assert held > 0
        assert waitFor(lambda: [e.get("log_repeated") for e in recording.events][-1:] == [held])
    finally:
        # Read the pipe: A's summary is written, its helper thread ends.
        os.set_blocking(r, False)
        written = b""
        deadline = time.monotonic() + 30
        while b"repeated" not in written and time.monotonic() < deadline:
            with contextlib.suppress(BlockingIOError):
                written = (written + os.read(r, 1 << 20))[-4096:]
            time.sleep(0.01)
        os.close(r)
        os.close(w)
    assert b"times: A retrying" in written


@pytest.mark.parametrize("kind", ["observer", "nonblocking"])
def test_aSinkLetGoDuringAFloodReportsWhatItHeldBack(kind: str) -> None:
    """
    The application lets a sink go while copies of a flood are held back
    (their summary not yet due): the sink is freed at once, and the count
    of those copies, which no summary will ever say, is reported out of
    band.
    """
    reporter = RecordingReporter()
    sink: Any = SafeObserver(RecordingObserver(), reporter=reporter, repeatInterval=30.0)
    if kind == "nonblocking":
        sink = NonBlockingObserver(sink, reporter=reporter)
    name = sink.name
    for _ in range(2000):
        sink(formatted("upstream refused; retrying"))
    held = sink.stats().droppedByReason["repeated"]
    assert held > 0
    assert not [n for _, why, n in reporter.drops if why == "repeated"]
    gone = weakref.ref(sink)
    del sink
    assert waitFor(lambda: gone() is None)
    assert waitFor(lambda: (name, "repeated", held) in reporter.drops)

"""
Small helpers shared by the tests (not fakes for users: those live in
L{twisted_safelog.testing}).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel
from zope.interface import implementer

from twisted_safelog import HandlerHardening, IReporter, Reporter, hardeningOf


class LineCollector:
    """
    A writer for L{Reporter} that keeps the lines it is given.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def matching(self, fragment: str) -> list[str]:
        return [line for line in self.lines if fragment in line]


def collectingReporter(
    clock: Clock | None = None, interval: float = 10.0
) -> tuple[Reporter, LineCollector]:
    lines = LineCollector()
    return Reporter(write=lines, clock=clock or Clock(), interval=interval), lines


@implementer(IReporter)
class RecordingReporter:
    """
    An L{IReporter} that keeps structured calls, for exact assertions.
    """

    def __init__(self) -> None:
        self.states: list[tuple[str, str, str]] = []
        self.failures: list[tuple[str, BaseException | None, str]] = []
        self.drops: list[tuple[str, str, int]] = []
        self.notes: list[str] = []

    def stateChanged(self, sink: str, old: str, new: str, detail: str) -> None:
        self.states.append((sink, old, new))

    def failure(self, sink: str, error: BaseException | None, description: str) -> None:
        self.failures.append((sink, error, description))

    def dropped(self, sink: str, reason: str, count: int) -> None:
        self.drops.append((sink, reason, count))

    def note(self, line: str) -> None:
        self.notes.append(line)

    def flush(self) -> None:
        pass


class ListHandler(logging.Handler):
    """
    A stdlib handler that keeps its records.
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class BrokenHandler(logging.Handler):
    """
    Fails the way stdlib handlers do: catches its own error and calls
    handleError (which prints a traceback to sys.stderr).
    """

    def __init__(self, error: Callable[[], OSError] | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.error = error or (
            lambda: FileNotFoundError(2, "No such file or directory", "/var/log/app/app.log.1")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.calls += 1
        try:
            raise self.error()
        except OSError:
            self.handleError(record)


def brokenHandlerLogged(
    logger: logging.Logger, errors: int
) -> tuple[BrokenHandler, HandlerHardening]:
    """
    A L{BrokenHandler} added to C{logger} (where handlers are hardened as
    they are added, by C{install()}), and its hardening, once C{errors}
    records were logged through it.
    """
    broken = BrokenHandler()
    logger.addHandler(broken)
    for n in range(errors):
        logger.error("event %d", n)
    hardening = hardeningOf(broken)
    assert hardening is not None
    return broken, hardening


def event(n: int = 0, **extra: object) -> LogEvent:
    """
    A minimal new-style event, numbered so order can be checked.
    """
    result: LogEvent = {
        "log_format": "event {n}",
        "n": n,
        "log_level": LogLevel.info,
        "log_namespace": "tests",
        "log_source": None,
        "log_time": 0.0,
    }
    result.update(extra)
    return result


def requireTool(name: str) -> str:
    """
    The path of an external tool the test needs. Under CI=true a missing tool
    fails the test (CI must install it); elsewhere the test is skipped.
    """
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        missingComponent(f"{name} is not installed (apt-get install it; .ci/run does)")
    return path


def missingComponent(message: str) -> NoReturn:
    """
    A real component the test needs is not there: under CI=true the test
    fails (CI must provide it); elsewhere it is skipped.
    """
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def mountedTmpfs(mountPoint: Path, options: str) -> Iterator[Path]:
    """
    A real tmpfs mounted (we are root) at the existing empty directory
    C{mountPoint} with C{mount -o options}, lazily unmounted afterwards. Where
    it cannot be mounted, L{missingComponent}.
    """
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountPoint)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        missingComponent(f"cannot mount a tmpfs (needs root): {result.stderr.strip()}")
    try:
        yield mountPoint
    finally:
        subprocess.run(["umount", "-l", str(mountPoint)], timeout=30, check=False)


def fullPipe() -> tuple[int, int]:
    """
    A pipe whose buffer is full and that nobody reads: (read end, write end).
    """
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 65536)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return r, w


def waitFor(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """
    Whether C{condition()} became true within C{timeout} seconds, asked
    every C{interval} seconds (and once more at the deadline).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@contextlib.contextmanager
def interruptedAt(
    modules: Iterable[ModuleType],
    interrupt: Callable[[], object],
    at: tuple[str, int] | None = None,
) -> Iterator[set[tuple[str, int]]]:
    """
    While in the block, call C{interrupt()} on this thread each time it
    reaches line C{at} (a file and a line number) of C{modules}' code, as a
    signal handler runs between any two bytecodes of whatever the main
    thread was doing (the interruption itself is not interrupted). Yields
    the set of lines of C{modules} reached, to choose C{at} from.
    """
    files = {module.__file__ for module in modules}
    reached: set[tuple[str, int]] = set()

    def atLine(frame: Any, what: str, arg: object) -> Any:
        if what == "line":
            line = (frame.f_code.co_filename, frame.f_lineno)
            reached.add(line)
            if line == at:
                interrupt()
        return atLine

    def onCall(frame: Any, what: str, arg: object) -> Any:
        return atLine if frame.f_code.co_filename in files else None

    sys.settrace(onCall)
    try:
        yield reached
    finally:
        sys.settrace(None)


def atEachLine(
    scenario: Callable[[tuple[str, int] | None], set[tuple[str, int]]], fewest: int
) -> int:
    """
    Run C{scenario} (which takes the line to interrupt, as L{interruptedAt}
    does, and returns the lines it reached) once without an interruption,
    to learn its lines (more than C{fewest}), then once interrupted at each
    of them in turn. Returns how many lines there were.
    """
    lines = scenario(None)
    assert len(lines) > fewest, lines
    for line in sorted(lines):
        scenario(line)
    return len(lines)


def privateLogger(name: str) -> Iterator[logging.Logger]:
    """
    For a fixture: the stdlib logger C{name}, not propagating, at DEBUG;
    afterwards its handlers are removed and its level unset.
    """
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers[:] = []
    logger.setLevel(logging.NOTSET)


Thunk = Callable[[], object]


#: For a script a test runs in a child interpreter (C{python -c}, where this
#: module cannot be imported), put before it: L{waitFor}, and
#: C{noticed(writer, path, rotated, timeout)}, which moves the log file aside and
#: creates a new one, as logrotate's create does, then writes until a line
#: lands at the path (with the periodic check off, only the rotation
#: watcher can make that happen).
CHILD_HELPERS = textwrap.dedent(
    """
    import os, time

    def waitFor(condition, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return condition()

    def noticed(writer, path, rotated, timeout=30.0):
        os.rename(path, rotated)
        open(path, "w").close()
        n = [0]
        def landed():
            n[0] += 1
            writer.write(f"after {n[0]}\\n")
            with open(path) as f:
                return f"after {n[0]}" in f.read()
        return waitFor(landed, timeout)
    """
)


def childResult(script: str, *args: str) -> Any:
    """
    Run the Python C{script} in a child process with C{args} (bounded); it
    must exit 0 (its stderr and status are the failure message) and print
    one JSON value, which this returns.
    """
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    return json.loads(result.stdout)

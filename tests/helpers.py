"""
Small helpers shared by the tests (not fakes for users: those live in
L{twisted_safelog.testing}).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel
from zope.interface import implementer

from twisted_safelog import IReporter, Reporter


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
        message = f"{name} is not installed (apt-get install it; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


Thunk = Callable[[], object]

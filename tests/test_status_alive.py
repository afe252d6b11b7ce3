"""
status() lists the sinks that are alive, and only those: a sink nobody
references any more leaves the table, the status file and the metrics at
once (by reference counting), not whenever the cyclic garbage collector
happens to run. Under twistd, the sink that lingered was Twisted's own
LogBeginner buffer (a C{LogPublisher}), wrapped by install() and removed by
twistd a moment later; operators saw it as "LogPublisher, 0 delivered".
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogPublisher

from twisted_safelog import SafeObserver, hardenHandler, install, safeFileLogObserver, status
from twisted_safelog._install import uninstall

from .metricsapp import readStatus, sinkNamed, startMetricsApp, waitFor
from .twistdprocess import stop, waitForPort


@pytest.fixture
def noCycleCollector() -> Iterator[None]:
    """
    A long-running process may go a long time without a full collection;
    here none runs at all.
    """
    gc.collect()
    wasEnabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if wasEnabled:
            gc.enable()


def names() -> list[str]:
    return [stats.name for stats in status()]


def handler() -> Any:
    made = logging.StreamHandler()
    hardenHandler(made)
    return made


MAKERS: dict[str, Callable[[Path], Any]] = {
    "observer": lambda tmp: SafeObserver(lambda event: None, name="alive-test-observer"),
    "fileSink": lambda tmp: safeFileLogObserver(str(tmp / "alive-test.log")),
    "handler": lambda tmp: handler(),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.usefixtures("noCycleCollector")
def test_aSinkNobodyReferencesLeavesStatusAtOnce(tmp_path: Path, kind: str) -> None:
    before = len(status())
    sink = MAKERS[kind](tmp_path)
    assert len(status()) == before + 1
    del sink
    assert len(status()) == before, names()


@pytest.mark.usefixtures("noCycleCollector")
def test_anObserverRemovedFromAnInstalledPublisherLeavesStatus() -> None:
    """
    What twistd does: install() wraps what is on the publisher (Twisted's
    LogBeginner buffer), then twistd removes it.
    """
    publisher = LogPublisher()
    temporary = LogPublisher()
    publisher.addObserver(temporary)
    install(publisher, stdlib=False)
    try:
        assert "LogPublisher" in names()
        publisher.removeObserver(temporary)
        assert "LogPublisher" not in names()
    finally:
        uninstall(publisher)


def test_twistdListsNoLogPublisher(tmp_path: Path) -> None:
    """
    Under a real twistd with the factory, the status file lists the log
    file, its non-blocking worker and the application's handler: not the
    LogBeginner buffer twistd removed when logging began.
    """
    (tmp_path / "app").mkdir()
    statusPath = tmp_path / "status.json"
    process, appPort, log = startMetricsApp(tmp_path, statusPath, "0.5")
    try:
        assert waitForPort(appPort, process=process)
        assert waitFor(lambda: sinkNamed(statusPath, "<WatchedFileHandler ") is not None)
        sinks = [sink["name"] for sink in readStatus(statusPath)["sinks"]]
        assert sinks[:2] == [str(log), f"{log} (non-blocking)"]
        assert len(sinks) == 3 and sinks[2].startswith("<WatchedFileHandler "), sinks
    finally:
        stop(process)


def test_aRemovedQuarantinedObserverCountsWhatItHeld() -> None:
    """
    Nothing delivers what a removed observer's wrapper still held: it is
    counted and reported when the observer is removed, not lost unseen.
    """
    from .helpers import RecordingReporter, event

    def failing(event: object) -> None:
        raise OSError("disk gone")

    publisher = LogPublisher()
    reporter = RecordingReporter()
    install(publisher, stdlib=False, reporter=reporter, failureThreshold=1, resetTimeout=3600)
    try:
        publisher.addObserver(failing)
        for n in range(4):
            publisher(event(n))
        publisher.removeObserver(failing)
        assert [(r, c) for _, r, c in reporter.drops] == [("shutdown", 3)]
    finally:
        uninstall(publisher)

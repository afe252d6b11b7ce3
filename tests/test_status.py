"""
L{twisted_safelog.status}: every hardened sink alive in the process, whoever
made it, as immutable snapshots, held weakly.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import attrs
import pytest
from twisted.internet.task import Clock

from twisted_safelog import (
    NonBlockingObserver,
    SafeHandler,
    SafeObserver,
    SinkStats,
    isHealthy,
    safeFileLogObserver,
    status,
)
from twisted_safelog._status import uniqueNames, watchStateChanges

from . import helpers
from .helpers import BrokenHandler, ListHandler, RecordingReporter, event

waitFor = functools.partial(helpers.waitFor, timeout=20.0, interval=0.02)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def byName() -> dict[str, SinkStats]:
    return {stats.name: stats for stats in status()}


def failing(event: object) -> None:
    raise OSError(28, "No space left on device")


def test_statusListsHealthyQuarantinedAndQueuedSinksOfEveryKind(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    clock = Clock()
    healthyName, brokenName, handlerName = unique("healthy"), unique("broken"), unique("handler")
    healthy = SafeObserver(lambda e: None, name=healthyName, reporter=reporter)
    broken = SafeObserver(failing, name=brokenName, reporter=reporter, clock=clock)
    handler = SafeHandler(BrokenHandler(), name=handlerName, reporter=reporter, clock=clock)
    fileSink = safeFileLogObserver(tmp_path / "app.log", reporter=reporter)
    release = threading.Event()
    blocked = SafeObserver(lambda e: release.wait(30), name=unique("slow"), reporter=reporter)
    queued = NonBlockingObserver(blocked, maxQueue=2, reporter=reporter)
    try:
        for n in range(7):
            healthy(event(n))
            broken(event(n))
            handler.handle(logging.LogRecord("app", logging.ERROR, __file__, 1, "x", None, None))
            fileSink(event(n))
        # One event held by the blocked worker, two queued, the rest over.
        for n in range(6):
            queued(event(n))
        sinks = byName()
        assert isHealthy(sinks[healthyName])
        assert sinks[healthyName].delivered == 7
        assert sinks[brokenName].state == "open"
        assert not isHealthy(sinks[brokenName])
        assert sinks[brokenName].failed == 5
        assert sinks[brokenName].buffered == 2
        assert sinks[handlerName].state == "open"
        assert sinks[str(fileSink.name)].delivered == 7
        nonBlocking = sinks[queued.name]
        assert nonBlocking.received == 6
        assert nonBlocking.delivered == 0
        assert nonBlocking.buffered in (2, 3), "queued, and one in the worker's hands"
        assert nonBlocking.droppedByReason["overflow"] == 6 - nonBlocking.buffered
        assert nonBlocking.balanced
    finally:
        release.set()
        queued.stop(5)


def test_snapshotsAreImmutableValues() -> None:
    name = unique("frozen")
    sink = SafeObserver(lambda e: None, name=name, reporter=RecordingReporter())
    sink(event())
    snapshot = byName()[name]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snapshot.delivered = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.droppedByReason["reentry"] = 1  # type: ignore[index]
    sink(event())
    assert snapshot.delivered == 1, "a snapshot does not follow the sink"
    assert byName()[name].delivered == 2


def test_sinceIsWhenItWasQuarantinedOrRestoredAndLastErrorIsOneShortLine() -> None:
    clock = Clock()
    name = unique("since")
    broken = [True]

    def multiLine(event: object) -> None:
        if broken[0]:
            raise ValueError("first line of a long story\nsecond line\n" + "x" * 500)

    before = time.time()
    sink = SafeObserver(multiLine, name=name, reporter=RecordingReporter(), clock=clock)
    made = byName()[name]
    assert before <= made.since <= time.time()
    assert made.lastError is None
    for n in range(4):
        sink(event(n))
    assert byName()[name].since == made.since, "failures that change no state do not move it"
    assert byName()[name].lastError == "ValueError: first line of a long story"
    opening = time.time()
    sink(event(5))
    quarantined = byName()[name]
    assert quarantined.state == "open"
    assert opening <= quarantined.since <= time.time()
    # The early probes (the next five events, tried at once) fail too, and
    # then a regular probe (open -> half-open -> open): the same quarantine.
    for n in range(6, 11):
        sink(event(n))
    assert sink.breaker.currentTimeout == 1.0, "failed early probes do not back off"
    clock.advance(1.0)
    sink(event(11))
    assert sink.breaker.currentTimeout == 2.0, "a probe was made and failed"
    assert byName()[name].since == quarantined.since
    broken[0] = False
    clock.advance(2.0)
    restoring = time.time()
    sink(event(7))
    restored = byName()[name]
    assert restored.state == "closed"
    assert restoring <= restored.since <= time.time()
    assert restored.lastError == "ValueError: first line of a long story", "the last one, kept"


def test_longErrorsAreCutShort() -> None:
    name = unique("long")

    def long(event: object) -> None:
        raise OSError("y" * 1000)

    sink = SafeObserver(long, name=name, reporter=RecordingReporter(), failureThreshold=1)
    sink(event())
    lastError = byName()[name].lastError
    assert lastError is not None
    assert lastError.startswith("OSError: yyy")
    assert len(lastError) <= 160


def test_statusHoldsSinksWeakly() -> None:
    name = unique("weak")
    sink = SafeObserver(lambda e: None, name=name, reporter=RecordingReporter())
    handler = SafeHandler(ListHandler(), name=unique("weak-handler"))
    handlerName = handler.core.name
    assert name in byName() and handlerName in byName()
    del sink, handler
    gc.collect()
    assert name not in byName()
    assert handlerName not in byName()


def test_statusIsOldestFirst() -> None:
    names = [unique(f"order{n}") for n in range(3)]
    sinks = [SafeObserver(lambda e: None, name=n, reporter=RecordingReporter()) for n in names]
    listed = [stats.name for stats in status() if stats.name in names]
    assert listed == names
    del sinks


def test_watchersHearEveryStateChangeOnce() -> None:
    clock = Clock()
    heard: list[int] = []
    stop = watchStateChanges(lambda: heard.append(1))
    try:
        sink = SafeObserver(
            failing, name=unique("watched"), reporter=RecordingReporter(), clock=clock
        )
        for n in range(5):
            sink(event(n))
        assert len(heard) == 1, "closed -> open"
        clock.advance(1.0)
        sink(event())
        assert len(heard) == 3, "open -> half-open -> open"
    finally:
        stop()
    sink(event())
    clock.advance(10)
    sink(event())
    assert len(heard) == 3, "stopped watching"


def test_aWatcherThatRaisesDoesNotBreakTheSink() -> None:
    def broken() -> None:
        raise RuntimeError("watcher")

    stop = watchStateChanges(broken)
    try:
        sink = SafeObserver(
            failing, name=unique("watched"), reporter=RecordingReporter(), failureThreshold=1
        )
        sink(event())
        assert sink.stats().state == "open"
    finally:
        stop()


def test_uniqueNamesNumberTheRepeats() -> None:
    name = unique("twin")
    twins = [SafeObserver(lambda e: None, name=name, reporter=RecordingReporter()) for _ in "ab"]
    named = [n for n, stats in uniqueNames(status()) if stats.name == name]
    assert named == [name, f"{name} #2"]
    del twins


def test_aStalledSinkIsUnhealthyAndTheStatusFileHearsAtOnce(tmp_path: Path) -> None:
    from twisted_safelog import StatusFile
    from twisted_safelog._status import shownState

    release = threading.Event()
    name = unique("stuck")
    stuck = SafeObserver(
        lambda e: release.wait(30), name=name, reporter=RecordingReporter(), stallTimeout=0.2
    )
    queued = NonBlockingObserver(stuck, reporter=RecordingReporter(), stallTimeout=0.2)
    path = tmp_path / "status.json"
    # Ten minutes between writes: only the stall can explain a prompt one.
    statusFile = StatusFile(path, interval=600)
    statusFile.start()
    try:
        assert waitFor(path.exists)
        queued(event())

        def stalledInFile() -> bool:
            try:
                document = json.loads(path.read_text())
            except ValueError:
                return False
            return any(s["name"] == name and s["state"] == "stalled" for s in document["sinks"])

        assert waitFor(stalledInFile), path.read_text()
        sinks = byName()
        assert sinks[name].stalledFor > 0
        assert sinks[name].state == "closed", "the breaker has nothing against it"
        assert not isHealthy(sinks[name]) and shownState(sinks[name]) == "stalled"
        assert not isHealthy(sinks[queued.name])
        assert shownState(sinks[queued.name]) == "stalled"
        entry = next(s for s in json.loads(path.read_text())["sinks"] if s["name"] == name)
        assert entry["healthy"] is False and entry["breakerState"] == "closed"
        release.set()
        assert waitFor(lambda: isHealthy(byName()[name]))
    finally:
        release.set()
        statusFile.stop()
        queued.stop(5)

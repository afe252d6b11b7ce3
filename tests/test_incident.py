"""
The incident suite: every measured shape of the feedback loop, with plain
Twisted (in a child process killed after a few seconds, to prove the loop is
real) and with twisted-safelog (which must finish every event quickly,
quarantine the failing sink after a bounded number of calls, keep the healthy
sinks fed, and say out of band what broke).
"""

from __future__ import annotations

import json
import math
import threading
import time
from itertools import count
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogPublisher
from zope.interface import implementer

from twisted_safelog import SafeObserver
from twisted_safelog.incident import (
    VARIANTS,
    IncidentResult,
    loopProof,
    resultsOf,
    startIncident,
)
from twisted_safelog.incident._child import _statusWriter
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter

EVENTS = 300
#: A generous deadline for one run on a loaded machine; runs end long
#: before it (a plain run as soon as the loop is proven).
DEADLINE = 180.0

#: variant -> (words the first failure report must contain)
LOOPS = {
    "incident": "FileNotFoundError",
    "missing-directory": "FileNotFoundError",
    "legacy-bridge": "FileNotFoundError",
    "both-bridges": "FileNotFoundError",
    "stdlib-application": "FileNotFoundError",
    "py27-handleError": "No space left on device",
    "raising-formatter": "KeyError",
    "syslog-and-file": "FileNotFoundError",
    "fanout": "is broken",
}


def runAll(hardened: bool) -> dict[str, IncidentResult]:
    """
    Run every looping variant at once (each in its own child process) and
    collect the results.
    """
    runs = [
        startIncident(
            name, hardened=hardened, events=EVENTS, timeout=DEADLINE, stopAtProof=not hardened
        )
        for name in sorted(LOOPS)
    ]
    return {r.variant: r for r in resultsOf(runs)}


@pytest.fixture(scope="module")
def plainRuns() -> dict[str, IncidentResult]:
    return runAll(hardened=False)


@pytest.fixture(scope="module")
def hardenedRuns() -> dict[str, IncidentResult]:
    return runAll(hardened=True)


def test_everyVariantIsCovered() -> None:
    assert set(LOOPS) | {"last-resort"} == set(VARIANTS)
    assert [name for name, v in VARIANTS.items() if not v.plainLoops] == ["last-resort"]


@pytest.mark.parametrize("variant", sorted(LOOPS))
def test_plainTwistedLoops(variant: str, plainRuns: dict[str, IncidentResult]) -> None:
    """
    Plain Twisted's failing sinks are called more often than any run without
    a loop can call them, before the application's events are done; the run
    is ended as soon as that is proven.
    """
    result = plainRuns[variant]
    assert not result.timedOut, f"no loop proven in {DEADLINE} s: {result}"
    assert result.proven and result.looped, (
        f"expected the loop: done={result.done} completed={result.completed} "
        f"failingCalls={result.failingCalls} extra={result.extra}"
    )
    assert result.completed < EVENTS
    work = result.failingCalls + int(result.extra.get("syslogDatagrams", 0))
    assert work >= loopProof(EVENTS) > 2 * EVENTS


@pytest.mark.parametrize("variant", sorted(LOOPS))
def test_twistedSafelogStopsTheLoop(variant: str, hardenedRuns: dict[str, IncidentResult]) -> None:
    result = hardenedRuns[variant]
    assert result.done and result.completed == EVENTS, result.stderr[-2000:]
    # The failing sink is quarantined after a bounded number of calls
    # (its first few successes, five failures, perhaps a probe): the limit
    # the demo's verdict uses too.
    limit = VARIANTS[variant].hardenedLimit(EVENTS)
    assert limit == 20 * (7 if variant == "fanout" else 1)
    assert result.failingCalls <= limit
    assert result.appEventsInWitness() == EVENTS
    quarantined = [line for line in result.reports if "quarantined after" in line]
    assert quarantined, result.stderr
    failed = [line for line in result.reports if " failed: " in line]
    assert LOOPS[variant] in failed[0]
    assert result.problems() == []


def test_syslogDatagramsStopWithTheLoop(hardenedRuns: dict[str, IncidentResult]) -> None:
    result = hardenedRuns["syslog-and-file"]
    # One datagram per application event, not one per turn of a loop.
    assert result.extra["syslogDatagrams"] == EVENTS


def test_lastResortPlainNestsAndLosesTheWarning() -> None:
    """
    With no handler, logging.lastResort writes to the redirected stderr,
    which feeds the bridge again: dozens of nested writes per warning, yet
    the run finishes (this variant nests rather than loops for ever).
    """
    result = startIncident("last-resort", hardened=False, events=100, timeout=DEADLINE).result()
    assert result.done and not result.looped
    assert result.failingCalls >= 100 * 50


def test_lastResortHardenedReachesASinkAndCountsTheEcho() -> None:
    result = startIncident("last-resort", hardened=True, events=EVENTS, timeout=DEADLINE).result()
    assert result.done
    assert VARIANTS["last-resort"].hardenedLimit(EVENTS) == EVENTS
    assert result.failingCalls == EVENTS, "lastResort is called once per warning"
    # Each warning is in the healthy file twice: as the application's event
    # and as the line lastResort wrote to stderr.
    assert result.witnessText.count("served") == 2 * EVENTS
    assert any("(reentry)" in line for line in result.reports)
    assert result.problems() == []


def test_hardenedRunIsCheapPerEvent(
    plainRuns: dict[str, IncidentResult], hardenedRuns: dict[str, IncidentResult]
) -> None:
    """
    Per application event, the hardened run spends a small fraction of the
    CPU time and the log bytes of the plain one (ratios within one test run,
    not absolute times).
    """
    plain, safe = plainRuns["incident"], hardenedRuns["incident"]
    plainEvents, safeEvents = max(plain.completed, 1), safe.completed
    assert safe.cpuSeconds / safeEvents * 10 < plain.cpuSeconds / plainEvents
    assert safe.bytesWritten / safeEvents * 100 < plain.bytesWritten / plainEvents


def test_theStatusFileHasOneWriter(tmp_path: Path) -> None:
    """
    The child's status file is written by its heartbeat thread only, which
    writes the final snapshot once the run is finished: the parent can
    never read a file that another writer truncated (an empty status).
    """
    status = tmp_path / "status.json"
    writers: set[int] = set()
    finished = threading.Event()
    calls = count()

    def snapshot() -> dict[str, object]:
        writers.add(threading.get_ident())
        return {"n": next(calls), "done": finished.is_set()}

    thread = _statusWriter(status, snapshot, finished)
    deadline = time.monotonic() + 30
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    finished.set()
    thread.join(30)
    assert not thread.is_alive()
    assert writers == {thread.ident}
    assert json.loads(status.read_text())["done"] is True
    assert not status.with_suffix(".tmp").exists()


# -- factorial fan-out, in process ---------------------------------------------


@implementer(ILogObserver)
class AlwaysFails:
    def __init__(self, calls: count[int]) -> None:
        self.calls = calls

    def __call__(self, event: object) -> None:
        next(self.calls)
        raise OSError("broken")


def deliveriesForOneEvent(n: int, wrap: bool) -> int:
    calls = count()
    observers: list[object] = [AlwaysFails(calls) for _ in range(n)]
    if wrap:
        observers = [
            SafeObserver(o, reporter=RecordingReporter(), clock=Clock()) for o in observers
        ]
    publisher = LogPublisher(*observers)  # type: ignore[arg-type]
    Logger(observer=publisher).info("one event")
    return next(calls)


def test_plainFanOutIsFactorial() -> None:
    counts = [deliveriesForOneEvent(n, wrap=False) for n in range(1, 8)]
    assert counts[6] > 13_000
    # Each added observer multiplies the work by about n.
    for n in range(3, 8):
        assert counts[n - 1] >= (n - 1) * counts[n - 2]
    assert counts[6] > math.factorial(7) * 2


def test_hardenedFanOutIsLinear() -> None:
    assert [deliveriesForOneEvent(n, wrap=True) for n in range(1, 8)] == list(range(1, 8))


def test_hardenedFanOutStaysLinearOverManyEvents() -> None:
    calls = count()
    witness = RecordingObserver()
    wrapped = [
        SafeObserver(AlwaysFails(calls), reporter=RecordingReporter(), clock=Clock())
        for _ in range(7)
    ]
    publisher = LogPublisher(witness, *wrapped)
    log = Logger(observer=publisher)
    for n in range(100):
        log.info("event {n}", n=n)
    # Five failures each, then quarantined: no more calls.
    assert next(calls) == 7 * 5
    assert len(witness.events) == 100

"""
The incident suite: every measured shape of the feedback loop, with plain
Twisted (in a child process killed after a few seconds, to prove the loop is
real) and with twisted-safelog (which must finish every event quickly,
quarantine the failing sink after a bounded number of calls, keep the healthy
sinks fed, and say out of band what broke).
"""

from __future__ import annotations

import math
from itertools import count

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogPublisher
from zope.interface import implementer

from twisted_safelog import SafeObserver
from twisted_safelog._incident import VARIANTS, runIncident
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter

PLAIN_TIMEOUT = 4.0
EVENTS = 300

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
}


def test_everyVariantIsCovered() -> None:
    assert set(LOOPS) | {"last-resort", "fanout"} == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(LOOPS))
def test_plainTwistedLoops(variant: str) -> None:
    result = runIncident(variant, hardened=False, events=EVENTS, timeout=PLAIN_TIMEOUT)
    assert result.looped, (
        f"expected the loop: done={result.done} completed={result.completed} "
        f"failingCalls={result.failingCalls} extra={result.extra}"
    )
    assert result.completed < EVENTS


@pytest.mark.parametrize("variant", sorted(LOOPS))
def test_twistedSafelogStopsTheLoop(variant: str) -> None:
    result = runIncident(variant, hardened=True, events=EVENTS, timeout=60)
    assert result.done and result.completed == EVENTS, result.stderr[-2000:]
    assert result.meanEventSeconds is not None
    assert result.meanEventSeconds < 0.010
    # The failing sink is quarantined after a bounded number of calls
    # (its first few successes, five failures, perhaps a probe).
    assert result.failingCalls <= 20
    assert result.appEventsInWitness() == EVENTS
    quarantined = [line for line in result.reports if "quarantined after" in line]
    assert quarantined, result.stderr
    failed = [line for line in result.reports if " failed: " in line]
    assert LOOPS[variant] in failed[0]
    assert result.problems() == []


def test_syslogDatagramsStopWithTheLoop() -> None:
    result = runIncident("syslog-and-file", hardened=True, events=EVENTS, timeout=60)
    # One datagram per application event, not one per turn of a loop.
    assert result.extra["syslogDatagrams"] == EVENTS


def test_lastResortPlainNestsAndLosesTheWarning() -> None:
    """
    With no handler, logging.lastResort writes to the redirected stderr,
    which feeds the bridge again: dozens of nested writes per warning.
    """
    result = runIncident("last-resort", hardened=False, events=100, timeout=30)
    assert result.failingCalls >= 100 * 50


def test_lastResortHardenedReachesASinkAndCountsTheEcho() -> None:
    result = runIncident("last-resort", hardened=True, events=EVENTS, timeout=60)
    assert result.done
    assert result.failingCalls == EVENTS, "lastResort is called once per warning"
    # Each warning is in the healthy file twice: as the application's event
    # and as the line lastResort wrote to stderr.
    assert result.witnessText.count("served") == 2 * EVENTS
    assert any("(reentry)" in line for line in result.reports)


def test_hardenedRunIsCheapInCPU() -> None:
    plain = runIncident("incident", hardened=False, events=EVENTS, timeout=PLAIN_TIMEOUT)
    safe = runIncident("incident", hardened=True, events=EVENTS, timeout=60)
    assert plain.looped
    assert safe.cpuSeconds < plain.cpuSeconds
    # Plain Twisted writes tracebacks for as long as it runs (1.4 MB in 4 s
    # on Twisted 22.10, tens of MB on 26.10).
    assert safe.bytesWritten * 20 < plain.bytesWritten


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

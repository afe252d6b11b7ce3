"""
Tests for L{twisted_safelog._breaker}.
"""

from __future__ import annotations

import json
import threading

import pytest
from twisted.internet.task import Clock

from twisted_safelog import (
    BreakerState,
    CircuitBreaker,
    ConfigurationError,
    DropReason,
    OverflowPolicy,
)


def makeBreaker(**kw: float) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(clock=clock, **kw), clock  # type: ignore[arg-type]


def test_startsClosedAndAllows() -> None:
    breaker, _ = makeBreaker()
    assert breaker.state is BreakerState.closed
    assert breaker.allow()


def test_opensAfterThresholdConsecutiveFailures() -> None:
    breaker, _ = makeBreaker(failureThreshold=3)
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.closed
    breaker.failure()
    assert breaker.state is BreakerState.open
    assert not breaker.allow()


def test_successResetsTheFailureRun() -> None:
    breaker, _ = makeBreaker(failureThreshold=3)
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state is BreakerState.closed


def test_halfOpenAfterResetTimeoutLetsOneProbeThrough() -> None:
    breaker, clock = makeBreaker(failureThreshold=1, resetTimeout=2.0)
    breaker.failure()
    clock.advance(1.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()
    assert breaker.state is BreakerState.halfOpen
    assert not breaker.allow()
    assert not breaker.allow()


def test_successfulProbeCloses() -> None:
    breaker, clock = makeBreaker(failureThreshold=1, resetTimeout=1.0)
    breaker.failure()
    clock.advance(1)
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.closed
    assert breaker.allow()
    assert breaker.currentTimeout == 1.0


def test_failedProbeReopensWithExponentialBackoffUpToMaximum() -> None:
    breaker, clock = makeBreaker(
        failureThreshold=1, resetTimeout=1.0, maxResetTimeout=5.0, backoffFactor=2.0
    )
    breaker.failure()
    timeouts = []
    for _ in range(5):
        clock.advance(breaker.currentTimeout)
        assert breaker.allow()
        breaker.failure()
        assert breaker.state is BreakerState.open
        timeouts.append(breaker.currentTimeout)
    assert timeouts == [2.0, 4.0, 5.0, 5.0, 5.0]
    clock.advance(4.99)
    assert not breaker.allow()


def test_lateSuccessDoesNotCloseAnOpenBreaker() -> None:
    """
    A call allowed while closed that finishes after the breaker opened must
    not end the quarantine; only a probe can.
    """
    breaker, _ = makeBreaker(failureThreshold=1)
    breaker.failure()
    breaker.success()
    assert breaker.state is BreakerState.open


def test_exactlyOneProbeAmongManyThreads() -> None:
    breaker, clock = makeBreaker(failureThreshold=1, resetTimeout=1.0)
    breaker.failure()
    clock.advance(1)
    start = threading.Barrier(16)
    allowed: list[bool] = []
    lock = threading.Lock()

    def contend() -> None:
        start.wait()
        for _ in range(200):
            result = breaker.allow()
            with lock:
                allowed.append(result)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert allowed.count(True) == 1
    assert breaker.state is BreakerState.halfOpen


def test_listenersSeeEveryTransitionAndCannotBreakTheCaller() -> None:
    breaker, clock = makeBreaker(failureThreshold=1, resetTimeout=1.0)
    seen: list[tuple[str, str]] = []

    def listener(b: CircuitBreaker, old: BreakerState, new: BreakerState) -> None:
        seen.append((old.value, new.value))
        raise RuntimeError("listener bug")

    breaker.addListener(listener)
    breaker.failure()
    clock.advance(1)
    breaker.allow()
    breaker.success()
    assert seen == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


@pytest.mark.parametrize(
    "member, value",
    [
        (BreakerState.halfOpen, "half-open"),
        (BreakerState.open, "open"),
        (DropReason.reentry, "reentry"),
        (OverflowPolicy.dropNewest, "drop-newest"),
    ],
)
def test_stringEnumsAreTheirValuesEverywhere(member: object, value: str) -> None:
    """
    States, drop reasons and policies read as their string values wherever
    the package shows them (reports, JSON status, f-strings), on every
    supported Python: 3.10 has no StrEnum, and a plain C{(str, Enum)}
    prints as C{BreakerState.open} on 3.11+.
    """
    assert member == value and hash(member) == hash(value)
    assert str(member) == f"{member}" == f"{member:>{len(value)}}" == value
    assert json.dumps({"state": member}) == json.dumps({"state": value})
    assert {value: 1}[member] == 1


@pytest.mark.parametrize(
    "kw",
    [
        {"failureThreshold": 0},
        {"resetTimeout": 0},
        {"resetTimeout": 10, "maxResetTimeout": 5},
        {"backoffFactor": 0.5},
        {"resetTimeout": float("inf")},
        {"resetTimeout": float("nan")},
        {"failureThreshold": 2.5},
    ],
)
def test_badSettingsFailWithAClearMessage(kw: dict[str, float]) -> None:
    """
    Each bad value is a ConfigurationError naming the setting (the last
    one given) and what to use.
    """
    name = list(kw)[-1]
    with pytest.raises(ConfigurationError, match=rf"^{name}=.* is not valid; use "):
        CircuitBreaker(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("probing", [False, True], ids=["closed", "half-open"])
def test_noLockHeldWhileTheCallerCallsTheSink(probing: bool) -> None:
    """
    allow() returns before the sink is called: while one caller is inside a
    slow sink (an ordinary call, or the half-open probe), another thread
    gets its answer from the breaker at once (allowed when closed, refused
    while the probe is out) instead of waiting for the first to finish, as
    a breaker that held its lock around the call would make it.
    """
    breaker, clock = makeBreaker(failureThreshold=1, resetTimeout=1.0)
    if probing:
        breaker.failure()
        clock.advance(1)
    inside = threading.Event()
    release = threading.Event()

    def slowCaller() -> None:
        assert breaker.allow()
        inside.set()
        release.wait(30)
        breaker.success()

    t = threading.Thread(target=slowCaller)
    t.start()
    assert inside.wait(30)
    answers: list[bool] = []
    done = threading.Event()

    def other() -> None:
        answers.append(breaker.allow())
        if answers[0]:
            breaker.success()
        done.set()

    threading.Thread(target=other).start()
    try:
        assert done.wait(30), "the second caller waited for the first one's sink"
        assert answers == [not probing]
        assert breaker.state == ("half-open" if probing else "closed")
    finally:
        release.set()
        t.join(30)
    assert breaker.state == "closed"


def test_tripOpensAtOnce() -> None:
    breaker, clock = makeBreaker(resetTimeout=3.0)
    breaker.trip()
    assert breaker.state is BreakerState.open
    clock.advance(2.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()

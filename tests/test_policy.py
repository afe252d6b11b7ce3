"""
Tests for L{Policy}: one immutable value for the hardening settings, checked
where it is made, and taken by every safe sink in the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
from twisted.logger import LogPublisher

from twisted_safelog import (
    ConfigurationError,
    Policy,
    SafeHandler,
    SafeObserver,
    install,
    safeFileLogObserver,
    uninstall,
)
from twisted_safelog._policy import PolicySettings
from twisted_safelog.testing import RecordingObserver


def test_defaults() -> None:
    policy = Policy()
    assert (
        policy.failureThreshold,
        policy.resetTimeout,
        policy.maxResetTimeout,
        policy.backoffFactor,
        policy.bufferSize,
        policy.retryFailed,
        policy.maxAttempts,
    ) == (5, 1.0, 60.0, 2.0, 1000, False, 10)


def test_immutable() -> None:
    policy = Policy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.bufferSize = 3  # type: ignore[misc]


def test_theKeywordFormNamesEveryField() -> None:
    """
    The typed keyword form (PolicySettings) and the policy's fields agree,
    so a setting added to one cannot be forgotten in the other.
    """
    assert set(PolicySettings.__annotations__) == {a.name for a in attrs.fields(Policy)}


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"failureThreshold": 0}, "failureThreshold"),
        ({"failureThreshold": 2.5}, "failureThreshold"),
        ({"failureThreshold": True}, "failureThreshold"),
        ({"resetTimeout": 0}, "resetTimeout"),
        ({"resetTimeout": float("inf")}, "resetTimeout"),
        ({"resetTimeout": float("nan")}, "resetTimeout"),
        ({"resetTimeout": "1"}, "resetTimeout"),
        ({"maxResetTimeout": float("inf")}, "maxResetTimeout"),
        ({"backoffFactor": 0.5}, "backoffFactor"),
        ({"bufferSize": -1}, "bufferSize"),
        ({"bufferSize": 1.9}, "bufferSize"),
        ({"retryFailed": 1}, "retryFailed"),
        ({"maxAttempts": 0}, "maxAttempts"),
        # Too big for a float or for a deque's maxlen: refused, never an
        # OverflowError from the sink's constructor.
        ({"bufferSize": 10**400}, "bufferSize"),
        ({"bufferSize": 2**63}, "bufferSize"),
        ({"resetTimeout": 10**400}, "resetTimeout"),
        ({"maxAttempts": 10**400}, "maxAttempts"),
    ],
)
def test_nonsenseIsRefusedNamingTheSetting(settings: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{name}=.* is not valid; use "):
        Policy(**settings)
    with pytest.raises(ConfigurationError, match=rf"^{name}=.* is not valid; use "):
        SafeObserver(RecordingObserver(), **settings)


def test_maxResetTimeoutIsNeverBelowResetTimeout() -> None:
    assert Policy(resetTimeout=120).maxResetTimeout == 120
    assert Policy(resetTimeout=2, maxResetTimeout=30).maxResetTimeout == 30


def test_replace() -> None:
    policy = Policy(failureThreshold=3)
    changed = policy.replace(bufferSize=0)
    assert (changed.failureThreshold, changed.bufferSize) == (3, 0)
    assert policy.bufferSize == 1000
    with pytest.raises(TypeError, match="'bufer'"):
        policy.replace(bufer=3)  # type: ignore[call-arg]


def _makers() -> list[tuple[str, Any]]:
    return [
        (
            "SafeObserver()",
            lambda policy=None, **kw: SafeObserver(RecordingObserver(), policy, **kw),
        ),
        (
            "SafeHandler()",
            lambda policy=None, **kw: SafeHandler(logging.NullHandler(), policy, **kw),
        ),
    ]


@pytest.mark.parametrize(("caller", "make"), _makers())
def test_everySinkTakesAPolicyAndKeywordsOverIt(caller: str, make: Any) -> None:
    sink = make(Policy(failureThreshold=2, bufferSize=9), bufferSize=4)
    core = getattr(sink, "core", sink)
    assert core.policy == Policy(failureThreshold=2, bufferSize=4)
    assert core.breaker.failureThreshold == 2


@pytest.mark.parametrize(("caller", "make"), _makers())
def test_aTypoFailsWhereItIsMade(caller: str, make: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{caller}.*'failureTreshold'"):
        make(failureTreshold=3)


@pytest.mark.parametrize(("caller", "make"), _makers())
def test_nonsenseFailsWhereItIsMade(caller: str, make: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^resetTimeout=inf is not valid"):
        make(resetTimeout=float("inf"))


def test_installChecksItsArgumentsBeforeChangingAnything() -> None:
    publisher = LogPublisher()
    observer = RecordingObserver()
    publisher.addObserver(observer)
    addHandler = logging.Logger.addHandler
    try:
        with pytest.raises(TypeError, match=r"^install\(\).*'failureTreshold'"):
            install(publisher, failureTreshold=3)  # type: ignore[call-arg]
        with pytest.raises(ConfigurationError, match=r"^bufferSize=-1"):
            install(publisher, bufferSize=-1)
        assert publisher._observers == [observer]
        assert logging.Logger.addHandler is addHandler
    finally:
        uninstall(publisher)


def test_installGivesEveryWrapperThePolicy() -> None:
    publisher = LogPublisher()
    publisher.addObserver(RecordingObserver())
    try:
        install(publisher, stdlib=False, policy=Policy(bufferSize=3), failureThreshold=2)
        (wrapper,) = publisher._observers
        assert isinstance(wrapper, SafeObserver)
        assert wrapper.policy == Policy(bufferSize=3, failureThreshold=2)
    finally:
        uninstall(publisher)


def test_fileObserverTakesAPolicy(tmp_path: Any) -> None:
    observer = safeFileLogObserver(tmp_path / "x.log", policy=Policy(bufferSize=5))
    assert observer.policy.bufferSize == 5
    with pytest.raises(TypeError, match="'bufer'"):
        safeFileLogObserver(tmp_path / "y.log", bufer=5)

"""
Tests for the public fakes in L{twisted_safelog.testing}.
"""

from __future__ import annotations

import pytest
from twisted.logger import ILogObserver, LogPublisher
from zope.interface.verify import verifyObject

from twisted_safelog.testing import (
    FlakyObserver,
    RaisingObserver,
    RecordingObserver,
    ReentrantObserver,
    SlowObserver,
)

from .helpers import event


def test_allProvideILogObserver() -> None:
    for fake in (
        RecordingObserver(),
        RaisingObserver(),
        FlakyObserver([]),
        ReentrantObserver(LogPublisher()),
        SlowObserver(0),
    ):
        assert verifyObject(ILogObserver, fake)


def test_raisingObserverRaisesWhatItIsTold() -> None:
    fake = RaisingObserver(lambda: KeyError("k"))
    with pytest.raises(KeyError):
        fake(event())
    assert fake.calls == 1


def test_flakyObserverFollowsItsSchedule() -> None:
    fake = FlakyObserver([False, True, False], then=True)
    fake(event(0))
    with pytest.raises(OSError):
        fake(event(1))
    fake(event(2))
    with pytest.raises(OSError):
        fake(event(3))
    assert [e["n"] for e in fake.events] == [0, 2]
    assert (fake.calls, fake.failures) == (4, 2)


def test_reentrantObserverLogsIntoItsPublisher() -> None:
    publisher = LogPublisher()
    witness = RecordingObserver()
    publisher.addObserver(witness)
    ReentrantObserver(publisher)(event())
    assert len(witness.events) == 1


def test_slowObserverSleeps() -> None:
    slept: list[float] = []
    fake = SlowObserver(0.25, sleep=slept.append)
    fake(event())
    assert slept == [0.25]
    assert fake.calls == 1

"""
Tests for the hardened-sink interface and the weak registry of every
hardened sink in the process.
"""

from __future__ import annotations

import gc
import io
import logging
from typing import Any

import pytest
from twisted.logger import FileLogObserver
from zope.interface.verify import verifyObject

from twisted_safelog import (
    IHardenedSink,
    NonBlockingObserver,
    SafeHandler,
    SafeObserver,
    safeFileLogObserver,
)
from twisted_safelog._registry import hardenedSinks, isHardened
from twisted_safelog.testing import RecordingObserver

from .helpers import RecordingReporter


def _sinks(tmp_path: Any) -> list[Any]:
    reporter = RecordingReporter()
    return [
        SafeObserver(RecordingObserver(), reporter=reporter),
        SafeHandler(logging.NullHandler(), reporter=reporter),
        safeFileLogObserver(tmp_path / "r.log", reporter=reporter),
        NonBlockingObserver(RecordingObserver(), reporter=reporter),
    ]


def test_everyHardenedSinkProvidesTheInterface(tmp_path: Any) -> None:
    for sink in _sinks(tmp_path):
        assert isHardened(sink)
        assert verifyObject(IHardenedSink, sink)


def test_plainObserversAreNotHardened() -> None:
    assert not isHardened(RecordingObserver())
    assert not isHardened(FileLogObserver(io.StringIO(), str))


def test_theRegistryHoldsEverySinkWhoeverMadeIt(tmp_path: Any) -> None:
    sinks = _sinks(tmp_path)
    registered = hardenedSinks()
    for sink in sinks:
        core = sink.core if isinstance(sink, SafeHandler) else sink
        assert core in registered


@pytest.mark.parametrize("count", [200])
def test_theRegistryKeepsNothingAlive(count: int) -> None:
    gc.collect()
    before = len(hardenedSinks())
    for _ in range(count):
        SafeObserver(RecordingObserver(), reporter=RecordingReporter())
    gc.collect()
    assert len(hardenedSinks()) <= before


def test_aClosedSinkGivesItsNameBack() -> None:
    """
    Names tell live sinks apart ("#2"); a closed sink gives its name back,
    so making and closing sinks alike does not make the names grow.
    """
    kept = []
    for _ in range(50):
        sink = SafeObserver(RecordingObserver(), reporter=RecordingReporter())
        kept.append(sink)
        sink.close()
    assert {sink.name for sink in kept} == {kept[0].name}
    assert "#" not in kept[0].name

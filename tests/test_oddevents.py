"""
Odd events are logged as well as they can be and never raise, through every
part that formats or forwards them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from twisted.internet.task import Clock
from twisted.logger import LogPublisher

from twisted_safelog import (
    SafeObserver,
    StdlibObserver,
    TwistedHandler,
    formatJSONLine,
    formatTextLine,
    safeFileLogObserver,
)
from twisted_safelog.testing import RecordingObserver

from .helpers import ListHandler, RecordingReporter
from .strategies import events

odd = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def records() -> Iterator[ListHandler]:
    handler = ListHandler()
    logger = logging.getLogger("odd")
    logger.propagate = False
    logger.addHandler(handler)
    yield handler
    logger.handlers[:] = []


@given(event=events())
def test_formattersNeverRaise(event: dict[str, object]) -> None:
    text = formatTextLine(event)
    assert isinstance(text, str)
    line = formatJSONLine(event)
    assert line.endswith("\n") and "\n" not in line[:-1]


@odd
@given(event=events())
def test_stdlibObserverNeverRaisesAndTheRecordFormats(
    records: ListHandler, event: dict[str, object]
) -> None:
    records.records.clear()
    StdlibObserver("odd")(event)
    for record in records.records:
        assert isinstance(logging.Formatter().format(record), str)


@given(event=events())
def test_twistedHandlerRoundTripNeverRaises(event: dict[str, object]) -> None:
    received = RecordingObserver()
    handler = TwistedHandler(LogPublisher(received))
    record = logging.LogRecord(
        "odd", logging.INFO, "p", 1, event.get("log_format"), (event.get("value"),), None
    )
    handler.handle(record)
    assert len(received.events) == 1
    assert isinstance(received.events[0]["stdlib_message"], str)


@odd
@given(event=events())
def test_safeFileObserverWritesSomethingForEveryEvent(
    tmp_path: Path, event: dict[str, object]
) -> None:
    observer = safeFileLogObserver(
        tmp_path / "odd.log", format="json", reporter=RecordingReporter(), clock=Clock()
    )
    observer(event)
    stats = observer.stats()
    assert (stats.delivered, stats.failed) == (1, 0)
    observer.writer.close()


@given(event=events())
def test_safeObserverAroundAnythingNeverRaises(event: dict[str, object]) -> None:
    def picky(e: dict[str, object]) -> None:
        str(e["value"])

    safe = SafeObserver(picky, reporter=RecordingReporter(), clock=Clock())
    safe(event)
    assert safe.stats().balanced

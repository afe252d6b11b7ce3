"""
Hardening never reads an application object's C{__dict__}: on CPython 3.11
and 3.12 that moves the object's attributes out of its inline values into a
dict for good, and every later attribute access in its methods is slower (a
stdlib handler: about 5% more instructions a record). Whether an object's
attributes live in a dict shows in C{gc.get_referents}: the dict, or the
values themselves.
"""

from __future__ import annotations

import gc
import io
import logging
import logging.handlers
from pathlib import Path
from typing import Any

from twisted.logger import LogPublisher, textFileLogObserver

from twisted_safelog import SafeObserver, install
from twisted_safelog._handlers import hardenHandler
from twisted_safelog._hardening import hardeningOf
from twisted_safelog._instattrs import (
    attributeValues,
    instanceAttribute,
    removeInstanceAttribute,
    setInstanceAttribute,
)
from twisted_safelog._names import _where


def inADict(obj: object) -> bool:
    """
    Do C{obj}'s attributes live in a dict (its C{__dict__} was read, or the
    interpreter has no inline values: 3.10)?
    """
    return any(type(referent) is dict for referent in gc.get_referents(obj))


def test_hardeningAHandlerLeavesItsAttributesWhereTheyWere(tmp_path: Path) -> None:
    handler = logging.handlers.RotatingFileHandler(tmp_path / "app.log", maxBytes=10**6)
    before = inADict(handler)
    hardening = hardenHandler(handler)
    try:
        assert inADict(handler) == before
        assert hardeningOf(handler) is hardening
        assert handler.emit is hardening.core  # type: ignore[comparison-overlap]
        logging.getLogger("instattrs").handle(
            logging.LogRecord("instattrs", logging.INFO, __file__, 1, "a line", None, None)
        )
        handler.handle(logging.LogRecord("n", logging.INFO, __file__, 1, "line", None, None))
        assert inADict(handler) == before
    finally:
        hardening.undo()
        handler.close()
    assert inADict(handler) == before
    assert hardeningOf(handler) is None
    assert "emit" not in vars(handler)
    assert handler.emit.__func__ is logging.handlers.RotatingFileHandler.emit  # type: ignore[attr-defined]
    assert "line" in (tmp_path / "app.log").read_text()


def test_aHandlersOwnEmitIsKeptAndGivenBack(tmp_path: Path) -> None:
    """
    An C{emit} the application set on the instance is the one the
    hardening calls, and the one the handler has again after undo.
    """
    handler = logging.StreamHandler(io.StringIO())
    seen: list[str] = []

    def emit(record: logging.LogRecord) -> None:
        seen.append(record.getMessage())

    handler.emit = emit  # type: ignore[method-assign]
    hardening = hardenHandler(handler)
    handler.handle(logging.LogRecord("n", logging.INFO, __file__, 1, "mine", None, None))
    assert seen == ["mine"]
    hardening.undo()
    assert handler.emit is emit


def test_wrappingAnObserverLeavesItsAttributesWhereTheyWere(tmp_path: Path) -> None:
    with open(tmp_path / "text.log", "w") as f:
        observer = textFileLogObserver(f)
        before = inADict(observer)
        safe = SafeObserver(observer)
        assert inADict(observer) == before
        assert safe.name.endswith("text.log)")


def test_installAndUndoLeaveThePublishersAttributesWhereTheyWere() -> None:
    publisher = LogPublisher()
    before = inADict(publisher)
    installation = install(publisher, stdlib=False)
    installation.undo()
    assert inADict(publisher) == before
    assert "addObserver" not in vars(publisher)


class _Thing:
    def method(self) -> None:
        pass

    @staticmethod
    def static() -> None:
        pass

    @classmethod
    def klass(cls) -> None:
        pass

    @property
    def broken(self) -> Any:
        raise RuntimeError("no")

    value = 3


def test_instanceAttributeTellsTheInstancesOwnFromTheClasses() -> None:
    thing = _Thing()
    for name in ("method", "static", "klass", "value", "broken", "missing"):
        assert instanceAttribute(thing, name) is None, name

    def own() -> None:
        pass

    setInstanceAttribute(thing, "method", own)
    setInstanceAttribute(thing, "value", 4)
    setInstanceAttribute(thing, "extra", "x")
    assert instanceAttribute(thing, "method") is own
    assert instanceAttribute(thing, "value") == 4
    assert instanceAttribute(thing, "extra") == "x"
    # The class's own method, bound to another instance, is not the class's
    # for this one.
    other = _Thing().method
    setInstanceAttribute(thing, "static", other)
    assert instanceAttribute(thing, "static") is other
    for name in ("method", "value", "extra", "static", "never-set"):
        removeInstanceAttribute(thing, name)
    assert thing.value == 3
    for name in ("method", "static", "value", "extra"):
        assert instanceAttribute(thing, name) is None, name


def test_attributeValuesFindsTheValuesWithoutTheDict() -> None:
    thing = _Thing()
    stream = io.StringIO()
    thing.__setattr__("stream", stream)
    thing.__setattr__("count", 7)
    before = inADict(thing)
    values = attributeValues(thing)
    assert any(v is stream for v in values)
    assert 7 in values
    assert _Thing not in values
    assert inADict(thing) == before
    assert len(attributeValues(thing, limit=1)) == 1


def test_whereStillFindsAWrappedFile(tmp_path: Path) -> None:
    """
    The name of the file a sink writes to is found through its attribute
    values, one wrapped object deep.
    """
    with open(tmp_path / "deep.log", "w") as f:

        class Inner:
            def __init__(self) -> None:
                self.out = f

        class Outer:
            def __init__(self) -> None:
                self.inner = Inner()

        assert _where(Outer()) == str(tmp_path / "deep.log")
        assert _where(Outer(), depth=1) is None

"""
Hardening never reads an application object's C{__dict__}: on CPython 3.11
and 3.12 that moves the object's attributes out of its inline values into a
dict for good, and every later attribute access in its methods is slower (a
stdlib handler: about 5% more instructions a record). Whether an object's
attributes live in a dict shows in C{gc.get_referents}: the dict, or the
values themselves.
"""

from __future__ import annotations

import functools
import gc
import io
import logging
import logging.handlers
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest
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


class _PartialEmit:
    """
    A class-based decorator whose C{__get__} makes a new callable at each
    lookup, as many do.
    """

    def __init__(self, function: Any) -> None:
        self.function = function

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        return functools.partial(self.function, obj)


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def _emit(self, record: logging.LogRecord, tag: str = "") -> None:
        self.seen.append(tag + record.getMessage())


class _PartialMethodEmit(_Seen):
    emit = functools.partialmethod(_Seen._emit, tag="pm:")  # type: ignore[assignment]


class _SingleDispatchEmit(_Seen):
    @functools.singledispatchmethod
    def emit(self, record: logging.LogRecord) -> None:
        self._emit(record, "sd:")


class _DecoratedEmit(_Seen):
    @_PartialEmit
    def emit(self, record: logging.LogRecord) -> None:
        self._emit(record, "deco:")


def _line(message: str) -> logging.LogRecord:
    return logging.LogRecord("n", logging.INFO, __file__, 1, message, None, None)


@pytest.mark.parametrize("kind", [_PartialMethodEmit, _SingleDispatchEmit, _DecoratedEmit])
def test_aClassEmitMadeAnewAtEachLookupIsTheClasses(kind: type[_Seen]) -> None:
    """
    A class's C{emit} whose descriptor makes a new callable at each lookup
    (a C{functools.partialmethod}, a C{singledispatchmethod}, a decorator's
    C{__get__}) is not taken for the instance's own: the hardening does not
    hold the handler (dropped, it is collected), and undo leaves no C{emit}
    on the instance.
    """
    handler = kind()
    hardening = hardenHandler(handler)
    handler.handle(_line("one"))
    assert handler.seen[0].endswith("one") and hardening.stats().delivered == 1
    hardening.undo()
    assert "emit" not in vars(handler)
    handler.handle(_line("two"))
    assert len(handler.seen) == 2

    if kind is _SingleDispatchEmit and sys.version_info >= (3, 13):
        # Its own per-instance cache keeps every handler it was looked up
        # on alive there, hardened or not.
        return
    dropped = kind()
    hardenHandler(dropped)
    ref = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert ref() is None


class _PropertyEmit(_Seen):
    @property
    def emit(self) -> Any:  # type: ignore[override]
        return self._emit


class _SlotEmit(_Seen):
    __slots__ = ("emit",)

    def __init__(self) -> None:
        super().__init__()
        self.emit = self._emit  # type: ignore[method-assign]


@pytest.mark.parametrize("kind", [_PropertyEmit, _SlotEmit])
def test_anEmitNoInstanceAttributeHidesIsLeftAlone(kind: type[_Seen]) -> None:
    """
    A class's C{emit} that is a property or a slot cannot be hidden by an
    instance attribute: hardening leaves it working (its C{handleError} is
    still hardened), and undo does not remove it.
    """
    handler = kind()
    hardening = hardenHandler(handler)
    assert hardeningOf(handler) is hardening
    handler.handle(_line("one"))
    hardening.undo()
    handler.handle(_line("two"))
    assert handler.seen == ["one", "two"]


class _Callable:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


_static: list[str] = []


class _StaticEmit(logging.Handler):
    @staticmethod
    def emit(record: logging.LogRecord) -> None:  # type: ignore[override]
        _static.append(record.getMessage())


class _ClassEmit(logging.Handler):
    @classmethod
    def emit(cls, record: logging.LogRecord) -> None:  # type: ignore[override]
        _static.append(f"{cls.__name__}:{record.getMessage()}")


class _CallableEmit(logging.Handler):
    emit = _Callable()  # type: ignore[assignment]


def test_aStaticClassOrCallableEmitIsCalledAsTheHandlerWould() -> None:
    """
    The class's C{emit} is called as the handler's own lookup gives it: a
    static method or a callable object with the record alone, a class
    method with its class; each record is delivered, none fails.
    """
    del _static[:]
    for kind in (_StaticEmit, _ClassEmit, _CallableEmit):
        handler = kind()
        hardening = hardenHandler(handler)
        try:
            handler.handle(_line(kind.__name__))
            assert hardening.stats().delivered == 1, kind
            assert hardening.stats().failed == 0, kind
        finally:
            hardening.undo()
    assert _static == ["_StaticEmit", "_ClassEmit:_ClassEmit"]
    assert _CallableEmit.emit.seen == ["_CallableEmit"]  # type: ignore[attr-defined]


def test_whereLooksAtADictAttributeAsOneValue(tmp_path: Path) -> None:
    """
    A dict held in an attribute (a table of files, say) is one attribute
    value, not the object's attributes: whether they are inline values
    (3.11 and later) or in a dict (3.10), the file inside it is not taken
    for the one the sink writes to, and its values are not all copied.
    """
    with open(tmp_path / "table.log", "w") as f:

        class Sink:
            def __init__(self) -> None:
                self.table = {"k": f}

        sink = Sink()
        before = inADict(sink)
        assert _where(sink) is None
        assert any(v is sink.table for v in attributeValues(sink))
        assert inADict(sink) == before

# -*- test-case-name: tests.test_install -*-
"""
C{install()} / C{uninstall()}: harden a whole process's logging in place.

Every observer already on a L{LogPublisher} (the global one by default) is
wrapped in a L{SafeObserver}, and so is every observer added later; every
stdlib handler already attached is hardened in place (the same object stays
in C{logger.handlers}; see L{HandlerHardening}), and so is every handler
attached later. C{removeObserver(original)} keeps working, and L{uninstall}
puts everything back as it was.
"""

from __future__ import annotations

import logging
import logging.handlers
import threading
import weakref
from typing import TYPE_CHECKING, Any

from twisted.logger import ILogObserver, LogPublisher, globalLogPublisher

from ._accounting import accountAll, watchReactor
from ._breaker import IClock
from ._handlers import HandlerHardening, hardenHandler, hardenHandlers, needsHardening
from ._hardening import checkCollaborators
from ._instattrs import removeInstanceAttribute
from ._policy import Policy
from ._registry import isHardened, unregister
from ._report import IReporter
from ._safe import SafeObserver

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = ["Installation", "install", "installed", "uninstall"]

_lock = threading.RLock()
_installations: dict[int, Installation] = {}


class Installation:
    """
    twisted-safelog installed on one publisher: the wrappers it made, so
    that removal by the original works and L{uninstall} can undo it.

    @param publisher: the publisher it is installed on.
    @param arguments: the L{SafeObserver} arguments every wrapper gets.
    """

    def __init__(self, publisher: LogPublisher, arguments: dict[str, Any]) -> None:
        self.publisher = publisher
        self.arguments = arguments
        # id(original) -> (original, wrapper); originals are kept alive here
        # so their ids cannot be reused while installed.
        self.wrappers: dict[int, tuple[ILogObserver, SafeObserver]] = {}
        self._originalAdd = publisher.addObserver
        self._originalRemove = publisher.removeObserver

    def __repr__(self) -> str:
        return f"<Installation on {self.publisher!r}: {len(self.wrappers)} observers wrapped>"

    def wrap(self, observer: ILogObserver) -> ILogObserver:
        """
        The hardened form of C{observer} (itself if it already is).

        The L{SafeObserver} for C{observer} (made once, then reused).

        @param observer: an observer being added to the publisher.
        """
        if isHardened(observer):
            return observer
        entry = self.wrappers.get(id(observer))
        if entry is not None:
            return entry[1]
        wrapper = SafeObserver(observer, **self.arguments)
        self.wrappers[id(observer)] = (observer, wrapper)
        return wrapper

    def addObserver(self, observer: ILogObserver) -> None:
        """
        Replaces the publisher's C{addObserver}: add the hardened form.

        The publisher's C{addObserver} while installed: adds C{observer} wrapped.

        @param observer: the observer the application adds.
        """
        watchReactor()
        with _lock:
            self._originalAdd(self.wrap(observer))

    def removeObserver(self, observer: ILogObserver) -> None:
        """
        Replaces the publisher's C{removeObserver}: removing the original
        removes its wrapper.

        The publisher's C{removeObserver} while installed: removes C{observer}'s wrapper (or
        C{observer}).

        @param observer: the observer the application added (or its wrapper).
        """
        with _lock:
            entry = self.wrappers.pop(id(observer), None)
            if entry is not None and entry[0] is observer:
                self._originalRemove(entry[1])
            else:
                self._originalRemove(observer)
                entry = None
        if entry is not None:
            _retire(entry[1])

    def apply(self) -> None:
        """
        Wrap the observers already on the publisher and take over its C{addObserver} and
        C{removeObserver}.
        """
        observers = self.publisher._observers
        for index, observer in enumerate(list(observers)):
            observers[index] = self.wrap(observer)
        self.publisher.addObserver = self.addObserver  # type: ignore[method-assign]
        self.publisher.removeObserver = self.removeObserver  # type: ignore[method-assign]

    def close(self) -> None:
        """
        At shutdown: account every hardened sink in the process, not only
        this installation's (L{accountAll}): replay what each breaker
        allows, then count and report what is still buffered (reason
        C{"shutdown"}). The sinks keep working afterwards.
        """
        accountAll()

    def undo(self) -> None:
        """
        Put the publisher back exactly as it was: the original observers, its own methods.
        """
        originals = {id(w): o for o, w in self.wrappers.values()}
        observers = self.publisher._observers
        for index, observer in enumerate(list(observers)):
            observers[index] = originals.get(id(observer), observer)
        for name in ("addObserver", "removeObserver"):
            removeInstanceAttribute(self.publisher, name)
        retired = [wrapper for _, wrapper in self.wrappers.values()]
        self.wrappers.clear()
        for wrapper in retired:
            _retire(wrapper)


def _retire(wrapper: SafeObserver) -> None:
    """
    A wrapper install() made is off its publisher: count and report what it
    still held (nothing else will deliver it), and take it out of
    L{status}. Under twistd this is Twisted's LogBeginner buffer, removed as
    soon as logging begins, which operators saw as "LogPublisher".
    """
    try:
        wrapper.close()
    except Exception:
        # close() is contained; this is belt and braces for odd subclasses.
        pass
    unregister(wrapper)


# -- stdlib handlers attached later --------------------------------------------

_originalAddHandler = logging.Logger.addHandler
_handlerArguments: dict[str, Any] = {}
#: The hardenings install() made, held weakly: each dies with its handler.
_installHardened: weakref.WeakSet[HandlerHardening] = weakref.WeakSet()


def _addHandler(self: logging.Logger, hdlr: logging.Handler) -> None:
    # Harden the handler object itself, in place, and attach that very
    # object: `hdlr in logger.handlers` stays true, removeHandler(hdlr)
    # needs no help.
    if needsHardening(hdlr):
        _installHardened.add(hardenHandler(hdlr, **_handlerArguments))
    _originalAddHandler(self, hdlr)


def _hardenBehind(handlers: Any) -> None:
    # Handlers no logger holds, that a QueueListener or a MemoryHandler
    # delivers to: hardened in place the first time a record goes their way.
    for handler in handlers:
        if isinstance(handler, logging.Handler) and needsHardening(handler):
            _installHardened.add(hardenHandler(handler, **_handlerArguments))


_originalListenerHandle = logging.handlers.QueueListener.handle
_originalMemoryFlush = logging.handlers.MemoryHandler.flush


def _listenerHandle(self: logging.handlers.QueueListener, record: logging.LogRecord) -> None:
    _hardenBehind(self.handlers)
    _originalListenerHandle(self, record)


def _memoryFlush(self: logging.handlers.MemoryHandler) -> None:
    if self.target is not None:
        _hardenBehind((self.target,))
    _originalMemoryFlush(self)


def _patchStdlib(arguments: dict[str, Any]) -> None:
    _handlerArguments.clear()
    _handlerArguments.update(arguments)
    for hardening in hardenHandlers(**arguments):
        _installHardened.add(hardening)
    logging.Logger.addHandler = _addHandler  # type: ignore[method-assign]
    logging.handlers.QueueListener.handle = _listenerHandle  # type: ignore[method-assign]
    logging.handlers.MemoryHandler.flush = _memoryFlush  # type: ignore[method-assign,assignment]


def _unpatchStdlib() -> None:
    logging.Logger.addHandler = _originalAddHandler  # type: ignore[method-assign]
    logging.handlers.QueueListener.handle = _originalListenerHandle  # type: ignore[method-assign]
    logging.handlers.MemoryHandler.flush = _originalMemoryFlush  # type: ignore[method-assign]
    for hardening in list(_installHardened):
        hardening.undo()
    _installHardened.clear()


# -- public ----------------------------------------------------------------------


def install(
    publisher: LogPublisher | None = None,
    *,
    stdlib: bool = True,
    policy: Policy | None = None,
    reporter: IReporter | None = None,
    clock: IClock | None = None,
    **settings: Unpack[PolicySettings],
) -> Installation:
    """
    Harden C{publisher} (the global one by default): wrap every observer on
    it, now and later, in a L{SafeObserver}; with C{stdlib=True}, harden
    every stdlib handler, attached now or later, in place.

    Calling it again on the same publisher returns the existing installation
    and changes nothing.

    @param publisher: the publisher to harden (the global one if L{None}).
    @param stdlib: harden stdlib logging's handlers too.
    @param policy: the hardening settings every wrapper gets (L{Policy});
        keyword C{settings} (C{failureThreshold=3}, ...) override its
        fields. Checked here: an unknown setting is a C{TypeError}, a
        nonsensical value a L{ConfigurationError}.
    @param reporter: where every wrapper reports (the default reporter if
        L{None}).
    @param clock: every wrapper's breaker clock (monotonic if L{None}).
    @param settings: L{Policy} fields, overriding C{policy}'s.
    """
    if publisher is None:
        publisher = globalLogPublisher
    if not isinstance(publisher, LogPublisher):
        raise TypeError(f"install(): publisher must be a LogPublisher, not {publisher!r}")
    if not isinstance(stdlib, bool):
        raise TypeError(f"install(): stdlib must be True or False, not {stdlib!r}")
    checkCollaborators("install()", reporter=reporter, clock=clock)
    safeArguments: dict[str, Any] = {"policy": Policy.of(policy, settings, "install()")}
    if reporter is not None:
        safeArguments["reporter"] = reporter
    if clock is not None:
        safeArguments["clock"] = clock
    watchReactor()
    with _lock:
        existing = _installations.get(id(publisher))
        if existing is not None:
            return existing
        installation = Installation(publisher, dict(safeArguments))
        installation.apply()
        _installations[id(publisher)] = installation
        if stdlib and not _hardenedStdlib():
            _patchStdlib(safeArguments)
            _stdlibOwner[0] = id(publisher)
        return installation


_stdlibOwner: list[int | None] = [None]


def _hardenedStdlib() -> bool:
    return logging.Logger.addHandler is _addHandler


def installed(publisher: LogPublisher | None = None) -> Installation | None:
    """
    The installation on C{publisher} (the global one by default), if any.

    @param publisher: a publisher (the global one if L{None}).
    @return: the L{Installation} on C{publisher}, or L{None}.
    """
    return _installations.get(id(globalLogPublisher if publisher is None else publisher))


def uninstall(publisher: LogPublisher | None = None) -> None:
    """
    Undo L{install} on C{publisher}: the publisher gets its original
    observers back, in order, and its own C{addObserver}/C{removeObserver};
    stdlib handlers hardened by that installation are put back. Harmless if
    nothing is installed.

    @param publisher: a publisher (the global one if L{None}).
    """
    if publisher is None:
        publisher = globalLogPublisher
    with _lock:
        installation = _installations.pop(id(publisher), None)
        if installation is None:
            return
        installation.undo()
        if _stdlibOwner[0] == id(publisher):
            _unpatchStdlib()
            _stdlibOwner[0] = None

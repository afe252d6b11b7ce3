# -*- test-case-name: tests.test_safe -*-
"""
L{SafeObserver}: an L{ILogObserver} around any observer that can neither
raise into its publisher, nor be re-entered by what it causes, nor cost much
once it is broken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.logger import ILogObserver, LegacyLogObserverWrapper, LogEvent
from twisted.python import log as legacyLog
from zope.interface import implementer

from ._breaker import IClock
from ._hardened import HardenedSink
from ._policy import DEFAULT_BUFFER_SIZE, Policy
from ._registry import isHardened
from ._repeats import EVENTS
from ._report import IReporter, defaultReporter, describe, uniqueName

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._policy import PolicySettings

__all__ = ["DEFAULT_BUFFER_SIZE", "HardenedSink", "SafeObserver"]


def _isLegacyObserver(observer: object) -> bool:
    """
    Is C{observer} a L{twisted.python.log} observer that expects old-style
    event dicts? New-style observers and anything undeclared are not.
    """
    if ILogObserver.providedBy(observer):
        return False
    if legacyLog.ILogObserver.providedBy(observer):
        return True
    owner = getattr(observer, "__self__", None)
    return isinstance(owner, legacyLog._GlobalStartStopObserver)


@implementer(ILogObserver)
class SafeObserver(HardenedSink[LogEvent]):
    """
    An L{ILogObserver} around any observer, with every guarantee of
    L{HardenedSink}: it never raises into its publisher (so Twisted's
    "Temporarily disabling observer" re-emission never happens), it is never
    re-entered by what it causes, and once broken it is quarantined, its
    events buffered for replay, and the breakage reported out of band.
    The parameters not listed here are L{HardenedSink}'s.

    @param observer: a new-style L{ILogObserver}, or a legacy
        L{twisted.python.log} observer (detected, or forced with
        C{legacy=True}), which is adapted with L{LegacyLogObserverWrapper}.
    @param fallback: an observer that also receives the events this one
        cannot take (quarantined or failed); it is wrapped in a
        L{SafeObserver} of its own (same policy, no buffer) unless it is one.
    @param legacy: C{True} to adapt C{observer} as a legacy observer, C{False} never to, L{None} to
        detect it.
    """

    def __init__(
        self,
        observer: ILogObserver | Callable[[LogEvent], None],
        policy: Policy | None = None,
        *,
        name: str | None = None,
        fallback: ILogObserver | Callable[[LogEvent], None] | None = None,
        reporter: IReporter | None = None,
        clock: IClock | None = None,
        legacy: bool | None = None,
        **settings: Unpack[PolicySettings],
    ) -> None:
        if not callable(observer):
            raise TypeError(f"SafeObserver needs a callable observer, not {observer!r}")
        policy = Policy.of(policy, settings, "SafeObserver()")
        if legacy or (legacy is None and _isLegacyObserver(observer)):
            observer = LegacyLogObserverWrapper(observer)  # type: ignore[arg-type]
        self.observer = observer
        name = name if name is not None else uniqueName(describe(observer), self)
        reporter = defaultReporter() if reporter is None else reporter
        if fallback is not None and not isHardened(fallback):
            fallback = SafeObserver(
                fallback,
                policy.replace(bufferSize=0),
                name=f"{name} (fallback)",
                reporter=reporter,
                clock=clock,
            )
        super().__init__(
            observer,
            policy,
            name=name,
            fallback=fallback,
            reporter=reporter,
            clock=clock,
            identity=EVENTS,
        )

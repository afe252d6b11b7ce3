# -*- test-case-name: tests.test_repeats -*-
"""
Telling a feedback loop from a flood, for L{twisted_safelog._repeats}: a
loop's copies stop when its deliveries stop, a flood's go on regardless. An
event whose held-back copies all came right after a delivered one and then
stopped is suspected (L{FeedbackLoops._suspect}); the delivery of its
summary tests it, and if that brings a copy back (one, or a few: an echo of
the delivery) the sink feeds itself (L{FeedbackLoops._judge}), which is said
once, out of band (L{FeedbackLoops.loopFound}).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from ._identity import Identity

__all__ = ["ECHO_SLACK", "FeedbackLoops", "Repeating"]

T = TypeVar("T")

#: Copies a feedback loop may still have in flight (queued for a pool
#: thread, say) once its deliveries stop; more than that, or copies that
#: come later than a quarter of the interval after a delivered one, make a
#: flood (and no feedback loop is suspected).
ECHO_SLACK = 64
#: The most copies one delivery of a summary may cause for its event's
#: feedback loop to be confirmed (an echo of each delivery: one, or a few).
_MAX_ECHOES = 8
#: Feedback loops said per sink (each once).
_MAX_LOOP_REPORTS = 8


class Repeating:
    """
    One event that repeats at more than the allowance: its copies this
    interval, those held back since the last summary, and what tells a
    feedback loop from a flood.
    """

    __slots__ = (
        "copies",
        "delivered",
        "floodLike",
        "item",
        "lastAdmitted",
        "lastArrival",
        "loop",
        "name",
        "probeAt",
        "probeCopies",
        "reported",
        "seen",
        "since",
        "suppressed",
        "text",
        "total",
    )

    def __init__(self, item: object, name: tuple[Any, Any, str], copies: int, now: float) -> None:
        self.item = item
        self.name = name
        self.text = name[2]
        self.copies = copies
        self.seen = copies
        self.total = copies
        self.delivered = copies
        self.suppressed = 0
        self.floodLike = 0
        self.loop = False
        #: When the summary that tests for a feedback loop was delivered
        #: (L{None}: none is being tested), and the copies since.
        self.probeAt: float | None = None
        self.probeCopies = 0
        #: A feedback loop confirmed, not yet said.
        self.reported = True
        self.since = now
        self.lastAdmitted = now
        self.lastArrival = now


class FeedbackLoops(Generic[T]):
    """
    The feedback-loop judgement of L{twisted_safelog._repeats.RepeatFilter}
    (a mixin: the attributes below are the filter's).
    """

    name: str
    identity: Identity[T]
    _lock: Any
    _loopsReported: set[Hashable]
    _echoWindow: float
    _report: Callable[[str], object]

    def _judge(self, key: Repeating) -> None:
        """
        The summary that tested C{key} for a feedback loop was delivered an
        echo window ago: if it caused a copy again (one, or a few: an echo
        of the delivery), the sink feeds itself; none (the burst was over)
        or many (a new burst) is no loop.
        """
        if 1 <= key.probeCopies <= _MAX_ECHOES:
            key.loop = True
            key.reported = False
        key.probeAt = None
        key.probeCopies = 0

    def _suspect(self, key: Repeating, now: float) -> bool:
        """
        A feedback loop stops when its copies stop being delivered; a flood
        goes on regardless. Suspect one (to be confirmed by the echo of the
        summary: L{_judge}) if every held-back copy came right after a
        delivered one and then they stopped.
        """
        if key.loop or key.probeAt is not None:
            return False
        if key.floodLike or now - key.lastArrival < self._echoWindow:
            key.floodLike = 0
            return False
        return True

    def loopFound(
        self, name: Hashable, text: str, total: int, delivered: int, how: str = "mark"
    ) -> None:
        """
        Say once, out of band, that this sink is feeding itself.
        """
        with self._lock:
            if name in self._loopsReported or len(self._loopsReported) >= _MAX_LOOP_REPORTS:
                return
            self._loopsReported.add(name)
        shown = text if len(text) <= 120 else text[:117] + "..."
        if how == "burst":
            line = (
                f"sink {self.name} is receiving a burst of identical events caused "
                f"during its own deliveries (likely feedback loop): {total} copies of "
                f"{shown!r}, {delivered} delivered, the rest held back (repeated)"
            )
        else:
            line = (
                f"sink {self.name} received an event caused by its own delivery on "
                f"another thread (feedback loop); such events are dropped (reentry): "
                f"{shown!r}"
            )
        self._report(line)

    def echo(self, item: T) -> None:
        """
        C{item} bore this sink's delivery mark: say so, once.
        """
        try:
            name = self.identity.fine(item)
        except Exception:
            name = ("?", "?", "<an event that cannot be rendered>")
        self.loopFound(name, name[2], 1, 0, "mark")

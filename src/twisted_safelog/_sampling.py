# -*- test-case-name: tests.test_repeats -*-
"""
Sampling, for L{twisted_safelog._repeats.RepeatFilter}: once a sink has had
more than its allowance in an interval, a sample of its events (about
L{SAMPLES} per interval, more in the first) is counted; an event seen
often enough in the sample is watched from then on (every event is then
compared with it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

from ._feedback import Repeating
from ._identity import Identity
from ._summarytimer import ITimed, summaryTimer

__all__ = ["FIRST_SAMPLES", "MAX_SAMPLES", "SAMPLES", "Sampling"]

T = TypeVar("T")

#: Samples taken per interval while a sink is above its burst allowance.
SAMPLES = 64
#: Samples taken at each stride in the first interval (the stride doubles
#: after them: a busy stream of distinct lines pays for a few hundred
#: samples, once).
FIRST_SAMPLES = 16
#: Distinct samples remembered per interval (the table is cleared when full).
MAX_SAMPLES = 4 * SAMPLES
#: Repeating events followed at once per sink; more are not suppressed.
_MAX_SUSPECTS = 64
#: The widest first-interval stride.
_MAX_STRIDE = 1 << 14


class Sampling(Generic[T]):
    """
    The sampling of L{twisted_safelog._repeats.RepeatFilter} (a mixin: the
    attributes below are the filter's).
    """

    burst: int
    identity: Identity[T]
    _position: Callable[[], int]
    _looked: int
    _lastSample: int
    _sliceStart: int
    _samples: dict[Hashable, list[int]]
    _step: int
    _taken: int
    _measured: bool
    _stride: int
    _jitter: Callable[[int, int], int]
    _repeating: dict[Hashable, dict[Hashable, Repeating]]

    def _sample(self, item: T, now: float) -> None:
        """
        Count a sample of C{item}; seen often enough, it is watched from now
        on.
        """
        tick = self._position() + self._looked
        # The items this sample stands for: those since the last one.
        weight = max(1, tick - max(self._lastSample, self._sliceStart))
        self._lastSample = tick
        try:
            coarse = self.identity.coarse(item)
            hash(coarse)
            fine = self.identity.fine(item)
            counts = self._samples.get(fine)
        except Exception:
            return
        if counts is None:
            if len(self._samples) >= MAX_SAMPLES:
                self._samples.clear()
            counts = self._samples[fine] = [0, 0]
        counts[0] += 1
        # No sample vouches for more than a step's worth of copies: where
        # samples are far apart, two that hit a few copies close together
        # must not pass for hundreds.
        counts[1] += min(weight, self._step)
        seen, copies = counts
        self._taken = taken = self._taken + 1
        if not self._measured and taken % FIRST_SAMPLES == 0:
            self._stride = min(self._stride * 2, _MAX_STRIDE)
        # Its copies this interval so far, estimated from the samples that
        # were this event, each standing for the items since the one before
        # (at most a step's worth; the samples are spread over the whole
        # interval, so copies close together are not taken for many). The
        # estimate only decides that it is watched; only the copies seen (the
        # samples) count against its allowance: an estimate that overshoots
        # would hold back copies of an event under the allowance.
        copies = min(copies, tick - self._sliceStart)
        if (
            seen >= 2
            and copies * 2 > self.burst
            and sum(len(b) for b in self._repeating.values()) < _MAX_SUSPECTS
        ):
            # The same event twice in a sample of this interval, and often
            # enough to reach the allowance: watch every item from now on.
            # (Not one already watched is forgotten to make room: its
            # held-back copies would never be summarised.)
            key = Repeating(item, fine, seen, now)
            self._repeating.setdefault(coarse, {})[fine] = key
            del self._samples[fine]
            # Its summary is delivered when the interval ends, even if
            # nothing else comes.
            # (self is the RepeatFilter, which the timer ticks.)
            summaryTimer.schedule(cast(ITimed, self))

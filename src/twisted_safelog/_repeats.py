# -*- test-case-name: tests.test_repeats -*-
"""
Identical-event suppression: the bound on loops that no per-thread guard
sees (a sink whose pool thread logs back) and on floods of one line (an
application stuck in a retry loop), in the manner of syslog's "last message
repeated N times".

Two events are identical when their namespace (logger name), level and
rendered text are the same; their times are not compared. When more than
C{burst} identical events reach a sink within C{interval} seconds, further
copies are not delivered but counted (drop reason C{"repeated"}), and one
summary event, "repeated N times: <text>", is delivered in their place at
the end of each interval in which copies were held back. Distinct events are
never held back.

What it costs: a healthy sink pays one comparison per event (the count of
events it has delivered, which it keeps anyway, against
L{RepeatFilter.gate}). Only once a sink has had more than C{burst} events in
an interval is anything looked at, and then only a sample of them (about 64 per interval) until two
samples are the same event; only while such an event repeats is every event
compared, and then first by its format, so that rendering is needed only for
events that share a format with the repeating one.

While an event repeats, deliveries to the sink are made inside a delivery
mark carried by C{contextvars} and by L{twisted.python.context} (which
C{twisted.internet.threads.deferToThread} carries to its pool thread): an
event that arrives bearing the sink's own mark was caused by delivering to
it, on whatever thread, and is dropped as a reentry, as the per-thread guard
does. The burst bound is the backstop where no mark travels (a plain
C{ThreadPoolExecutor}).
"""

from __future__ import annotations

import logging
import random
import string
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

from twisted.logger import LogEvent, LogLevel, formatEvent
from twisted.python import context

from ._breaker import IClock, MonotonicClock

__all__ = [
    "DELIVER",
    "ECHO",
    "EVENTS",
    "MARKED",
    "SUPPRESS",
    "RECORDS",
    "Identity",
    "RepeatFilter",
    "deliverMarked",
]

T = TypeVar("T")

#: What L{RepeatFilter.check} says to do with an item.
DELIVER, SUPPRESS, MARKED, ECHO = 0, 1, 2, 3

#: Samples taken per interval while a sink is above its burst allowance.
_SAMPLES = 64
#: Distinct samples remembered per interval (the table is cleared when full).
_MAX_SAMPLES = 4 * _SAMPLES
#: Repeating events followed at once per sink; more are not suppressed.
_MAX_SUSPECTS = 64
#: Copies a feedback loop may still have in flight (queued for a pool
#: thread, say) once its deliveries stop; more than that, or copies that
#: come later than a quarter of the interval after a delivered one, make a
#: flood.
_ECHO_SLACK = 64
#: Feedback loops said per sink (each once).
_MAX_LOOP_REPORTS = 8

_NEVER = 1 << 63
#: The widest first-interval stride.
_MAX_STRIDE = 1 << 14

_CONTEXT_KEY = "twisted_safelog.delivering"
_delivering: ContextVar[tuple[object, ...]] = ContextVar("twisted_safelog_delivering", default=())


def deliverMarked(owner: object, sink: Callable[[T], object], item: T) -> None:
    """
    Call C{sink(item)} inside a mark that says "delivering to C{owner}",
    visible to anything the call causes on this thread, and on other threads
    that carry C{contextvars} or L{twisted.python.context} (C{deferToThread}).
    """
    marks = _delivering.get()
    token = _delivering.set((*marks, owner))
    try:
        outer = context.get(_CONTEXT_KEY) or ()  # type: ignore[no-untyped-call]
        context.call({_CONTEXT_KEY: (*outer, owner)}, sink, item)  # type: ignore[no-untyped-call]
    finally:
        _delivering.reset(token)


def _unmarked(call: Callable[[T], object], item: T) -> None:
    """
    Call C{call(item)} outside every delivery mark.
    """
    token = _delivering.set(())
    try:
        context.call({_CONTEXT_KEY: None}, call, item)  # type: ignore[no-untyped-call]
    finally:
        _delivering.reset(token)


def _markedBy(owner: object) -> bool:
    """
    Was the calling code caused by a delivery to C{owner}?
    """
    if owner in _delivering.get():
        return True
    marks = context.get(_CONTEXT_KEY)  # type: ignore[no-untyped-call]
    return marks is not None and owner in marks


class Identity(Protocol[T]):
    """
    How a kind of item (Twisted events, stdlib records) is told apart and
    summarised.
    """

    def coarse(self, item: T) -> Hashable:
        """
        A cheap key that identical items share (namespace, level, format);
        may raise, and then the item is never suppressed.
        """

    def fine(self, item: T) -> tuple[Any, Any, str]:
        """
        (namespace, level, rendered text): equal for identical items only;
        may raise, and then the item is never suppressed.
        """

    def quick(self, item: T) -> Hashable | None:
        """
        A key that, if equal for two items, makes their L{fine} keys equal
        too, found without rendering (the format and the plain values it
        refers to); L{None} if there is none. May raise.
        """

    def summary(self, item: T, text: str, count: int) -> T:
        """
        The item that stands for C{count} held-back copies of C{item}.
        """


#: Values whose rendering depends on nothing but their type and value.
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})
_MISSING = object()
_formatter = string.Formatter()
_fields: dict[str, tuple[str, ...] | None] = {}


def _fieldNames(form: str) -> tuple[str, ...] | None:
    """
    The fields a format refers to, if each is a plain name (not an attribute,
    an index or a call, whose rendering can change while the value stays the
    same object); L{None} otherwise. Cached, boundedly.
    """
    try:
        return _fields[form]
    except KeyError:
        pass
    names: tuple[str, ...] | None
    try:
        found = [field for _, field, _, _ in _formatter.parse(form) if field is not None]
        names = tuple(found) if all(f.isidentifier() for f in found) else None
    except ValueError:
        names = None
    if len(_fields) >= 1024:
        _fields.clear()
    _fields[form] = names
    return names


class EventIdentity:
    """
    L{Identity} of Twisted log events.
    """

    def coarse(self, item: LogEvent) -> Hashable:
        return (item.get("log_namespace"), item.get("log_level"), item.get("log_format"))

    def fine(self, item: LogEvent) -> tuple[Any, Any, str]:
        text = formatEvent(item)
        failure = item.get("log_failure")
        if failure is not None:
            text += f"\n{type(failure.value).__qualname__}: {failure.value}"
        elif "log_format" not in item and not text:
            # Nothing to tell it by: never the same as another.
            raise ValueError("an event without a format")
        return (item.get("log_namespace"), item.get("log_level"), text)

    def quick(self, item: LogEvent) -> Hashable | None:
        form = item.get("log_format")
        if type(form) is not str or "log_failure" in item or "log_flattened" in item:
            return None
        names = _fieldNames(form)
        if names is None:
            return None
        values = []
        for name in names:
            value = item.get(name, _MISSING)
            kind = type(value)
            if kind not in _PLAIN:
                return None
            values.append((kind, value))
        return (form, item.get("log_namespace"), item.get("log_level"), *values)

    def summary(self, item: LogEvent, text: str, count: int) -> LogEvent:
        return {
            "log_namespace": item.get("log_namespace"),
            "log_level": item.get("log_level", LogLevel.info),
            "log_source": None,
            "log_system": item.get("log_system", "-"),
            "log_time": time.time(),
            "log_format": "repeated {log_repeated} times: {log_repeated_text}",
            "log_repeated": count,
            "log_repeated_text": text,
        }


EVENTS = EventIdentity()


class RecordIdentity:
    """
    L{Identity} of stdlib log records.
    """

    def coarse(self, item: logging.LogRecord) -> Hashable:
        return (item.name, item.levelno, item.msg)

    def fine(self, item: logging.LogRecord) -> tuple[Any, Any, str]:
        text = item.getMessage()
        if item.exc_info and item.exc_info[1] is not None:
            error = item.exc_info[1]
            text += f"\n{type(error).__qualname__}: {error}"
        return (item.name, item.levelno, text)

    def quick(self, item: logging.LogRecord) -> Hashable | None:
        args = item.args
        if type(item.msg) is not str or item.exc_info or type(args) is not tuple:
            return None
        values = []
        for value in args:
            kind = type(value)
            if kind not in _PLAIN:
                return None
            values.append((kind, value))
        return (item.name, item.levelno, item.msg, *values)

    def summary(self, item: logging.LogRecord, text: str, count: int) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": item.name,
                "levelno": item.levelno,
                "levelname": item.levelname,
                "msg": "repeated %d times: %s",
                "args": (count, text),
                "repeated": count,
                "repeatedText": text,
            }
        )


RECORDS = RecordIdentity()


class _Repeating:
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
        self.since = now
        self.lastAdmitted = now
        self.lastArrival = now


class RepeatFilter(Generic[T]):
    """
    Identical-item suppression for one hardened sink (see the module's
    docstring). The sink compares its count of events delivered on its
    healthy path with L{gate}; when it reaches it, it sets L{due} and sends
    events to L{check} for as long as L{due} stays set.

    @param owner: the hardened sink (the mark its deliveries carry); held
        weakly, as the callbacks must hold it: the sink holds its filter, and
        a sink nobody references must be freed at once, not when the cycle
        collector runs.
    @param deliver: delivers a summary item through the sink (it is counted
        like any other item the sink receives).
    @param drop: counts C{n} held-back copies (drop reason C{"repeated"}).
    @param report: writes one out-of-band line.
    @param dropped: reports C{n} copies held back (rate-limited by the
        reporter).
    @param position: how many events the sink has delivered on its healthy
        path so far.
    @param setGate: called with each new L{gate}, for a sink that keeps a
        copy of it (one attribute lookup less on its healthy path).
    """

    def __init__(
        self,
        burst: int,
        interval: float,
        identity: Identity[T],
        owner: object,
        name: str,
        deliver: Callable[[T], object],
        drop: Callable[[int], object],
        report: Callable[[str], object],
        dropped: Callable[[int], object],
        position: Callable[[], int],
        setGate: Callable[[int], object] = lambda gate: None,
        clock: IClock | None = None,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self.identity = identity
        self._owner = weakref.ref(owner)
        self.name = name
        self._deliver = deliver
        self._drop = drop
        self._report = report
        self._dropped = dropped
        self.clock = MonotonicClock() if clock is None else clock
        self._echoWindow = interval / 4
        self._lock = threading.Lock()
        self._position = position
        self._setGate = setGate
        self.gate = burst if burst else _NEVER
        #: Set by the sink when it reached L{gate}; kept while an event
        #: repeats (then every event is looked at): send events to L{check}.
        self.due = False
        # Events looked at here (they do not take the healthy path).
        self._looked = 0
        self._sliceEnd = float("-inf")
        self._sliceStart = 0
        # Items between two samples: doubled after each sample until the
        # first interval has ended, then set by the last interval's rate.
        self._stride = 16
        self._measured = False
        self._jitter = random.Random(0x5EED).randint
        self._samples: dict[Hashable, int] = {}
        # While events repeat: the next item that is not one of them to be
        # sampled (counted in items looked at).
        self._nextSample = 0
        self._repeating: dict[Hashable, dict[Hashable, _Repeating]] = {}
        # Items known identical to a repeating one without rendering them.
        self._quick: dict[Hashable, _Repeating] = {}
        self._loopsReported: set[Hashable] = set()

    @property
    def gate(self) -> int:
        """
        When the sink's count of events delivered on its healthy path reaches
        this, the next event must be looked at (never, if off).
        """
        return self._gate

    @gate.setter
    def gate(self, value: int) -> None:
        self._gate = value
        self._setGate(value)

    @property
    def owner(self) -> object:
        """
        The hardened sink whose deliveries carry the mark (L{None} once it
        is gone).
        """
        return self._owner()

    def __repr__(self) -> str:
        return f"<RepeatFilter burst={self.burst} interval={self.interval:g}>"

    @property
    def watching(self) -> bool:
        """
        Is an event being held back or watched now (so that summaries may
        be due)?
        """
        return bool(self._repeating)

    def check(self, item: T) -> int:
        """
        Look at C{item}: L{DELIVER} it, L{MARKED} (deliver it
        inside the delivery mark), L{SUPPRESS} it (counted here), or it is an
        L{ECHO} of a delivery to this sink (the caller counts it as a
        reentry).
        """
        now = self.clock.seconds()
        due: list[tuple[_Repeating, int]] = []
        with self._lock:
            self._looked += 1
            if now < self._sliceEnd:
                verdict = self._look(item, now)
            else:
                self._newSlice(now, due)
                # The first item of a quiet interval is not looked at.
                verdict = self._look(item, now) if self._repeating else DELIVER
            self.due = bool(self._repeating)
        if due:
            self._summarise(due, now)
        return verdict

    def flush(self) -> None:
        """
        Deliver the summaries due now (held-back copies since the last
        summary), without waiting for the next item.
        """
        now = self.clock.seconds()
        due: list[tuple[_Repeating, int]] = []
        with self._lock:
            if now >= self._sliceEnd:
                # Also forgets the events that have stopped repeating.
                self._newSlice(now, due)
            else:
                for bucket in self._repeating.values():
                    for key in bucket.values():
                        self._settle(key, due)
        if due:
            self._summarise(due, now)

    # -- under the lock -------------------------------------------------------

    def _newSlice(self, now: float, due: list[tuple[_Repeating, int]]) -> None:
        position = self._position()
        tick = position + self._looked
        if self._sliceEnd != float("-inf"):
            # Sample about _SAMPLES items of an interval as busy as the last.
            self._stride = max(1, (tick - self._sliceStart) // _SAMPLES)
            self._measured = True
        self._sliceStart = tick
        self._sliceEnd = now + self.interval
        self._samples.clear()
        self._quick.clear()
        for coarse, bucket in list(self._repeating.items()):
            for fine, key in list(bucket.items()):
                self._settle(key, due)
                if not key.copies:
                    # Not one copy in a whole interval: the burst is over.
                    del bucket[fine]
                key.copies = 0
            if not bucket:
                del self._repeating[coarse]
        # While something repeats, every item is looked at; otherwise none
        # until the interval has had more than `burst` of them.
        self.gate = position + self.burst
        self.due = bool(self._repeating)

    def _settle(self, key: _Repeating, due: list[tuple[_Repeating, int]]) -> None:
        if key.suppressed:
            due.append((key, key.suppressed))
            key.suppressed = 0

    def _look(self, item: T, now: float) -> int:
        if self._repeating:
            if _markedBy(self._owner()):
                return ECHO
            try:
                bucket = self._repeating.get(self.identity.coarse(item))
                if bucket is None:
                    return self._sampleAside(item, now)
                quick = self.identity.quick(item)
                key = None if quick is None else self._quick.get(quick)
                if key is None:
                    key = bucket.get(self.identity.fine(item))
                    if key is None:
                        return self._sampleAside(item, now)
                    if quick is not None:
                        if len(self._quick) >= _MAX_SAMPLES:
                            self._quick.clear()
                        self._quick[quick] = key
            except Exception:
                return MARKED
            key.copies += 1
            key.seen += 1
            key.total += 1
            # A feedback loop's copies get no allowance: each delivery (even
            # of its summary) would only start it again.
            if key.copies > (0 if key.loop else self.burst):
                if key.suppressed >= _ECHO_SLACK or now - key.lastAdmitted > self._echoWindow:
                    # It goes on regardless of deliveries: a flood.
                    key.floodLike += 1
                    key.loop = False
                key.suppressed += 1
                key.lastArrival = now
                self._drop(1)
                return SUPPRESS
            key.delivered += 1
            key.lastAdmitted = key.lastArrival = now
            return MARKED
        # Above the allowance, nothing repeating yet: look at a sample.
        # Jittered, so that traffic with a period (one line in two) cannot
        # hide from the samples.
        self.gate = self._position() + self._jitter(1, 2 * self._stride)
        self._sample(item, now)
        return DELIVER

    def _sampleAside(self, item: T, now: float) -> int:
        """
        An item that is not one of the repeating ones, while some repeat
        (every item is looked at then): a sample of them, taken as when
        nothing repeats, so that a second flood (a retry loop's other line)
        is noticed too.
        """
        if self._looked >= self._nextSample:
            self._nextSample = self._looked + self._jitter(1, 2 * self._stride)
            self._sample(item, now)
        return MARKED

    def _sample(self, item: T, now: float) -> None:
        """
        Count a sample of C{item}; seen often enough, it is watched from now
        on.
        """
        try:
            coarse = self.identity.coarse(item)
            hash(coarse)
            fine = self.identity.fine(item)
            seen = self._samples.get(fine, 0) + 1
        except Exception:
            return
        if len(self._samples) >= _MAX_SAMPLES:
            self._samples.clear()
        self._samples[fine] = seen
        if seen == 1 and not self._measured:
            self._stride = min(self._stride * 2, _MAX_STRIDE)
        if (
            seen >= 2
            and seen * self._stride > self.burst
            and sum(len(b) for b in self._repeating.values()) < _MAX_SUSPECTS
        ):
            # The same event twice in a sample of this interval: it is at
            # least this frequent; watch every item from now on. (Not one
            # already watched is forgotten to make room: its held-back
            # copies would never be summarised.)
            self._repeating.setdefault(coarse, {})[fine] = _Repeating(item, fine, seen, now)
            del self._samples[fine]

    # -- outside the lock ------------------------------------------------------

    def _summarise(self, due: list[tuple[_Repeating, int]], now: float) -> None:
        for key, count in due:
            self._dropped(count)
            self._maybeLoop(key, now)
            try:
                summary = self.identity.summary(key.item, key.text, count)  # type: ignore[arg-type]
            except Exception:
                continue
            # What the summary's delivery causes is an echo, not a flood.
            key.lastAdmitted = now
            # The summary is the sink's own, even when an echo made it due:
            # delivered outside the echo's mark (its delivery has its own).
            _unmarked(self._deliver, summary)

    def _maybeLoop(self, key: _Repeating, now: float) -> None:
        """
        A feedback loop stops when its copies stop being delivered; a flood
        goes on regardless. Say so once per event if every held-back copy
        came right after a delivered one and then they stopped.
        """
        if key.floodLike or now - key.lastArrival < self._echoWindow:
            key.floodLike = 0
            return
        key.loop = True
        self.loopFound(key.name, key.text, key.total, key.delivered, "burst")

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

# -*- test-case-name: tests.test_policy -*-
"""
L{Policy}: the hardening settings of a safe sink as one immutable value,
checked once, where it is made.

Every safe sink (L{SafeObserver}, L{SafeHandler}, the file sinks, and
everything L{install} wraps) takes a C{policy} and, for convenience, the same
settings as keyword arguments, which override the policy's. A mistake is
caught where it is made: a setting that does not exist is a C{TypeError}
naming it, a value that makes no sense is a L{ConfigurationError} naming the
setting and what it accepts.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from attrs import Attribute, evolve, field, fields, frozen

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_REPEAT_BURST",
    "Policy",
    "PolicySettings",
    "checkNumber",
]

#: Events kept for replay while a sink is quarantined, unless told otherwise.
DEFAULT_BUFFER_SIZE = 1000

#: The most a sink's replay buffer holds, in (estimated) bytes.
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
#: Identical events delivered per interval before copies are held back.
DEFAULT_REPEAT_BURST = 100


def checkNumber(
    name: str,
    value: object,
    *,
    integer: bool = False,
    minimum: float | None = None,
    above: float | None = None,
) -> None:
    """
    Raise L{ConfigurationError} unless C{value} is a finite number (an
    C{int} if C{integer}; never a C{bool}) that is C{>= minimum} and
    C{> above}. The message names the setting and says what to use.
    """
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    allowed = int if integer else (int, float)
    try:
        bad = (
            isinstance(value, bool)
            or not isinstance(value, allowed)
            or not math.isfinite(value)
            or (minimum is not None and value < minimum)
            or (above is not None and value <= above)
        )
    except OverflowError:
        # An int too large for a float (math.isfinite(10**400)).
        bad = True
    if integer and isinstance(value, int) and value > sys.maxsize:
        # Counts and sizes become C sizes (a deque's maxlen, say).
        bounds.append(f"<= {sys.maxsize}")
        bad = True
    wanted = kind + (" " + " and ".join(bounds) if bounds else "")
    if bad:
        raise ConfigurationError(f"{name}={_shortRepr(value)} is not valid; use {wanted}")


def _shortRepr(value: object) -> str:
    """
    C{repr(value)}, cut so that a refusal stays one readable line.
    """
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}...[{len(text)} characters]"


def _number(
    *, integer: bool = False, minimum: float | None = None, above: float | None = None
) -> Any:
    def validate(instance: object, attribute: Attribute[Any], value: object) -> None:
        checkNumber(attribute.name, value, integer=integer, minimum=minimum, above=above)

    return validate


def _boolean(instance: object, attribute: Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name}={value!r} is not valid; use True or False")


@frozen
class Policy:
    """
    How a safe sink hardens what it wraps. Immutable; every value is checked
    when the policy is made.

    @ivar failureThreshold: consecutive failures that quarantine the sink
        (open its circuit breaker).
    @ivar resetTimeout: seconds in quarantine before the first probe.
    @ivar maxResetTimeout: the longest wait between probes; never less than
        C{resetTimeout} (raised to it if given lower).
    @ivar backoffFactor: each failed probe multiplies the wait by this.
    @ivar bufferSize: events kept, oldest dropped first, for replay while the
        sink is quarantined; C{0} keeps none.
    @ivar bufferBytes: the most the replay buffer holds, in bytes, estimated
        cheaply from the sizes of an event's strings and containers; the
        oldest events are dropped first (counted as C{overflow}), and an
        event larger than this on its own is not buffered.
    @ivar retryFailed: put an event whose delivery failed back at the head
        of the replay buffer to be retried in order, instead of counting it
        failed; for sinks whose failures are transient (a network peer).
    @ivar maxAttempts: with C{retryFailed}, deliveries tried before an event
        is counted failed after all, so one poisonous event cannot block the
        sink for ever.
    @ivar stallTimeout: seconds a delivery may not return (with no other
        delivery to the sink completing meanwhile) before the sink is
        reported once as "stalled for N s" and C{stats().stalledFor} shows
        it; C{0} never.
    @ivar repeatBurst: identical events (same namespace, level and rendered
        text) delivered per C{repeatInterval}; further copies are held back
        (drop reason C{"repeated"}) and summarised as "repeated N times".
        C{0} turns suppression off.
    @ivar repeatInterval: seconds over which C{repeatBurst} is counted, and
        between two summaries of an event that keeps repeating.
    """

    failureThreshold: int = field(default=5, validator=_number(integer=True, minimum=1))
    resetTimeout: float = field(default=1.0, validator=_number(above=0))
    maxResetTimeout: float = field(default=60.0, validator=_number(above=0))
    backoffFactor: float = field(default=2.0, validator=_number(minimum=1))
    bufferSize: int = field(default=DEFAULT_BUFFER_SIZE, validator=_number(integer=True, minimum=0))
    bufferBytes: int = field(
        default=DEFAULT_BUFFER_BYTES, validator=_number(integer=True, minimum=1)
    )
    retryFailed: bool = field(default=False, validator=_boolean)
    maxAttempts: int = field(default=10, validator=_number(integer=True, minimum=1))
    stallTimeout: float = field(default=5.0, validator=_number(minimum=0))
    repeatBurst: int = field(
        default=DEFAULT_REPEAT_BURST, validator=_number(integer=True, minimum=0)
    )
    repeatInterval: float = field(default=1.0, validator=_number(above=0))

    def __attrs_post_init__(self) -> None:
        if self.maxResetTimeout < self.resetTimeout:
            # The documented meaning: the longest wait is never shorter than
            # the first. (Frozen: attrs' own way to set a derived value.)
            object.__setattr__(self, "maxResetTimeout", self.resetTimeout)

    def replace(self, **settings: Unpack[PolicySettings]) -> Policy:
        """
        A copy with C{settings} changed; an unknown setting is a
        C{TypeError} naming it.

        @param settings: the fields to change, by name.
        """
        return self.withSettings(settings, "Policy.replace()")

    def withSettings(self, settings: Mapping[str, Any], caller: str) -> Policy:
        """
        A copy with C{settings} (keyword arguments given to C{caller})
        changed: unknown names are a C{TypeError} that names C{caller}, the
        argument and the settings there are.

        @param settings: the fields to change, by name.
        @param caller: what the settings were given to, for the error message
            (C{"SafeObserver()"}).
        """
        unknown = sorted(set(settings) - _NAMES)
        if unknown:
            raise TypeError(
                f"{caller} got an unexpected keyword argument {unknown[0]!r}; "
                f"the hardening settings are: {', '.join(sorted(_NAMES))}"
            )
        return evolve(self, **settings) if settings else self

    @classmethod
    def of(cls, policy: Policy | None, settings: Mapping[str, Any], caller: str) -> Policy:
        """
        The policy a sink's constructor was given: C{policy} (the defaults
        if L{None}) with the keyword C{settings} over it.
        """
        if policy is not None and not isinstance(policy, Policy):
            raise TypeError(f"{caller} needs a twisted_safelog.Policy, not {policy!r}")
        return (DEFAULT_POLICY if policy is None else policy).withSettings(settings, caller)


class PolicySettings(TypedDict, total=False):
    """
    The keyword form of L{Policy}'s fields, for type checkers.
    """

    failureThreshold: int
    resetTimeout: float
    maxResetTimeout: float
    backoffFactor: float
    bufferSize: int
    bufferBytes: int
    retryFailed: bool
    maxAttempts: int
    stallTimeout: float
    repeatBurst: int
    repeatInterval: float


_NAMES = frozenset(a.name for a in fields(Policy))

#: The defaults, made once.
DEFAULT_POLICY = Policy()

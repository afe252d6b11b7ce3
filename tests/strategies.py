"""
Hypothesis strategies for log events as they come in real life: odd ones
included (broken __repr__, non-string formats, huge and cyclic values).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from twisted.logger import LogLevel


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("broken __repr__")

    __str__ = __repr__


class BrokenFormat:
    def __format__(self, spec: str) -> str:
        raise ValueError("broken __format__")


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


oddValues = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    st.binary(max_size=20),
    st.just("x" * 100_000),
    st.builds(BrokenRepr),
    st.builds(BrokenFormat),
    st.builds(cyclic),
    st.lists(st.integers(), max_size=5),
)

formats = st.one_of(
    st.none(),
    st.just("plain text"),
    st.just("value {value}"),
    st.just("{value!r} and {missing}"),
    st.just("{value.attribute}"),
    st.just("unbalanced {"),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.integers(),
)

levels = st.one_of(st.sampled_from(list(LogLevel.iterconstants())), st.none(), st.text(max_size=5))


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """
    An event dict as an observer may receive it.
    """
    event: dict[str, Any] = {
        "log_format": draw(formats),
        "value": draw(oddValues),
        "log_level": draw(levels),
        "log_namespace": draw(st.one_of(st.text(max_size=20), st.none(), st.integers())),
        "log_time": draw(st.one_of(st.floats(0, 2e9), st.none(), st.text(max_size=3))),
    }
    for key in draw(
        st.lists(st.sampled_from(["name", "msg", "args", "message", "extra"]), max_size=3)
    ):
        event[key] = draw(oddValues)
    return event

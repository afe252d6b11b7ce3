"""
What does SafeObserver cost a healthy observer?

Compares, in one run, a bare observer and the same observer wrapped in
SafeObserver, for a no-op observer and for textFileLogObserver writing to a
null file. Rounds alternate between the two so machine noise hits both
alike; the medians, their ratio and the wrapper's own cost per event are
printed.

    python benchmarks/observer_overhead.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from twisted.logger import LogEvent, LogLevel, textFileLogObserver

from twisted_safelog import SafeObserver


def makeEvent() -> LogEvent:
    return {
        "log_format": "GET {path} -> {code}",
        "path": "/chart-data",
        "code": 200,
        "log_level": LogLevel.info,
        "log_namespace": "bench",
        "log_source": None,
        "log_time": time.time(),
        "log_system": "-",
    }


def timePerEvent(observer: Callable[[LogEvent], None], events: int) -> float:
    event = makeEvent()
    start = time.perf_counter_ns()
    for _ in range(events):
        observer(event)
    return (time.perf_counter_ns() - start) / events


def compare(name: str, bare: Callable[[LogEvent], None], events: int, rounds: int) -> None:
    # One event sent again and again is a flood, which the default policy
    # holds back: this measures delivery, so suppression is off here (its
    # own cost is measured by repeats_cost.py).
    wrapped = SafeObserver(bare, repeatBurst=0)
    bareTimes, safeTimes = [], []
    timePerEvent(bare, events // 10)
    timePerEvent(wrapped, events // 10)
    for _ in range(rounds):
        bareTimes.append(timePerEvent(bare, events))
        safeTimes.append(timePerEvent(wrapped, events))
    b = statistics.median(bareTimes)
    s = statistics.median(safeTimes)
    assert wrapped.stats().balanced
    print(
        f"{name:<22} bare {1e9 / b:>12,.0f} ev/s  safe {1e9 / s:>12,.0f} ev/s  "
        f"ratio {s / b:5.3f}x  wrapper cost {s - b:6.0f} ns/event"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    def noop(event: LogEvent) -> None:
        pass

    with open(os.devnull, "w") as null:
        print(f"median of {args.rounds} rounds of {args.events:,} events each")
        compare("no-op observer", noop, args.events, args.rounds)
        compare(
            "textFileLogObserver",
            textFileLogObserver(null),
            max(args.events // 10, 1),
            args.rounds,
        )


if __name__ == "__main__":
    main()

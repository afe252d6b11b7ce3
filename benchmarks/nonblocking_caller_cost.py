"""
What does a slow sink cost the caller (the reactor thread)?

In one run: a sink that sleeps 10 ms per event called directly, the same
sink behind SafeObserver, and behind NonBlockingObserver; plus a no-op sink
bare, behind SafeObserver and behind NonBlockingObserver (the fast path's
cost). Prints the median caller cost per event over alternating rounds and
the ratios.

    python benchmarks/nonblocking_caller_cost.py [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from twisted.logger import LogEvent, LogLevel

from twisted_safelog import NonBlockingObserver, Reporter, SafeObserver


def makeEvent(n: int) -> LogEvent:
    return {
        "log_format": "event {n}",
        "n": n,
        "log_level": LogLevel.info,
        "log_namespace": "bench",
        "log_time": time.time(),
    }


def callerCost(observer: Callable[[LogEvent], None], events: int) -> float:
    """
    Median seconds one call takes the caller.
    """
    costs = []
    for n in range(events):
        event = makeEvent(n)
        start = time.perf_counter()
        observer(event)
        costs.append(time.perf_counter() - start)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-events", type=int, default=50)
    parser.add_argument("--fast-events", type=int, default=20_000)
    args = parser.parse_args()
    quiet = Reporter(write=lambda text: None)

    def slow(event: LogEvent) -> None:
        time.sleep(0.010)

    def noop(event: LogEvent) -> None:
        pass

    cases: list[tuple[str, Callable[[LogEvent], None], int]] = [
        ("slow sink, bare", slow, args.slow_events),
        ("slow sink, SafeObserver", SafeObserver(slow, reporter=quiet), args.slow_events),
        (
            "slow sink, NonBlockingObserver",
            NonBlockingObserver(slow, maxQueue=1_000_000, reporter=quiet),
            args.slow_events,
        ),
        ("no-op sink, bare", noop, args.fast_events),
        ("no-op sink, SafeObserver", SafeObserver(noop, reporter=quiet), args.fast_events),
        (
            "no-op sink, NonBlockingObserver",
            NonBlockingObserver(noop, maxQueue=1_000_000, reporter=quiet),
            args.fast_events,
        ),
    ]
    results: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, observer, events in cases:
            results[name].append(callerCost(observer, events))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"median caller cost per event, {args.rounds} alternating rounds")
    for name, value in medians.items():
        print(f"  {name:<34} {value * 1e6:>10.2f} us")
    print(
        "  slow sink: bare / non-blocking     "
        f"{medians['slow sink, bare'] / medians['slow sink, NonBlockingObserver']:>10.0f}x"
    )
    print(
        "  no-op sink: non-blocking / bare    "
        f"{medians['no-op sink, NonBlockingObserver'] / medians['no-op sink, bare']:>10.1f}x"
    )
    for _, observer, _ in cases:
        if isinstance(observer, NonBlockingObserver):
            observer.stop(0)


if __name__ == "__main__":
    main()

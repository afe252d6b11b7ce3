"""
Should the twistd factory deliver to its log file non-blockingly by default?

The factory's own sink (a hardened text log file) written directly, and the
same sink behind NonBlockingObserver, in one run, alternating rounds:

 - caller cost: the median time one log call takes the caller (the
   reactor thread);
 - throughput: events per second until every event is on disk (for the
   non-blocking one, including the final flush).

    python benchmarks/file_sink_nonblocking.py [--rounds R] [--events N]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from twisted.logger import LogEvent, LogLevel

from twisted_safelog import NonBlockingObserver, Reporter, safeFileLogObserver


def makeEvent(n: int) -> LogEvent:
    return {
        "log_format": "request {n} served in {ms} ms",
        "n": n,
        "ms": 1.25,
        "log_level": LogLevel.info,
        "log_namespace": "bench.app",
        "log_time": time.time(),
    }


def run(
    observer: Callable[[LogEvent], None], finish: Callable[[], object], events: int
) -> tuple[float, float]:
    """
    (median caller seconds per event, events per second until on disk).
    """
    costs = []
    began = time.perf_counter()
    for n in range(events):
        event = makeEvent(n)
        start = time.perf_counter()
        observer(event)
        costs.append(time.perf_counter() - start)
    finish()
    return statistics.median(costs), events / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    quiet = Reporter(write=lambda text: None)
    where = tempfile.mkdtemp()
    results: dict[str, list[tuple[float, float]]] = {"direct": [], "non-blocking": []}
    for r in range(args.rounds):
        direct = safeFileLogObserver(os.path.join(where, f"direct{r}.log"), reporter=quiet)
        results["direct"].append(run(direct, lambda: None, args.events))
        direct.close()
        sink = safeFileLogObserver(os.path.join(where, f"queued{r}.log"), reporter=quiet)
        queued = NonBlockingObserver(sink, reporter=quiet, maxQueue=args.events)
        results["non-blocking"].append(
            run(queued, functools.partial(queued.flush, 60), args.events)
        )
        queued.close()
    print(f"{args.events} events per round, medians of {args.rounds} alternating rounds")
    medians = {}
    for name, values in results.items():
        cost = statistics.median(v[0] for v in values)
        rate = statistics.median(v[1] for v in values)
        medians[name] = (cost, rate)
        print(f"  {name:13} caller {cost * 1e6:7.2f} us/event   {rate:10,.0f} events/s to disk")
    d, q = medians["direct"], medians["non-blocking"]
    print(f"  caller cost: non-blocking / direct  {q[0] / d[0]:.2f}x")
    print(f"  throughput:  non-blocking / direct  {q[1] / d[1]:.2f}x")


if __name__ == "__main__":
    main()

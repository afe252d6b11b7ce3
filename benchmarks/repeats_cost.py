"""
What does identical-event suppression cost?

1. The healthy path: the check alone (one comparison, timed against the
   count it compares, which the healthy path makes anyway), and a stream of
   distinct events at full speed (an access log) through SafeObserver
   around a no-op observer, suppression on (the default) against off
   (repeatBurst=0). With --baseline SRC, the same
   stream is also timed, in a child process, against the package found in
   SRC (a checkout without suppression, e.g. /work/main/src before it
   landed), rounds alternating between the two.
2. A flood of one line: textFileLogObserver to a null file, every copy
   written (suppression off) against held back (on).

Medians of alternating rounds; nanoseconds per event.

    python benchmarks/repeats_cost.py [--events N] [--rounds R] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import LogEvent, LogLevel, textFileLogObserver


def distinctEvents(count: int) -> list[LogEvent]:
    now = time.time()
    return [
        {
            "log_format": '{ip} - "GET {path}" {code}',
            "ip": "10.0.0.7",
            "path": f"/item/{n}",
            "code": 200,
            "log_level": LogLevel.info,
            "log_namespace": "access",
            "log_source": None,
            "log_time": now,
            "log_system": "-",
        }
        for n in range(count)
    ]


def timePerEvent(observer: Callable[[LogEvent], None], events: list[LogEvent]) -> float:
    start = time.perf_counter_ns()
    for event in events:
        observer(event)
    return (time.perf_counter_ns() - start) / len(events)


def noop(event: LogEvent) -> None:
    pass


def safeObserver(**settings: Any) -> Callable[[LogEvent], None]:
    from twisted_safelog import SafeObserver

    return SafeObserver(noop, **settings)


def child(events: int, rounds: int) -> None:
    """
    Run in a child process against another checkout: one round per line
    read from stdin, its time per event printed as JSON.
    """
    observer = safeObserver()
    stream = distinctEvents(events)
    timePerEvent(observer, stream[: events // 10])
    for _ in sys.stdin:
        print(json.dumps(timePerEvent(observer, stream)), flush=True)


def healthy(events: int, rounds: int, baseline: str | None) -> None:
    stream = distinctEvents(events)
    on, off = safeObserver(), safeObserver(repeatBurst=0)
    process = None
    if baseline:
        environ = {**os.environ, "PYTHONPATH": baseline}
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", "--events", str(events)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
        )
    timePerEvent(on, stream[: events // 10])
    timePerEvent(off, stream[: events // 10])
    times: dict[str, list[float]] = {"on": [], "off": [], "baseline": []}
    for _ in range(rounds):
        times["on"].append(timePerEvent(on, stream))
        times["off"].append(timePerEvent(off, stream))
        if process is not None:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("go\n")
            process.stdin.flush()
            times["baseline"].append(json.loads(process.stdout.readline()))
    if process is not None:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)
    stats = on.stats()  # type: ignore[attr-defined]
    assert stats.dropped == 0, stats
    m = {k: statistics.median(v) for k, v in times.items() if v}
    print(
        f"distinct events, SafeObserver(no-op): on {m['on']:6.0f} ns/event, "
        f"off {m['off']:6.0f} ns/event: sampling costs {m['on'] - m['off']:+5.0f} ns/event"
    )
    if "baseline" in m:
        print(
            f"  without suppression ({baseline}): {m['baseline']:6.0f} ns/event: "
            f"suppression adds {m['on'] - m['baseline']:+5.0f} ns/event"
        )


def hook(rounds: int) -> None:
    """
    The statements the healthy path runs for suppression, timed alone (what
    they add cannot be told from noise in a whole delivery on a busy
    machine).
    """
    import timeit

    setup = "from twisted_safelog import SafeObserver; self = SafeObserver(print)"
    # The healthy path counts each delivery anyway; suppression compares
    # that count with the filter's gate.
    statement = "if next(self._fastTicks) >= self._repeatGate:\n    pass"
    without = "next(self._fastTicks)"
    number = 1_000_000
    hooked, empty = [], []
    for _ in range(rounds):
        hooked.append(timeit.timeit(statement, setup, number=number) / number * 1e9)
        empty.append(timeit.timeit(without, setup, number=number) / number * 1e9)
    cost = statistics.median(hooked) - statistics.median(empty)
    print(f"the healthy path's check (one comparison): {cost:5.1f} ns/event")


def flood(events: int, rounds: int) -> None:
    from twisted_safelog import SafeObserver

    with open(os.devnull, "w") as null:
        line = distinctEvents(1)[0]
        stream = [dict(line) for _ in range(events)]
        on = SafeObserver(textFileLogObserver(null))
        off = SafeObserver(textFileLogObserver(null), repeatBurst=0)
        timePerEvent(on, stream[: events // 10])
        timePerEvent(off, stream[: events // 10])
        onTimes, offTimes = [], []
        for _ in range(rounds):
            onTimes.append(timePerEvent(on, stream))
            offTimes.append(timePerEvent(off, stream))
        a, b = statistics.median(onTimes), statistics.median(offTimes)
        stats = on.stats()
        print(
            f"a flood of one line, textFileLogObserver: held back {a:6.0f} ns/event, "
            f"all written {b:6.0f} ns/event ({stats.delivered} of {stats.received} delivered)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--baseline", help="src directory of a checkout without suppression")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.events, args.rounds)
        return
    print(f"median of {args.rounds} rounds of {args.events:,} events each")
    hook(args.rounds)
    healthy(args.events, args.rounds, args.baseline)
    flood(max(args.events // 10, 1), args.rounds)


if __name__ == "__main__":
    main()

"""
What does hardening a stdlib handler in place cost a healthy handler?

Compares, in one run, the same kind of handler plain and hardened in place
(what install() and hardenHandlers() do), called the way logging calls it
(C{handler.handle(record)}), for a no-op handler and for a StreamHandler
writing formatted lines to a null file. Rounds alternate between the two
so machine noise hits both alike; the medians, their ratio and the
hardening's own cost per record are printed.

    python benchmarks/handler_overhead.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

from twisted_safelog import hardenHandler, hardeningOf


class NoopHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


def timePerRecord(handler: logging.Handler, records: int) -> float:
    record = logging.LogRecord("bench", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    handle = handler.handle
    start = time.perf_counter_ns()
    for _ in range(records):
        handle(record)
    return (time.perf_counter_ns() - start) / records


def compare(
    name: str, bare: logging.Handler, hardened: logging.Handler, records: int, rounds: int
) -> None:
    # The same record every call: suppression (on by default) would hold
    # back all but the first few, so it is off here.
    hardenHandler(hardened, repeatBurst=0)
    bareTimes, safeTimes = [], []
    timePerRecord(bare, records // 10)
    timePerRecord(hardened, records // 10)
    for _ in range(rounds):
        bareTimes.append(timePerRecord(bare, records))
        safeTimes.append(timePerRecord(hardened, records))
    b = statistics.median(bareTimes)
    s = statistics.median(safeTimes)
    hardening = hardeningOf(hardened)
    assert hardening is not None and hardening.stats().balanced
    print(
        f"{name:<22} plain {1e9 / b:>12,.0f} rec/s  hardened {1e9 / s:>12,.0f} rec/s  "
        f"ratio {s / b:5.3f}x  hardening cost {s - b:6.0f} ns/record"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"median of {args.rounds} rounds of {args.records:,} records each")
    compare("no-op handler", NoopHandler(), NoopHandler(), args.records, args.rounds)
    with open(os.devnull, "w") as a, open(os.devnull, "w") as b:
        formatter = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
        plain, hardened = logging.StreamHandler(a), logging.StreamHandler(b)
        plain.setFormatter(formatter)
        hardened.setFormatter(formatter)
        compare("StreamHandler", plain, hardened, max(args.records // 10, 1), args.rounds)


if __name__ == "__main__":
    main()

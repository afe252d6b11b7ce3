"""
How the cost of an event grows with the number of observers, a quarter of
them always raising, plain Twisted and hardened.

Plain Twisted re-emits every failure to the other observers, failing ones
included, so k raising observers make about k! calls per event: the plain
points are each run in a child process with a deadline, and a point that
did not finish one event in time is reported as at least the deadline.

    python benchmarks/growth.py plain|hardened EVENTS BUDGET

runs every point in this process, printing "N seconds-per-event" for each.
"""

from __future__ import annotations

import argparse
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: Observer counts measured.
POINTS = (1, 2, 4, 8, 16, 32)


def point(n: int, hardened: bool, events: int, budget: float) -> float:
    """
    Seconds per event with C{n} observers (n // 4 always raising), over up
    to C{events} events or C{budget} seconds, whichever ends first (at
    least one event).
    """
    from twisted.logger import Logger, LogPublisher

    from twisted_safelog import SafeObserver

    def noop(event: Any) -> None:
        pass

    class AlwaysRaises:
        def __call__(self, event: Any) -> None:
            raise OSError("this observer is broken")

    raising = n // 4
    observers: list[Any] = [noop] * (n - raising) + [AlwaysRaises() for _ in range(raising)]
    if hardened:
        observers = [SafeObserver(o) for o in observers]
    log = Logger(namespace="bench", observer=LogPublisher(*observers))
    # Each line its own (one line again and again is a flood, held back).
    for n in range(min(events // 10, 100)):
        log.info("GET {path} {n}", path="/", n=-n)
    done = 0
    start = time.perf_counter()
    while done < events:
        log.info("GET {path} {n}", path="/", n=done)
        done += 1
        if time.perf_counter() - start > budget:
            break
    return (time.perf_counter() - start) / done


def runSeries(hardened: bool, events: int, budget: float) -> dict[int, float | None]:
    """
    Every point, smallest first, in one child process; a point that takes
    longer than C{budget} seconds (plus start-up) ends the child, and it and
    the larger points are L{None} (unfinished).
    """
    command = [sys.executable, __file__, "hardened" if hardened else "plain"]
    child = subprocess.Popen(
        [*command, str(events), str(budget)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    found: dict[int, float | None] = dict.fromkeys(POINTS)
    deadline = time.monotonic() + budget + 30
    try:
        for _ in POINTS:
            ready, _, _ = select.select([child.stdout], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            line = child.stdout.readline()
            if not line:
                break
            n, value = line.split()
            found[int(n)] = float(value)
            deadline = time.monotonic() + budget + 2
    finally:
        child.kill()
        child.wait(10)
    return found


def caseGrowth(args: argparse.Namespace) -> dict[str, Any]:
    events = max(int(20_000 * args.scale), 20)
    # Seconds a plain point may take; a quick run with tiny counts (the smoke
    # test) gives it less.
    budget = min(1.0, max(0.2, 10 * args.scale)) if args.quick else 3.0
    plain: dict[int, list[float]] = {n: [] for n in POINTS}
    hardened: dict[int, list[float]] = {n: [] for n in POINTS}
    unfinished: dict[int, float] = {}
    rounds = 1 if args.quick else max(1, min(args.rounds, 3))
    for r in range(rounds):
        for side in ("plain", "hardened") if r % 2 == 0 else ("hardened", "plain"):
            series = runSeries(side == "hardened", events, budget)
            for n, value in series.items():
                if value is not None:
                    (hardened if side == "hardened" else plain)[n].append(value)
                elif side == "plain":
                    unfinished[n] = budget
                else:
                    raise RuntimeError(f"hardened point {n} did not finish")
    plainUs: dict[int, float | None] = {
        n: statistics.median(v) * 1e6 if v else None for n, v in plain.items()
    }
    hardenedUs = {n: statistics.median(v) * 1e6 for n, v in hardened.items()}
    growth = hardenedUs[32] / hardenedUs[8]
    plain8, plain32 = plainUs[8], plainUs[32]
    plainGrowth = plain32 / plain8 if plain8 and plain32 else None
    return {
        "plain": plain32,
        "plainNote": None if plain32 is not None else f"> {budget:g} s per event (unfinished)",
        "hardened": hardenedUs[32],
        "unit": "us/event at 32",
        "measure": growth,
        "measureUnit": "x, 8 -> 32 observers",
        "plainMeasure": plainGrowth,
        # Linear cost (a + b n) grows at most 4x from 8 to 32 observers; 10%
        # for noise.
        "target": 4.4,
        "met": growth <= 4.4,
        "table": {
            "observers": list(POINTS),
            "raising": [n // 4 for n in POINTS],
            "plain us/event": [plainUs[n] for n in POINTS],
            "hardened us/event": [hardenedUs[n] for n in POINTS],
            "plain unfinished (budget s)": unfinished,
        },
        "raw": {"plain": plain, "hardened": hardened, "events": events, "budget": budget},
    }


def main() -> None:
    side, events, budget = sys.argv[1:4]
    for n in POINTS:
        value = point(n, side == "hardened", int(events), float(budget))
        print(n, value, flush=True)


if __name__ == "__main__":
    main()

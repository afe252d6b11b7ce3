"""
The cases of the benchmark suite, each run in a process of its own by
C{benchmarks/run.py}:

    python benchmarks/cases.py CASE [--scale S] [--rounds R] [--quick]

prints one line of JSON: the case's plain and hardened numbers, the measure
its target applies to, and the raw samples. Rounds alternate between plain
and hardened so that machine noise hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import LogEvent, Logger, LogLevel, LogPublisher, textFileLogObserver

from twisted_safelog import NonBlockingObserver, SafeObserver, safeFileLogObserver

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Result = dict[str, Any]


def makeEvent(request: int = 0) -> LogEvent:
    # Each request's line is its own: one line sent again and again is a
    # flood, which twisted-safelog holds back by default ("repeated N
    # times"); the repeat-* cases measure that.
    return {
        "log_format": "GET {path} -> {code} (request {request})",
        "path": "/chart-data",
        "code": 200,
        "request": request,
        "log_level": LogLevel.info,
        "log_namespace": "bench",
        "log_source": None,
        "log_time": time.time(),
        "log_system": "-",
    }


def noop(event: LogEvent) -> None:
    pass


class AlwaysRaises:
    """
    An observer that always fails.
    """

    def __call__(self, event: LogEvent) -> None:
        raise OSError("this observer is broken")


class MinimalGuard:
    """
    The floor of a hardened observer in pure Python, for the wrapper-cost
    case: only what none can leave out -- CPython calling an instance, the
    thread's id, a reentry guard (a set add and discard), the call, one
    thread-safe count -- and nothing else (no breaker, no buffer, no
    suppression, no error-output check, no slow path).
    """

    __slots__ = ("_active", "_count", "_observer")

    def __init__(self, observer: Callable[[LogEvent], None]) -> None:
        self._observer = observer
        self._active: set[int] = set()
        self._count = itertools.count()

    def __call__(self, event: LogEvent) -> None:
        active = self._active
        if active:
            return
        tid = threading.get_ident()
        active.add(tid)
        try:
            self._observer(event)
        except Exception:
            pass
        active.discard(tid)
        next(self._count)


def perEvent(call: Callable[[], None], events: int) -> float:
    """
    Seconds per call of C{call}, over C{events} calls.
    """
    start = time.perf_counter()
    for _ in range(events):
        call()
    return (time.perf_counter() - start) / events


def alternate(
    variants: dict[str, Callable[[], None]], events: int, rounds: int
) -> dict[str, list[float]]:
    """
    Seconds per call of each variant, one sample per round, the variants
    taking turns (and the order reversed every other round); a tenth of a
    round's events first, unmeasured, to warm up.
    """
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():
        perEvent(call, max(events // 10, 1))
    names = list(variants)
    for n in range(rounds):
        for name in names if n % 2 == 0 else reversed(names):
            samples[name].append(perEvent(variants[name], events))
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def logCall(publisher: LogPublisher) -> Callable[[], None]:
    """
    One C{Logger.info} into C{publisher}: what an application does.
    """
    log = Logger(namespace="bench", observer=publisher)
    requests = itertools.count()

    def call() -> None:
        log.info(
            "GET {path} -> {code} (request {request})",
            path="/chart-data",
            code=200,
            request=next(requests),
        )

    return call


def ratioResult(
    plainValue: float, hardenedValue: float, target: float, unit: str, raw: dict[str, Any]
) -> Result:
    return {
        "plain": plainValue,
        "hardened": hardenedValue,
        "unit": unit,
        "measure": hardenedValue,
        "target": target,
        "met": hardenedValue <= target,
        "raw": raw,
    }


# -- the cases -------------------------------------------------------------------


def caseWrapperCost(args: argparse.Namespace) -> Result:
    """
    The wrapper's own cost: a no-op observer called directly, bare and
    wrapped in SafeObserver (what benchmarks/observer_overhead.py measured).
    """
    event = makeEvent()
    # The same event every call: with identical-event suppression on, all
    # but the first few would be held back, so it is off here; its one
    # comparison on the healthy path is still made (see repeat-check).
    wrapped = SafeObserver(noop, repeatBurst=0)
    floor = MinimalGuard(noop)
    samples = alternate(
        {
            "plain": lambda: noop(event),
            "hardened": lambda: wrapped(event),
            "floor": lambda: floor(event),
        },
        args.events(200_000),
        args.rounds,
    )
    # The lambda around each call costs each the same; the difference is
    # the wrapper's. On a loaded machine every variant runs slower, and the
    # difference with it: the floor, measured in the same rounds, says how
    # much of it no pure-Python wrapper can remove.
    plainValue, hardenedValue = median(samples["plain"]), median(samples["hardened"])
    floorValue = median(samples["floor"])
    assert wrapped.stats().balanced
    cost = (hardenedValue - plainValue) * 1e6
    floorCost = (floorValue - plainValue) * 1e6
    return {
        "plain": plainValue * 1e6,
        "hardened": hardenedValue * 1e6,
        "unit": "us",
        "measure": cost,
        "target": 0.25,
        "met": cost <= 0.25,
        "raw": samples,
        "extraRows": [
            {
                "case": "wrapper-floor",
                "plain": plainValue * 1e6,
                "hardened": floorValue * 1e6,
                "unit": "us",
                "measure": floorCost,
                "target": 0.25,
                "met": floorCost <= 0.25,
            }
        ],
    }


def caseTextObserver(args: argparse.Namespace) -> Result:
    """
    A healthy textFileLogObserver on a real file, wrapped and bare, fed by
    Logger.info through a LogPublisher.
    """
    with tempfile.TemporaryDirectory() as tmp:
        a = open(Path(tmp) / "plain.log", "a")  # noqa: SIM115
        b = open(Path(tmp) / "hardened.log", "a")  # noqa: SIM115
        samples = alternate(
            {
                "plain": logCall(LogPublisher(textFileLogObserver(a))),
                "hardened": logCall(LogPublisher(SafeObserver(textFileLogObserver(b)))),
            },
            args.events(40_000),
            args.rounds,
        )
        a.close()
        b.close()
    ratio = median(samples["hardened"]) / median(samples["plain"])
    return ratioResult(1.0, ratio, 1.04, "x", samples)


def _withRaising(
    args: argparse.Namespace, makeHealthy: Callable[[str, bool], Any], events: int
) -> Result:
    """
    A healthy observer alone, and with one always-raising observer beside
    it, plain and hardened; each side's ratio to its own healthy observer
    alone.
    """
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"{n}.log") for n in range(4)]
        plainAlone = LogPublisher(makeHealthy(paths[0], False))
        plainBoth = LogPublisher(makeHealthy(paths[1], False), AlwaysRaises())
        hardenedAlone = LogPublisher(SafeObserver(makeHealthy(paths[2], True)))
        hardenedBoth = LogPublisher(
            SafeObserver(makeHealthy(paths[3], True)), SafeObserver(AlwaysRaises())
        )
        samples = alternate(
            {
                "plain alone": logCall(plainAlone),
                "plain with raising": logCall(plainBoth),
                "hardened alone": logCall(hardenedAlone),
                "hardened with raising": logCall(hardenedBoth),
            },
            events,
            args.rounds,
        )
    plainRatio = median(samples["plain with raising"]) / median(samples["plain alone"])
    hardenedRatio = median(samples["hardened with raising"]) / median(samples["hardened alone"])
    return ratioResult(plainRatio, hardenedRatio, 0.0, "x", samples)


def caseTextWithRaising(args: argparse.Namespace) -> Result:
    """
    textFileLogObserver plus one always-raising observer, against the text
    observer alone.
    """
    files: list[Any] = []

    def text(path: str, hardened: bool) -> Any:
        f = open(path, "a")  # noqa: SIM115
        files.append(f)
        return textFileLogObserver(f)

    result = _withRaising(args, text, args.events(10_000))
    for f in files:
        f.close()
    result["target"] = 1.05
    result["met"] = result["measure"] <= 1.05
    return result


def caseBridgeWithRaising(args: argparse.Namespace) -> Result:
    """
    Twisted's STDLibLogObserver to a healthy stdlib FileHandler plus one
    always-raising observer, against the bridge alone. Hardened: the
    observers wrapped in SafeObserver, the handler in SafeHandler.
    """
    import logging

    from twisted.logger import STDLibLogObserver

    from twisted_safelog import SafeHandler

    def bridge(path: str, hardened: bool) -> Any:
        name = f"bench.{Path(path).stem}"
        logger = logging.getLogger(name)
        logger.propagate = False
        handler: logging.Handler = logging.FileHandler(path)
        if hardened:
            handler = SafeHandler(handler)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        return STDLibLogObserver(name)

    result = _withRaising(args, bridge, args.events(10_000))
    result["target"] = 1.02
    result["met"] = result["measure"] <= 1.02
    return result


def caseFileSink(args: argparse.Namespace) -> Result:
    """
    safeFileLogObserver(path) against textFileLogObserver(open(path, "a")),
    both on a real file, fed by Logger.info through a LogPublisher.
    """
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "plain.log", "a") as plainFile:
        hardened = safeFileLogObserver(Path(tmp) / "hardened.log")
        samples = alternate(
            {
                "plain": logCall(LogPublisher(textFileLogObserver(plainFile))),
                "hardened": logCall(LogPublisher(hardened)),
            },
            args.events(40_000),
            args.rounds,
        )
        assert hardened.stats().balanced
        hardened.writer.close()
    ratio = median(samples["hardened"]) / median(samples["plain"])
    return ratioResult(1.0, ratio, 1.05, "x", samples)


def caseSlowSink(args: argparse.Namespace) -> Result:
    """
    A sink that takes 10 ms per write: what one call costs the caller, bare
    (plain Twisted: the whole 10 ms), and behind NonBlockingObserver,
    against the hardened fast path (SafeObserver around a no-op).
    """

    def slow(event: LogEvent) -> None:
        time.sleep(0.010)

    def callerCost(observer: Callable[[LogEvent], None], events: int) -> list[float]:
        costs = []
        for n in range(events):
            event = makeEvent(n)
            start = time.perf_counter()
            observer(event)
            costs.append(time.perf_counter() - start)
        return costs

    nonBlocking = NonBlockingObserver(slow, maxQueue=1_000_000)
    fast = SafeObserver(noop)
    samples: dict[str, list[float]] = {"plain": [], "hardened": [], "fast path": []}
    slowEvents = max(int(50 * args.scale), 5)
    fastEvents = args.events(20_000)
    callerCost(nonBlocking, 10)
    callerCost(fast, 1000)
    for _ in range(args.rounds):
        samples["plain"].append(median(callerCost(slow, slowEvents)))
        samples["hardened"].append(median(callerCost(nonBlocking, fastEvents)))
        samples["fast path"].append(median(callerCost(fast, fastEvents)))
    nonBlocking.stop(0)
    hardenedValue = median(samples["hardened"])
    ratio = hardenedValue / median(samples["fast path"])
    return {
        "plain": median(samples["plain"]) * 1e6,
        "hardened": hardenedValue * 1e6,
        "unit": "us",
        "measure": ratio,
        "measureUnit": "x fast path",
        "target": 2.0,
        "met": ratio <= 2.0,
        "raw": samples,
    }


def caseRepeatCheck(args: argparse.Namespace) -> Result:
    """
    What identical-event suppression adds to the healthy path: one
    comparison of the delivery count, which the healthy path makes anyway,
    with the filter's gate. Timed alone (in a whole delivery it is below
    the noise): the count, and the count compared.
    """
    import timeit

    setup = "from twisted_safelog import SafeObserver; self = SafeObserver(print)"
    variants = {
        "plain": "next(self._fastTicks)",
        "hardened": "if next(self._fastTicks) >= self._repeatGate:\n    pass",
    }
    number = args.events(1_000_000)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(args.rounds):
        for name in variants if n % 2 == 0 else reversed(list(variants)):
            samples[name].append(timeit.timeit(variants[name], setup, number=number) / number)
    plainValue, hardenedValue = median(samples["plain"]), median(samples["hardened"])
    cost = (hardenedValue - plainValue) * 1e6
    return {
        "plain": plainValue * 1e6,
        "hardened": hardenedValue * 1e6,
        "unit": "us",
        "measure": cost,
        "target": 0.03,
        "met": cost <= 0.03,
        "raw": samples,
    }


def caseRepeatFlood(args: argparse.Namespace) -> Result:
    """
    One line logged again and again (an application stuck in a retry loop)
    into textFileLogObserver on a real file: plain writes every copy;
    hardened (safeFileLogObserver, suppression on by default) writes the
    burst allowance and a "repeated N times" line per second.
    """
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "plain.log", "a") as plainFile:
        hardened = safeFileLogObserver(Path(tmp) / "hardened.log")
        plain = Logger(namespace="bench", observer=LogPublisher(textFileLogObserver(plainFile)))
        held = Logger(namespace="bench", observer=LogPublisher(hardened))
        samples = alternate(
            {
                "plain": lambda: plain.warn("upstream refused; retrying"),
                "hardened": lambda: held.warn("upstream refused; retrying"),
            },
            args.events(40_000),
            args.rounds,
        )
        stats = hardened.stats()
        assert stats.balanced
        hardened.writer.close()
    ratio = median(samples["hardened"]) / median(samples["plain"])
    result = ratioResult(1.0, ratio, 1.0, "x", samples)
    result["delivered"] = stats.delivered
    result["received"] = stats.received
    return result


CASES: dict[str, Callable[[argparse.Namespace], Result]] = {
    "wrapper-cost": caseWrapperCost,
    "text-observer": caseTextObserver,
    "text-with-raising": caseTextWithRaising,
    "bridge-with-raising": caseBridgeWithRaising,
    "file-sink": caseFileSink,
    "slow-sink": caseSlowSink,
    "repeat-check": caseRepeatCheck,
    "repeat-flood": caseRepeatFlood,
}


def main() -> None:
    from growth import caseGrowth
    from incident import caseSeedIncident
    from webapp import caseWebApp

    CASES["seed-incident"] = caseSeedIncident
    CASES["growth"] = caseGrowth
    CASES["twistd"] = caseWebApp
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=5.0, help="twistd load per run")
    args = parser.parse_args()
    args.events = lambda n: max(int(n * args.scale), 10)
    result = CASES[args.case](args)
    result["case"] = args.case
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    os.chdir(ROOT)
    main()

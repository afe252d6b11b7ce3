"""
Instructions per event, plain and hardened, counted by valgrind's
cachegrind: the measure to decide by on a shared, noisy machine (timings
there move by tens of percent from one run to the next; instruction counts
by a fraction of one).

    python benchmarks/instructions.py [CASE ...] [--events N]

runs each side of each case twice under cachegrind, with N and 2N events,
so that start-up cancels out, and prints the instructions per event of
each side and their ratio (or difference). Needs valgrind (Debian package
C{valgrind}); about a minute per case.

    python benchmarks/instructions.py --run CASE SIDE N

is what runs under cachegrind: the set-up, then N events.

The C{twistd-request} case counts the whole server instead: the incident
web application (C{examples/incident.tac}) under a real twistd run by
cachegrind, plain and with C{--logger=twisted_safelog.observer}, answering
N and then 2N requests from one keep-alive client, one at a time, spread
evenly over the same time in both runs: the instructions of every thread of
the server per request, the application's and Twisted's included (what
runs per second, not per request -- timers, the log file's path check every
0.1 s -- is the same in both runs, and cancels out). Run about fifty
times slower, the hardened server's events come at a few a second, under
the rate from which the worker waits for more instead of being woken for
each (C{_workloop.BATCH_RATE}): its count includes a wake-up per event,
which a server at full speed does not pay. C{twistd-request-sync} is the
same with synchronous delivery (C{TWISTED_SAFELOG_NONBLOCKING=0}) on the
hardened side: the hardened chain on the reactor thread, without the
hand-off to the worker.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

Call = Callable[[int], None]

#: Under cachegrind code runs about fifty times slower, so a second holds
#: fifty times fewer events: identical-event suppression, which samples
#: about 64 events per repeatInterval, would look at a fiftieth of all
#: events instead of a few in ten thousand. A longer interval keeps the
#: share it looks at what it is at full speed; a later first probe keeps
#: the raising observers quarantined for the whole run, as at full speed.
SLOW = {"repeatInterval": 60.0, "resetTimeout": 50.0}


def _logCall(*observers: Any) -> Call:
    from twisted.logger import Logger, LogPublisher

    log = Logger(namespace="bench", observer=LogPublisher(*observers))

    def call(n: int) -> None:
        log.info(
            "GET {path} -> {code} (request {request})", path="/chart-data", code=200, request=n
        )

    return call


def _raising(event: Any) -> None:
    raise OSError("this observer is broken")


def _noop(event: Any) -> None:
    pass


def wrapperCost(side: str, tmp: str) -> Call:
    from cases import makeEvent

    from twisted_safelog import SafeObserver

    event = makeEvent()
    observer = _noop if side == "plain" else SafeObserver(_noop, repeatBurst=0)

    def call(n: int) -> None:
        observer(event)

    return call


def textObserver(side: str, tmp: str) -> Call:
    from twisted.logger import textFileLogObserver

    from twisted_safelog import SafeObserver

    f = open(Path(tmp) / "text.log", "a")  # noqa: SIM115
    observer = textFileLogObserver(f)
    return _logCall(observer if side == "plain" else SafeObserver(observer, **SLOW))


def textWithRaising(side: str, tmp: str) -> Call:
    """
    Hardened only: the text observer alone ("plain" here), and with a
    quarantined raising observer beside it ("hardened").
    """
    from twisted.logger import textFileLogObserver

    from twisted_safelog import SafeObserver

    f = open(Path(tmp) / "text.log", "a")  # noqa: SIM115
    text = SafeObserver(textFileLogObserver(f), **SLOW)
    if side == "plain":
        return _logCall(text)
    return _logCall(text, SafeObserver(_raising, **SLOW))


def bridgeWithRaising(side: str, tmp: str) -> Call:
    """
    Hardened only: the bridge to a SafeHandler alone ("plain" here), and
    with a quarantined raising observer beside it ("hardened").
    """
    from twisted.logger import STDLibLogObserver

    from twisted_safelog import SafeHandler, SafeObserver

    logger = logging.getLogger("bench.bridge")
    logger.propagate = False
    logger.addHandler(SafeHandler(logging.FileHandler(Path(tmp) / "bridge.log"), **SLOW))
    logger.setLevel(logging.INFO)
    bridge = SafeObserver(STDLibLogObserver("bench.bridge"), **SLOW)
    if side == "plain":
        return _logCall(bridge)
    return _logCall(bridge, SafeObserver(_raising, **SLOW))


def fileSink(side: str, tmp: str) -> Call:
    from twisted.logger import textFileLogObserver

    from twisted_safelog import safeFileLogObserver

    path = Path(tmp) / "file.log"
    if side == "plain":
        return _logCall(textFileLogObserver(open(path, "a")))
    return _logCall(safeFileLogObserver(path, **SLOW))


def slowSink(side: str, tmp: str) -> Call:
    """
    The caller's side only: "plain" is the hardened fast path (SafeObserver
    around a no-op), "hardened" NonBlockingObserver around a sink that
    never returns during the run (so the worker thread adds nothing).
    """
    from cases import makeEvent

    from twisted_safelog import NonBlockingObserver, SafeObserver

    if side == "plain":
        observer: Any = SafeObserver(_noop, **SLOW)
    else:
        gate = threading.Event()

        def stuck(event: Any) -> None:
            gate.wait()

        observer = NonBlockingObserver(SafeObserver(stuck, **SLOW), maxQueue=1_000_000)
    events = [makeEvent(n) for n in range(40_000)]
    # The hardened side's queue keeps every event: the cycle collector's
    # passes over it, whose number depends on when its thresholds are
    # crossed, swung this case by half from one run to the next (9,200 to
    # 16,400 instructions an event). Counted without them, on both sides:
    # the call, not the collector.
    gc.disable()

    def call(n: int) -> None:
        observer(events[n % 40_000])

    return call


def repeatCheck(side: str, tmp: str) -> Call:
    """
    What identical-event suppression adds to a healthy sink's events, all
    distinct (an access log at full speed): SafeObserver around a no-op,
    suppression off ("plain") and on ("hardened", its interval stretched as
    the run is slowed: see L{SLOW}).
    """
    from cases import makeEvent

    from twisted_safelog import SafeObserver

    settings: dict[str, Any] = {"repeatBurst": 0} if side == "plain" else SLOW
    observer = SafeObserver(_noop, **settings)
    events = [makeEvent(n) for n in range(40_000)]

    def call(n: int) -> None:
        observer(events[n % 40_000])

    return call


def nonBlockingRepeatCheck(side: str, tmp: str) -> Call:
    """
    The same on NonBlockingObserver's caller side, where suppression
    happens before the queue (its sink never returns during the run).
    """
    from cases import makeEvent

    from twisted_safelog import NonBlockingObserver, SafeObserver

    gate = threading.Event()

    def stuck(event: Any) -> None:
        gate.wait()

    settings: dict[str, Any] = {"repeatBurst": 0} if side == "plain" else SLOW
    observer = NonBlockingObserver(SafeObserver(stuck, **settings), maxQueue=1_000_000)
    events = [makeEvent(n) for n in range(40_000)]

    def call(n: int) -> None:
        observer(events[n % 40_000])

    return call


def nonBlockingHandOff(side: str, tmp: str) -> Call:
    """
    The hand-off's cost per event at full speed: L{NonBlockingObserver}
    around a no-op L{SafeObserver} against that L{SafeObserver} alone, in a
    steady stream (20 events, then 0.5 ms), where the worker takes what came
    in every C{BATCH_WAIT} instead of being woken for each event; both
    sides' sinks count. Its worker's timing decides part of the count.
    """
    from cases import makeEvent

    from twisted_safelog import NonBlockingObserver, SafeObserver

    sink = SafeObserver(_noop, repeatBurst=0)
    observer: Callable[[Any], None] = sink
    if side != "plain":
        queued = NonBlockingObserver(sink)
        observer = queued
        # Counted only once the queue is delivered.
        _finish.append(lambda: queued.flush(60))
    events = [makeEvent(n) for n in range(1000)]

    def call(n: int) -> None:
        observer(events[n % 1000])
        if n % 20 == 19:
            time.sleep(0.0005)

    return call


#: What a case needs done after its events and before the count ends.
_finish: list[Callable[[], object]] = []

CASES: dict[str, Callable[[str, str], Call]] = {
    "wrapper-cost": wrapperCost,
    "text-observer": textObserver,
    "text-with-raising": textWithRaising,
    "bridge-with-raising": bridgeWithRaising,
    "file-sink": fileSink,
    "slow-sink": slowSink,
    "repeat-check": repeatCheck,
    "nonblocking-repeat-check": nonBlockingRepeatCheck,
    "nonblocking-hand-off": nonBlockingHandOff,
}


def twistdRequests(side: str, requests: int, seconds: float, synchronous: bool = False) -> int:
    """
    The instructions of a twistd serving the incident application, under
    cachegrind, from its start until it has answered C{requests} requests,
    spread evenly over C{seconds}, and ended (SIGTERM) once they have
    passed; C{synchronous}: the hardened side delivers on the reactor
    thread.
    """
    import http.client
    import signal

    import webapp

    with tempfile.TemporaryDirectory() as tmp:
        port = webapp.freePort()
        command, env = webapp.serverCommand(f"{side} healthy", tmp, port)
        # The app's watchdog off: it looks at /proc twice a second, a cost
        # per second, not per request, that the slowed run would spread over
        # the requests (and it must not end the slowed run).
        env.update(CHARTAPP_WEDGE_SECONDS="0", PYTHONHASHSEED="0")
        if synchronous and side == "hardened":
            env["TWISTED_SAFELOG_NONBLOCKING"] = "0"
        out = Path(tmp) / "cg.out"
        process = subprocess.Popen(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
                *command,
            ],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if not webapp._waitForHealth(port, process, 300.0):
                raise SystemExit(f"twistd-request {side}: the server did not start")
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            start = time.monotonic()
            for n in range(requests):
                time.sleep(max(0.0, start + n * seconds / requests - time.monotonic()))
                connection.request("GET", "/chart-data?series=load")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"twistd-request {side}: status {response.status}")
            connection.close()
            late = time.monotonic() - start - seconds
            if late > 0.05 * seconds:
                raise SystemExit(
                    f"twistd-request {side}: {requests} requests took {late:.0f} s more than "
                    f"{seconds:.0f}; fewer requests (--events) or a quieter machine"
                )
            time.sleep(max(0.0, start + seconds - time.monotonic()))
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=300)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        match = re.search(r"I\s+refs:\s+([\d,]+)", err)
        if match is None:
            raise SystemExit(f"cachegrind failed for twistd-request {side}:\n{err[-2000:]}")
        return int(match.group(1).replace(",", ""))


SERVER_CASES: dict[str, Callable[[str, int, float], int]] = {
    "twistd-request": twistdRequests,
    "twistd-request-sync": functools.partial(twistdRequests, synchronous=True),
}

#: Seconds a request of the server cases is given in the longer run (under
#: cachegrind the incident application answers about 20 a second).
SECONDS_PER_REQUEST = 0.2


def run(case: str, side: str, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        call = CASES[case](side, tmp)
        # Warm up: the breaker opens, caches fill, specialisation settles.
        for n in range(200):
            call(n)
        for n in range(events):
            call(n)
        for finish in _finish:
            finish()
    os._exit(0)  # not the worker threads' shutdown


def count(case: str, side: str, events: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        result = subprocess.run(
            [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                f"--cachegrind-out-file={out}",
                sys.executable,
                __file__,
                "--run",
                case,
                side,
                str(events),
            ],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "PYTHONHASHSEED": "0",
                "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{HERE}",
            },
        )
        if result.returncode:
            raise SystemExit(f"{case} {side} failed:\n{result.stderr[-2000:]}")
        match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
        if match is None:
            raise SystemExit(f"cachegrind failed for {case} {side}:\n{result.stderr[-2000:]}")
        return int(match.group(1).replace(",", ""))


def perEvent(case: str, side: str, events: int) -> float:
    if case in SERVER_CASES:
        # A request of the incident application is about ten events'
        # worth of work; under cachegrind it takes a fifth of a second.
        requests = max(1, events // 50)
        counter = SERVER_CASES[case]
        seconds = max(10.0, 2 * requests * SECONDS_PER_REQUEST)
        return (counter(side, 2 * requests, seconds) - counter(side, requests, seconds)) / requests
    return (count(case, side, 2 * events) - count(case, side, events)) / events


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    known = [*CASES, *SERVER_CASES]
    parser.add_argument("cases", nargs="*", help=f"some of {', '.join(known)} (default: all)")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--run", nargs=3, metavar=("CASE", "SIDE", "N"))
    args = parser.parse_args(argv)
    if args.run:
        case, side, n = args.run
        run(case, side, int(n))
        return 0
    unknown = set(args.cases) - set(known)
    if unknown:
        parser.error(f"unknown cases {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    for case in args.cases or known:
        plain, hardened = (perEvent(case, side, args.events) for side in ("plain", "hardened"))
        print(
            f"{case:22} plain {plain:9.0f}  hardened {hardened:9.0f}  "
            f"ratio {hardened / plain:6.3f}  difference {hardened - plain:8.0f} "
            f"instructions/{'request' if case in SERVER_CASES else 'event'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))

"""
Logging to syslog without ever making the reactor wait, and without losing
events when the syslog daemon goes away for a while.

A reactor logs at a steady rate through
NonBlockingObserver -> SafeObserver(StdlibObserver) -> SafeHandler(SysLogHandler,
retryFailed=True) to a unix socket, while a LoopingCall measures how late the
reactor runs; at the end it writes the counts and the worst lag as JSON.
tests/test_syslog.py runs it against a real rsyslog daemon that it stops and
restarts in the middle.

    python examples/syslog_app.py SOCKET RESULTS.json [--duration S] [--rate N] [--no-replay]
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import time

from twisted.internet import reactor, task
from twisted.logger import Logger, LogPublisher

from twisted_safelog import (
    NonBlockingObserver,
    Reporter,
    SafeHandler,
    SafeObserver,
    StdlibObserver,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("results")
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--no-replay", action="store_true", help="no buffer, no retries")
    args = parser.parse_args()

    reports: list[str] = []
    reporter = Reporter(write=reports.append, interval=1.0)
    syslog = logging.handlers.SysLogHandler(address=args.socket)
    syslog.setFormatter(logging.Formatter("safelog: %(message)s"))
    handler = SafeHandler(
        syslog,
        name="syslog",
        retryFailed=not args.no_replay,
        maxAttempts=1000,
        bufferSize=0 if args.no_replay else 100_000,
        resetTimeout=0.05,
        maxResetTimeout=0.2,
        reporter=reporter,
    )
    stdlibLogger = logging.getLogger("syslogtest")
    stdlibLogger.propagate = False
    stdlibLogger.setLevel(logging.INFO)
    stdlibLogger.addHandler(handler)
    bridge = SafeObserver(StdlibObserver("syslogtest"), reporter=reporter)
    nonBlocking = NonBlockingObserver(bridge, maxQueue=100_000, reporter=reporter)
    log = Logger(namespace="syslogtest", observer=LogPublisher(nonBlocking))

    lags: list[float] = []
    interval = 0.01
    last = [time.monotonic()]

    lagTimes: list[float] = []

    def probe() -> None:
        now = time.monotonic()
        lags.append(now - last[0] - interval)
        lagTimes.append(now)
        last[0] = now

    sent = [0]
    perTick = max(1, int(args.rate * interval))
    # (time.monotonic(), events sent so far) at each tick: the test compares
    # the pace while the daemon is down with the pace before.
    ticks: list[tuple[float, int]] = []

    def emit() -> None:
        for _ in range(perTick):
            log.info("event {n}", n=sent[0])
            sent[0] += 1
        ticks.append((time.monotonic(), sent[0]))

    probeLoop = task.LoopingCall(probe)
    emitLoop = task.LoopingCall(emit)
    start = time.monotonic()

    def finish() -> None:
        emitLoop.stop()
        settleUntil = time.monotonic() + args.settle

        def settled() -> None:
            quiet = (
                not nonBlocking.stats().buffered
                and not handler.stats().buffered
                and not bridge.stats().buffered
            )
            if quiet or time.monotonic() > settleUntil:
                checker.stop()
                nonBlocking.flush(5)
                probeLoop.stop()
                write()
                reactor.stop()

        checker = task.LoopingCall(settled)
        checker.start(0.05)

    def write() -> None:
        result = {
            "sent": sent[0],
            "elapsed": time.monotonic() - start,
            "worstLagSeconds": max(lags),
            "p99LagSeconds": sorted(lags)[int(len(lags) * 0.99)],
            "lags": list(zip(lagTimes, lags, strict=True)),
            "ticks": ticks,
            "nonBlocking": nonBlocking.stats().asDict(),
            "bridge": bridge.stats().asDict(),
            "handler": handler.stats().asDict(),
            "reports": reports,
        }
        with open(args.results, "w") as f:
            json.dump(result, f, indent=1)

    probeLoop.start(interval, now=False)
    emitLoop.start(interval)
    reactor.callLater(args.duration, finish)
    reactor.run()


if __name__ == "__main__":
    main()

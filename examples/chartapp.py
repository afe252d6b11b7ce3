"""
The incident's application, reduced to its logging: a twisted.web site that
serves chart data, set up the way its framework set up logging, with one
stdlib rotating file handler shared by stdlib logging and (through
STDLibLogObserver) Twisted logging.

CHARTAPP_BREAK_LOGGING=1 breaks the handler the way it broke in production:
every rollover renames into an archive directory that is not there, so
every log call fails and the handler's traceback goes to sys.stderr, which
under twistd is the log again.

Without twisted-safelog that loop wedges the process: it serves /health,
then the first request that logs (or the shutdown) never finishes, SIGTERM
is never handled, and the log files grow by megabytes a second. So this
example bounds itself: a watchdog thread ends the process with status 3 (and
one line on stderr) when the reactor has not run for CHARTAPP_WEDGE_SECONDS
(default 10) or the log files it has open, with their rotated generations,
pass CHARTAPP_MAX_LOG_BYTES (default 50,000,000). CHARTAPP_WEDGE_SECONDS=0
turns the watchdog off (benchmarks/instructions.py counts a healthy server's
instructions per request, which its twice-a-second look at /proc would
swamp under valgrind).

Environment: CHARTAPP_PORT (default 8080), CHARTAPP_LOG_DIR (default
"logs", created if missing), CHARTAPP_BREAK_LOGGING (0 or 1),
CHARTAPP_LATE_LOGGING (0 or 1: set up the framework's logging only once the
reactor runs, after twistd has begun logging, as frameworks that configure
logging in startService do), CHARTAPP_WEDGE_SECONDS, CHARTAPP_MAX_LOG_BYTES.
"""

from __future__ import annotations

import glob
import json
import logging
import logging.handlers
import os
import random
import threading
import time

from twisted.application import service, strports
from twisted.logger import Logger, STDLibLogObserver, globalLogPublisher
from twisted.web import resource, server

log = Logger(namespace="chartapp")
stdlibLog = logging.getLogger("chartapp.data")


def setUpFrameworkLogging(logDir: str, broken: bool) -> logging.Handler:
    """
    What the framework did: a rotating file for everything, stdlib and
    Twisted alike.
    """
    handler = logging.handlers.RotatingFileHandler(
        os.path.join(logDir, "chartapp.log"),
        maxBytes=1000 if broken else 10_000_000,
        backupCount=5,
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    if broken:
        archive = os.path.join(logDir, "archive-that-was-deleted")
        handler.namer = lambda name: os.path.join(archive, os.path.basename(name))
        handler.rotator = os.rename
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    globalLogPublisher.addObserver(STDLibLogObserver())
    return handler


class ChartData(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        series = request.args.get(b"series", [b"load"])[0].decode("ascii", "replace")
        points = [round(random.random() * 100, 2) for _ in range(24)]
        log.info("served chart data for {series} ({n} points)", series=series, n=len(points))
        stdlibLog.info("chart data computed for %s", series)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"series": series, "points": points}).encode()


class Health(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return b"ok\n"


def makeSite() -> server.Site:
    root = resource.Resource()
    root.putChild(b"chart-data", ChartData())
    root.putChild(b"health", Health())
    return server.Site(root)


def openLogBytes() -> int:
    """
    The size of every C{.log} file this process has open, with its rotated
    generations (Linux's /proc; 0 elsewhere).
    """
    names = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if ".log" in os.path.basename(target):
                names.add(target)
    except OSError:
        return 0
    paths = {p for name in names for p in [name, *glob.glob(glob.escape(name) + ".*")]}
    total = 0
    for path in paths:
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total


def startWatchdog(wedgeSeconds: float, maxLogBytes: int) -> None:
    """
    End the process (status 3, one line on fd 2) if the reactor does not run
    for C{wedgeSeconds} (from now: the loop can start before the reactor
    does) or the open log files pass C{maxLogBytes}: the bound on the
    unhardened incident. A thread, because a wedged reactor runs nothing
    (started again in a forked child, for twistd's daemon mode); C{os._exit},
    because a wedged process handles no signal.
    """
    from twisted.internet import reactor, task

    beat = [time.monotonic()]

    def tick() -> None:
        beat[0] = time.monotonic()

    reactor.callWhenRunning(task.LoopingCall(tick).start, 0.5)  # type: ignore[attr-defined]

    def watch() -> None:
        while True:
            time.sleep(0.5)
            stuck = time.monotonic() - beat[0]
            size = openLogBytes()
            if stuck > wedgeSeconds or size > maxLogBytes:
                why = (
                    f"the reactor has not run for {stuck:.0f} s"
                    if stuck > wedgeSeconds
                    else f"the log files hold {size:,} bytes"
                )
                os.write(2, f"chartapp: wedged ({why}); exiting with status 3\n".encode())
                os._exit(3)

    def startThread() -> None:
        beat[0] = time.monotonic()
        threading.Thread(target=watch, name="chartapp-watchdog", daemon=True).start()

    startThread()
    os.register_at_fork(after_in_child=startThread)


def makeService() -> service.IService:
    from twisted.internet import reactor

    logDir = os.environ.get("CHARTAPP_LOG_DIR", "logs")
    os.makedirs(logDir, exist_ok=True)
    broken = os.environ.get("CHARTAPP_BREAK_LOGGING", "0") == "1"
    wedgeSeconds = float(os.environ.get("CHARTAPP_WEDGE_SECONDS", "10"))
    if wedgeSeconds > 0:
        startWatchdog(wedgeSeconds, int(os.environ.get("CHARTAPP_MAX_LOG_BYTES", "50000000")))
    if os.environ.get("CHARTAPP_LATE_LOGGING", "0") == "1":
        reactor.callWhenRunning(setUpFrameworkLogging, logDir, broken)  # type: ignore[attr-defined]
    else:
        setUpFrameworkLogging(logDir, broken)
    port = os.environ.get("CHARTAPP_PORT", "8080")
    return strports.service(f"tcp:{port}:interface=127.0.0.1", makeSite())

"""
The incident's application, reduced to its logging: a twisted.web site that
serves chart data, set up the way its framework set up logging, with one
stdlib rotating file handler shared by stdlib logging and (through
STDLibLogObserver) Twisted logging.

CHARTAPP_BREAK_LOGGING=1 breaks the handler the way it broke in production:
every rollover renames into an archive directory that is not there, so
every log call fails and the handler's traceback goes to sys.stderr, which
under twistd is the log again.

Environment: CHARTAPP_PORT (default 8080), CHARTAPP_LOG_DIR (default the
current directory), CHARTAPP_BREAK_LOGGING (0 or 1), CHARTAPP_LATE_LOGGING
(0 or 1: set up the framework's logging only once the reactor runs, after
twistd has begun logging, as frameworks that configure logging in
startService do).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import random

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


def makeService() -> service.IService:
    logDir = os.environ.get("CHARTAPP_LOG_DIR", ".")
    broken = os.environ.get("CHARTAPP_BREAK_LOGGING", "0") == "1"
    if os.environ.get("CHARTAPP_LATE_LOGGING", "0") == "1":
        from twisted.internet import reactor

        reactor.callWhenRunning(setUpFrameworkLogging, logDir, broken)  # type: ignore[attr-defined]
    else:
        setUpFrameworkLogging(logDir, broken)
    port = os.environ.get("CHARTAPP_PORT", "8080")
    return strports.service(f"tcp:{port}:interface=127.0.0.1", makeSite())

"""
An application that logs with structlog's Twisted integration
(C{structlog.twisted}): structlog renders JSON through Twisted's legacy
C{log.msg}, and a second structlog sink (C{JSONLogObserverWrapper} around a
C{PlainFileLogObserver}) writes JSON lines to the file named by
C{STRUCTLOG_SINK}. It logs 20 events, optionally closes that sink's file
(C{STRUCTLOG_CLOSE_SINK=1}) and logs 20 more, then stops.

    twistd -n --logfile=app.log -y realapps/structlog_app.tac
    twistd -n --logger=twisted_safelog.observer --logfile=app.log -y realapps/structlog_app.tac
"""

import os

import structlog
from structlog.twisted import (
    BoundLogger,
    EventAdapter,
    JSONLogObserverWrapper,
    JSONRenderer,
    LoggerFactory,
    PlainFileLogObserver,
)
from twisted.application import service
from twisted.internet import reactor
from twisted.python import log as legacyLog

structlog.configure(
    processors=[EventAdapter(JSONRenderer(sort_keys=True))],
    logger_factory=LoggerFactory(),
    wrapper_class=BoundLogger,
    cache_logger_on_first_use=False,
)

sinkFile = open(os.environ["STRUCTLOG_SINK"], "a")  # noqa: SIM115 (closed on purpose below)
legacyLog.addObserver(JSONLogObserverWrapper(PlainFileLogObserver(sinkFile)))

logger = structlog.get_logger("app")
application = service.Application("structlog-app")


def work() -> None:
    for n in range(20):
        logger.msg("tick", n=n)
    if os.environ.get("STRUCTLOG_CLOSE_SINK"):
        sinkFile.close()
        for n in range(20, 40):
            logger.msg("tick", n=n)
    logger.msg("done")
    reactor.stop()


reactor.callWhenRunning(work)

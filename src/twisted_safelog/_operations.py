# -*- test-case-name: tests.test_operations -*-
"""
What the twistd factory sets up for operators: the status file
(C{TWISTED_SAFELOG_STATUS_FILE}) and Prometheus metrics on 127.0.0.1
(C{TWISTED_SAFELOG_METRICS_PORT}).

Both are checked when the factory runs, so a bad path or a busy port ends
twistd at start-up with one line; neither starts a thread before twistd
forks (the status file's writer starts once the reactor runs).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable
from typing import Any

from ._errors import ConfigurationError
from ._settings import ENV_PREFIX, Settings
from ._statusfile import RecentReports, StatusFile

__all__ = ["REPORTS_FALLBACK", "FirstThatWorks", "serveMetrics", "statusFileFor"]

#: Where a daemon's reports go when its log file cannot take them and no
#: status file or reports path is set: this file in twistd's --rundir,
#: created only then.
REPORTS_FALLBACK = "twisted-safelog-reports.log"

#: Where C{/metrics} listens unless told otherwise.
METRICS_INTERFACE = "127.0.0.1"


class FirstThatWorks:
    """
    Write each report to the first writer that takes it: a daemon's log
    file, and when that is the broken sink, a fallback file. A writer that
    raises or returns C{False} did not take it. Raises what the last writer
    raised if none took it (the reporter contains it).
    """

    def __init__(self, *writers: Callable[[str], object]) -> None:
        self.writers = writers

    def __repr__(self) -> str:
        return f"FirstThatWorks{self.writers!r}"

    def __call__(self, text: str) -> None:
        for write in self.writers[:-1]:
            try:
                if write(text) is not False:
                    return
            except Exception:
                # Broken: the next one gets it.
                pass
        self.writers[-1](text)


def reportsFallback(rundir: str | None) -> Callable[[str], object]:
    """
    The writer for L{REPORTS_FALLBACK} in C{rundir} (resolved now: twistd
    changes into its run directory after the factory has run). Nothing is
    created until a report is written to it.
    """
    from ._file import LogFileWriter

    path = os.path.abspath(os.path.join(rundir or ".", REPORTS_FALLBACK))
    return LogFileWriter(path).write


def statusFileFor(settings: Settings, reports: RecentReports | None) -> StatusFile | None:
    """
    The status file the settings ask for, its path checked; L{None} if none.
    """
    if not settings.status_file:
        return None
    interval = settings.status_interval
    if not math.isfinite(interval):
        variable = f"{ENV_PREFIX}STATUS_INTERVAL"
        given = os.environ.get(variable, interval)
        raise ConfigurationError(f"{variable}={given!r} is not valid; use a finite number > 0")
    statusFile = StatusFile(settings.status_file, interval, reports=reports)
    try:
        statusFile.checkPath()
    except ConfigurationError as error:
        raise ConfigurationError(f"{ENV_PREFIX}STATUS_FILE: {error}") from None
    return statusFile


def serveMetrics(settings: Settings) -> str | None:
    """
    Serve C{prometheus_client}'s default registry, with the twisted-safelog
    collector registered on it, at C{/metrics} on the configured interface
    and port; return its URL (L{None} if no port is configured). The port
    listens now, before twistd daemonizes (the socket is inherited), so a
    busy port fails at start-up. Requests are not written to the log.
    """
    if settings.metrics_port is None:
        return None
    variable = f"{ENV_PREFIX}METRICS_PORT={settings.metrics_port}"
    try:
        from prometheus_client.twisted import MetricsResource

        from .prometheus import register
    except ImportError:
        raise ConfigurationError(
            f"{variable} needs prometheus_client: pip install 'twisted-safelog[prometheus]'"
        ) from None
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class QuietSite(Site):
        # A scrape every few seconds must not fill the log.
        noisy = False

        def logPrefix(self) -> str:
            return "twisted-safelog metrics"

        def log(self, request: Any) -> None:
            pass

    register()
    # Twisted's web and reactor annotations differ between the versions we
    # support; these are the documented calls.
    reactor: Any = _reactor
    root: Any = Resource()  # type: ignore[no-untyped-call]
    metricsResource: Any = MetricsResource
    root.putChild(b"metrics", metricsResource())
    site: Any = QuietSite(root)  # type: ignore[no-untyped-call]
    # Empty (a blank line in a unit file) is the default, not every
    # interface of the host, which is what Twisted makes of "".
    interface = settings.metrics_interface.strip() or METRICS_INTERFACE
    try:
        port: Any = reactor.listenTCP(settings.metrics_port, site, interface=interface)
    except CannotListenError as error:
        reason = getattr(error.socketError, "strerror", None) or error.socketError
        where = f"cannot listen on {interface}:{settings.metrics_port} ({reason})"
        if getattr(error.socketError, "errno", None) not in (errno.EADDRINUSE, errno.EACCES):
            # The address, not the port: not on this host, or not a name.
            raise ConfigurationError(
                f"{ENV_PREFIX}METRICS_INTERFACE={interface!r}: {where}; "
                "give an address of this host (default 127.0.0.1)"
            ) from None
        raise ConfigurationError(f"{variable}: {where}; choose another port") from None
    address = port.getHost()
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"http://{host}:{address.port}/metrics"

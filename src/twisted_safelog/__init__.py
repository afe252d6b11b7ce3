"""
twisted-safelog: Twisted logging that cannot wedge.

Hardened observers, handlers and sinks with a per-thread reentry guard, a
circuit breaker and out-of-band error reports, so that a failing log sink can
never start the feedback loop between C{twisted.logger}, a redirected
C{sys.stderr} and stdlib C{logging}.
"""

from ._breaker import BreakerState, CircuitBreaker, IClock, MonotonicClock
from ._errors import ConfigurationError
from ._file import (
    FileSink,
    LogFileWriter,
    SafeFileObserver,
    formatJSONLine,
    formatTextLine,
    safeFileLogObserver,
)
from ._handlers import (
    HandlerHardening,
    SafeHandler,
    hardenHandler,
    hardenHandlers,
    hardeningOf,
    safeHandlerFor,
    unhardenHandlers,
)
from ._install import Installation, install, installed, uninstall
from ._loops import FeedbackLoop, findFeedbackLoops
from ._nonblocking import NonBlockingObserver, OverflowPolicy
from ._policy import DEFAULT_BUFFER_SIZE, Policy
from ._registry import IHardenedSink
from ._report import (
    REPORT_PREFIX,
    FileDescriptorWriter,
    IReporter,
    Reporter,
    StreamWriter,
    defaultReporter,
    setDefaultReporter,
)
from ._safe import HardenedSink, SafeObserver
from ._stats import DropReason, SinkStats
from ._status import isHealthy, status
from ._statusfile import RecentReports, StatusFile
from ._stdlib import ORIGIN_KEY, StdlibObserver, TwistedHandler
from ._twistd import observer

__version__ = "0.1.0"

__all__ = [
    # _breaker
    "BreakerState",
    "CircuitBreaker",
    "IClock",
    "MonotonicClock",
    # _file
    "ConfigurationError",
    "FileSink",
    "LogFileWriter",
    "SafeFileObserver",
    "formatJSONLine",
    "formatTextLine",
    "safeFileLogObserver",
    # _install
    "Installation",
    "install",
    "installed",
    "uninstall",
    # _loops
    "FeedbackLoop",
    "findFeedbackLoops",
    # _nonblocking
    "NonBlockingObserver",
    "OverflowPolicy",
    # _report
    "REPORT_PREFIX",
    "FileDescriptorWriter",
    "IReporter",
    "Reporter",
    "StreamWriter",
    "defaultReporter",
    "setDefaultReporter",
    # _policy
    "DEFAULT_BUFFER_SIZE",
    "Policy",
    # _registry
    "IHardenedSink",
    # _safe
    "HardenedSink",
    "SafeObserver",
    # _stdlib
    "ORIGIN_KEY",
    "StdlibObserver",
    "TwistedHandler",
    # _handlers
    "HandlerHardening",
    "SafeHandler",
    "hardenHandler",
    "hardenHandlers",
    "hardeningOf",
    "safeHandlerFor",
    "unhardenHandlers",
    # _stats
    "DropReason",
    "SinkStats",
    # _status, _statusfile: what operators see
    "status",
    "isHealthy",
    "StatusFile",
    "RecentReports",
    # _twistd: the factory for `twistd --logger=twisted_safelog.observer`
    "observer",
]

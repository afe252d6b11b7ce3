# A .tac that chooses its own log observer, hardened with SafeObserver, and
# hardens the rest of the process (the framework's STDLibLogObserver and
# rotating handler) with install().
#
#   CHARTAPP_BREAK_LOGGING=1 .venv/bin/twistd -n --pidfile= -y examples/safe_observer.tac
#
# It logs to SAFE_EXAMPLE_LOG (default logs/safe-example.log).
import os
import sys

from twisted.application import service
from twisted.logger import ILogObserver, textFileLogObserver

from twisted_safelog import SafeObserver, install

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartapp  # noqa: E402

application = service.Application("chartapp")
chartapp.makeService().setServiceParent(application)

logPath = os.environ.get("SAFE_EXAMPLE_LOG", os.path.join("logs", "safe-example.log"))
os.makedirs(os.path.dirname(logPath) or ".", exist_ok=True)
logFile = open(logPath, "a")  # noqa: SIM115
application.setComponent(
    ILogObserver,
    SafeObserver(
        textFileLogObserver(logFile),
        name="safe-example.log",
        # While the file is quarantined, the real stderr still gets the events.
        fallback=textFileLogObserver(sys.__stderr__),
    ),
)
install()

# A .tac that chooses its own log observer, hardened with SafeObserver, and
# hardens the rest of the process (the framework's STDLibLogObserver and
# rotating handler) with install().
#
#   CHARTAPP_BREAK_LOGGING=1 SAFE_EXAMPLE_LOG=app.log twistd -n -y examples/safe_observer.tac
import os
import sys

from twisted.application import service
from twisted.logger import ILogObserver, textFileLogObserver

from twisted_safelog import SafeObserver, install

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartapp  # noqa: E402

application = service.Application("chartapp")
chartapp.makeService().setServiceParent(application)

logFile = open(os.environ.get("SAFE_EXAMPLE_LOG", "safe-example.log"), "a")  # noqa: SIM115
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

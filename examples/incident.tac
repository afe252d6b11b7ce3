# The incident's application as a twistd app.
#
#   CHARTAPP_BREAK_LOGGING=1 .venv/bin/twistd -n --pidfile= --logfile=logs/plain.log \
#       -y examples/incident.tac
#       plain twistd: serves /health, then the first request that logs starts
#       the loop and wedges it; chartapp's watchdog ends it (status 3) after
#       10 s without a reactor turn or 50 MB of logs.
#   CHARTAPP_BREAK_LOGGING=1 .venv/bin/twistd -n --pidfile= --logger=twisted_safelog.observer \
#       --logfile=logs/app.log -y examples/incident.tac
#       the same app, hardened without a code change.
import os
import sys

from twisted.application import service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartapp  # noqa: E402

application = service.Application("chartapp")
chartapp.makeService().setServiceParent(application)

# The incident's application as a twistd app.
#
#   CHARTAPP_BREAK_LOGGING=1 twistd -n -y examples/incident.tac
#       plain twistd: the first log line that fails starts the loop.
#   CHARTAPP_BREAK_LOGGING=1 twistd -n --logger=twisted_safelog.observer -y examples/incident.tac
#       the same app, hardened without a code change.
import os
import sys

from twisted.application import service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartapp  # noqa: E402

application = service.Application("chartapp")
chartapp.makeService().setServiceParent(application)

# An application that serves its own Prometheus metrics, twisted-safelog's
# among them, with prometheus_client's MetricsResource (pip install
# 'twisted-safelog[prometheus]'). It logs through a stdlib WatchedFileHandler
# (what Debian's logrotate setups use) into METRICS_APP_LOG_DIR; delete that
# directory while it runs and watch the handler's state turn "open".
#
#   METRICS_APP_LOG_DIR=/tmp/app METRICS_APP_PORT=8080 \
#   TWISTED_SAFELOG_STATUS_FILE=/tmp/app-status.json \
#       .venv/bin/twistd -n --pidfile= --logger=twisted_safelog.observer -y examples/metrics.tac
#   curl -s http://127.0.0.1:8080/metrics | grep twisted_safelog_
#   .venv/bin/python -m twisted_safelog status /tmp/app-status.json
#
# METRICS_APP_LOG_DIR defaults to logs/; it is created if missing.
import logging
import logging.handlers
import os

from prometheus_client.twisted import MetricsResource
from twisted.application import internet, service, strports
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_safelog.prometheus import register

logDir = os.environ.get("METRICS_APP_LOG_DIR", "logs")
os.makedirs(logDir, exist_ok=True)
handler = logging.handlers.WatchedFileHandler(os.path.join(logDir, "app.log"))
handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
appLog = logging.getLogger("metrics-app")

# twisted-safelog's collector on prometheus_client's default registry, beside
# the application's own metrics.
register()

root = Resource()
root.putChild(b"metrics", MetricsResource())

application = service.Application("metrics-app")
port = os.environ.get("METRICS_APP_PORT", "8080")
strports.service(f"tcp:{port}:interface=127.0.0.1", Site(root)).setServiceParent(application)
# The application's work: a line every tenth of a second.
internet.TimerService(0.1, appLog.info, "tick").setServiceParent(application)

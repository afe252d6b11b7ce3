"""
C{examples/metrics.tac} under a real twistd with the factory
(C{--logger=twisted_safelog.observer}), and what an operator reads of it:
the status file and the C{status} command.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import helpers
from .twistdprocess import EXAMPLES, environment, freePort, start

METRICS_TAC = str(EXAMPLES / "metrics.tac")
FACTORY = ["--logger=twisted_safelog.observer"]

#: Some conditions run the status command: asked every 0.1 s.
waitFor = functools.partial(helpers.waitFor, interval=0.1)


def appEnvironment(tmp: Path, appPort: int, **extra: str) -> dict[str, str]:
    return environment(METRICS_APP_LOG_DIR=str(tmp / "app"), METRICS_APP_PORT=str(appPort), **extra)


def startMetricsApp(
    tmp: Path, status: Path, interval: str, **extra: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """
    The example in the foreground (its log directory C{tmp/app} must
    exist), logging to C{tmp/twistd.log}, its status file at C{status}
    written every C{interval} seconds: (the process, the application's
    port, the log file). Stop it with L{twistdprocess.stop}.
    """
    appPort = freePort()
    env = appEnvironment(
        tmp,
        appPort,
        TWISTED_SAFELOG_STATUS_FILE=str(status),
        TWISTED_SAFELOG_STATUS_INTERVAL=interval,
        **extra,
    )
    log = tmp / "twistd.log"
    process = start(["-n", "--pidfile=", *FACTORY, f"--logfile={log}", "-y", METRICS_TAC], tmp, env)
    return process, appPort, log


def statusCommand(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "status", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def readStatus(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def sinkNamed(path: Path, fragment: str) -> dict[str, Any] | None:
    for sink in readStatus(path).get("sinks", []):
        if fragment in sink["name"]:
            return sink  # type: ignore[no-any-return]
    return None

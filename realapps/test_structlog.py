"""
structlog's Twisted integration (C{structlog.twisted}) under a real twistd,
plain and with C{--logger=twisted_safelog.observer}: identical output when
healthy; when the application closes the file behind one of its structlog
sinks, plain Twisted writes a "Temporarily disabling observer" traceback
into the log for every event, and the hardened run reports the failure
once, quarantines that sink and keeps the rest of the log clean.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import HERE, requireModule, twistdCommand

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")


def runApp(directory: Path, hardened: bool, closeSink: bool = False) -> tuple[str, str, str]:
    """
    Run the structlog application under twistd in the foreground; return
    its log file (timestamps removed), its structlog sink file and its
    standard error.
    """
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWISTED_SAFELOG_")}
    env["STRUCTLOG_SINK"] = "sink.jl"
    if closeSink:
        env["STRUCTLOG_CLOSE_SINK"] = "1"
    args = [*twistdCommand(), "-n", "--pidfile=twistd.pid", "--logfile=app.log"]
    if hardened:
        args.append("--logger=twisted_safelog.observer")
    args += ["-y", str(HERE / "structlog_app.tac")]
    result = subprocess.run(
        args, cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    log = "".join(
        _STAMP.sub("", line) for line in (directory / "app.log").read_text().splitlines(True)
    )
    return log, (directory / "sink.jl").read_text(), result.stderr


def applicationLines(log: str) -> list[str]:
    return [line for line in log.splitlines() if '"event": "tick"' in line or '"done"' in line]


@pytest.fixture(autouse=True)
def structlog() -> None:
    requireModule("structlog")


def test_healthyOutputIsIdenticalToPlainTwistd(tmp_path: Path) -> None:
    plainLog, plainSink, plainErr = runApp(tmp_path / "plain", hardened=False)
    safeLog, safeSink, safeErr = runApp(tmp_path / "safe", hardened=True)
    assert len(applicationLines(plainLog)) == 21
    assert safeLog == plainLog
    assert safeSink == plainSink
    assert safeErr == plainErr == ""


def test_aClosedSinkIsReportedOnceAndContained(tmp_path: Path) -> None:
    plainLog, _, _ = runApp(tmp_path / "plain", hardened=False, closeSink=True)
    safeLog, safeSink, safeErr = runApp(tmp_path / "safe", hardened=True, closeSink=True)

    # Plain Twisted: a traceback in the log for every event after the close.
    assert plainLog.count("Temporarily disabling observer") >= 20

    assert "Temporarily disabling observer" not in safeLog
    assert applicationLines(safeLog) == applicationLines(plainLog), "every event still logged"
    assert len(applicationLines(safeLog)) == 41
    assert safeSink.count('"event": "tick"') == 20, "the sink got everything before the close"
    reports = [line for line in safeErr.splitlines() if line.startswith("twisted-safelog:")]
    failed = [
        line for line in reports if "failed: ValueError: I/O operation on closed file" in line
    ]
    assert len([line for line in failed if "suppressed" not in line]) == 1, safeErr
    assert "JSONLogObserverWrapper" in failed[0] and "sink.jl" in failed[0]
    assert any("quarantined after 5 consecutive failures" in line for line in reports)
    # What the quarantined sink still held at shutdown is counted, in one line.
    assert any(re.search(r"dropped \d+ events \(shutdown\)", line) for line in reports)
    nonReport = [line for line in safeLog.splitlines() if not line.startswith("twisted-safelog:")]
    assert not [line for line in nonReport if "Traceback" in line or "ValueError" in line]

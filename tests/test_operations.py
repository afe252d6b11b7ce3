"""
What an operator sees, under real twistd processes: the status file and the
C{status} command's exit code when a handler's directory is deleted mid-run,
Prometheus metrics from the factory's port and from C{examples/metrics.tac},
and reports that reach the fallbacks when a daemon's log file is the broken
sink (fd 2 is C{/dev/null} then).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .metricsapp import (
    FACTORY,
    METRICS_TAC,
    appEnvironment,
    readStatus,
    sinkNamed,
    startMetricsApp,
    statusCommand,
    waitFor,
)
from .twistdprocess import (
    daemonize,
    environment,
    errorLines,
    freePort,
    runTwistd,
    stop,
    stopPid,
    theOneErrorLine,
    waitForPort,
)


def metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode("utf-8")
    finally:
        connection.close()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("twisted_safelog_")
    }


def test_handlerWhoseDirectoryIsDeletedShowsInStatusFileCommandAndMetrics(
    tmp_path: Path,
) -> None:
    (tmp_path / "app").mkdir()
    status = tmp_path / "status.json"
    metricsPort = freePort()
    process, appPort, log = startMetricsApp(
        tmp_path, status, "0.5", TWISTED_SAFELOG_METRICS_PORT=str(metricsPort)
    )
    try:
        assert waitForPort(appPort, process=process), (tmp_path / "twistd-stderr.txt").read_text()
        # Its name is its repr, cut short: "<WatchedFileHandler /tmp/...".
        handlerName = "<WatchedFileHandler "

        def handlerDelivered() -> bool:
            sink = sinkNamed(status, handlerName)
            return sink is not None and sink["delivered"] > 0

        assert waitFor(handlerDelivered)
        healthy = statusCommand(status)
        assert healthy.returncode == 0, healthy.stdout
        assert healthy.stdout.startswith("OK: all ")

        shutil.rmtree(tmp_path / "app")
        assert waitFor(lambda: statusCommand(status).returncode == 1), status.read_text()
        table = statusCommand(status)
        assert table.stdout.startswith("UNHEALTHY: 1 of ")
        row = next(line for line in table.stdout.splitlines()[2:] if handlerName in line)
        assert " open " in row or " half-open " in row
        assert "FileNotFoundError" in row
        sink = sinkNamed(status, handlerName)
        assert sink is not None
        assert sink["healthy"] is False
        assert sink["failed"] >= 5
        assert sink["lastError"].startswith("FileNotFoundError: [Errno 2]")
        assert (
            sink["received"]
            == (sink["delivered"] + sink["failed"] + sink["dropped"] + sink["buffered"])
            or sink["state"] == "half-open"
        )
        assert any(
            "quarantined after 5 consecutive failures" in r for r in readStatus(status)["reports"]
        )
        assert readStatus(status)["metrics"] == f"http://127.0.0.1:{metricsPort}/metrics"

        # The same, from the factory's /metrics and from the .tac's own
        # MetricsResource on the application's port.
        fullName = sink["name"]
        for port in (metricsPort, appPort):
            samples = metrics(port)
            failed = samples[
                (
                    "twisted_safelog_events_total",
                    frozenset({("sink", fullName), ("outcome", "failed")}),
                )
            ]
            assert failed >= 5
            closed = frozenset({("sink", fullName), ("state", "closed")})
            assert samples[("twisted_safelog_sink_state", closed)] == 0
        logSink = sinkNamed(status, str(log))
        assert logSink is not None and logSink["state"] == "closed"
    finally:
        exitStatus = stop(process)
    assert exitStatus is not None, "SIGTERM ended it"
    # A clean shutdown says so; the check then calls the file unknown.
    assert readStatus(status)["stopped"] is True
    assert statusCommand(status).returncode == 2
    # The factory's scrapes are not written to the log (the .tac's own Site
    # logs its requests as it always does).
    assert log.read_text().count('"GET /metrics HTTP/1.1"') == 1


def startDaemon(tmp: Path, logfile: str, env: dict[str, str], *args: str) -> int:
    return daemonize(
        [*FACTORY, f"--logfile={logfile}", *args, "-y", METRICS_TAC], tmp, env, tmp / "twistd.pid"
    )


def test_daemonWhoseLogDirectoryIsDeletedReportsToTheFallbacks(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "twistd.log"
    status = tmp_path / "status.json"
    reports = tmp_path / "reports.log"
    env = appEnvironment(
        tmp_path,
        freePort(),
        TWISTED_SAFELOG_STATUS_FILE=str(status),
        TWISTED_SAFELOG_STATUS_INTERVAL="0.5",
        TWISTED_SAFELOG_REPORTS=str(reports),
        # The application's stdlib lines reach the log file too.
        TWISTED_SAFELOG_BRIDGE="from-stdlib",
    )
    pid = startDaemon(tmp_path, str(log), env)
    try:
        assert waitFor(lambda: statusCommand(status).returncode == 0)
        assert "tick" in log.read_text()
        shutil.rmtree(tmp_path / "logs")

        def logSinkQuarantined() -> bool:
            sink = sinkNamed(status, str(log))
            return sink is not None and sink["state"] != "closed"

        assert waitFor(logSinkQuarantined)
        assert statusCommand(status).returncode == 1
    finally:
        assert stopPid(pid), "SIGTERM ends the daemon"
    quarantined = f"sink {log} quarantined after 5 consecutive failures"
    # The second configured path has the report, with exact counts.
    lines = [line for line in reports.read_text().splitlines() if quarantined in line]
    assert len(lines) == 1, reports.read_text()
    # A missing directory is the file's trouble: the event that failed is
    # kept for replay, not counted failed.
    assert "failed=0 dropped=0" in lines[0]
    # So has the status file.
    assert any(quarantined in line for line in readStatus(status)["reports"])
    sink = sinkNamed(status, str(log))
    assert sink is not None and "No such file or directory" in sink["lastError"]


def test_daemonWithNoFallbackConfiguredReportsToItsRunDirectory(tmp_path: Path) -> None:
    """
    Neither a status file nor a reports path: when the log file is the
    broken sink, its reports go to a file in twistd's --rundir, created
    only then. Never nowhere.
    """
    for directory in ("app", "logs", "run"):
        (tmp_path / directory).mkdir()
    log = tmp_path / "logs" / "twistd.log"
    fallback = tmp_path / "run" / "twisted-safelog-reports.log"
    env = appEnvironment(tmp_path, freePort(), TWISTED_SAFELOG_BRIDGE="from-stdlib")
    pid = startDaemon(tmp_path, str(log), env, f"--rundir={tmp_path / 'run'}")
    try:
        assert waitFor(lambda: log.exists() and "tick" in log.read_text())
        assert not fallback.exists(), "healthy: nothing but the log file"
        shutil.rmtree(tmp_path / "logs")
        quarantined = f"sink {log} quarantined after 5 consecutive failures"
        assert waitFor(lambda: fallback.exists() and quarantined in fallback.read_text())
    finally:
        assert stopPid(pid)
    text = fallback.read_text()
    assert all(line.startswith("twisted-safelog: ") for line in text.splitlines())
    assert "failed: FileNotFoundError: [Errno 2] No such file or directory" in text


def test_daemonLoggingToAFullDeviceReportsToTheStatusFile(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    status = tmp_path / "status.json"
    env = appEnvironment(
        tmp_path,
        freePort(),
        TWISTED_SAFELOG_STATUS_FILE=str(status),
        TWISTED_SAFELOG_STATUS_INTERVAL="0.5",
        TWISTED_SAFELOG_BRIDGE="from-stdlib",
    )
    pid = startDaemon(tmp_path, "/dev/full", env)
    try:

        def quarantinedInReports() -> bool:
            return any(
                "sink /dev/full quarantined after 5 consecutive failures" in line
                for line in readStatus(status).get("reports", [])
            )

        # Reports: auto, daemonized: the log file (which is full) and the
        # status file. Without the status file they would reach no one.
        assert waitFor(quarantinedInReports), status.read_text() if status.exists() else "none"
        sink = sinkNamed(status, "/dev/full")
        assert sink is not None
        assert sink["lastError"] == "OSError: [Errno 28] No space left on device"
        assert statusCommand(status).returncode == 1
    finally:
        assert stopPid(pid)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"TWISTED_SAFELOG_STATUS_FILE": "/nonexistent-dir/status.json"},
            "TWISTED_SAFELOG_STATUS_FILE: status file /nonexistent-dir/status.json: "
            "directory /nonexistent-dir does not exist; create it",
        ),
        (
            {"TWISTED_SAFELOG_METRICS_PORT": "http"},
            "TWISTED_SAFELOG_METRICS_PORT='http' is not valid",
        ),
        ({"TWISTED_SAFELOG_STATUS_INTERVAL": "0"}, "TWISTED_SAFELOG_STATUS_INTERVAL='0'"),
    ],
)
def test_badOperationsSettingsExitWithOneClearLine(
    tmp_path: Path, variables: dict[str, str], expected: str
) -> None:
    (tmp_path / "app").mkdir()
    result = runTwistd(
        ["-n", "--pidfile=", *FACTORY, "-y", METRICS_TAC],
        tmp_path,
        appEnvironment(tmp_path, freePort(), **variables),
    )
    assert expected in theOneErrorLine(result)


def test_busyMetricsPortExitsWithOneClearLine(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runTwistd(
            ["-n", "--pidfile=", *FACTORY, "-y", METRICS_TAC],
            tmp_path,
            appEnvironment(tmp_path, freePort(), TWISTED_SAFELOG_METRICS_PORT=str(port)),
        )
    assert result.returncode == 1
    lines = errorLines(result)
    assert lines == [
        f"twisted-safelog: TWISTED_SAFELOG_METRICS_PORT={port}: cannot listen on "
        f"127.0.0.1:{port} (Address already in use); choose another port"
    ]


def test_noThreadBeforeTwistdForks(tmp_path: Path) -> None:
    """
    The factory with a status file and metrics starts no thread: twistd's
    double fork would lose it. (The writer starts once the reactor runs.)
    """
    code = (
        "import os, sys, threading\n"
        "sys.argv = ['twistd', '--logfile', sys.argv[1]]\n"
        "from twisted.internet import reactor\n"
        "import twisted_safelog\n"
        "twisted_safelog.observer()\n"
        "print(threading.active_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.log")],
        env=environment(
            TWISTED_SAFELOG_STATUS_FILE=str(tmp_path / "status.json"),
            TWISTED_SAFELOG_METRICS_PORT="0",
        ),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert not (tmp_path / "status.json").exists(), "written by the worker, once running"
    assert os.path.exists(tmp_path / "t.log")


def test_statusFileAndMetricsFromTheTOMLFile(tmp_path: Path) -> None:
    from twisted_safelog._settings import Settings

    config = tmp_path / "safelog.toml"
    config.write_text(
        "[twisted_safelog]\n"
        f'status_file = "{tmp_path / "status.json"}"\n'
        "status_interval = 2.5\n"
        "metrics_port = 9464\n"
    )
    settings = Settings.load({"TWISTED_SAFELOG_CONFIG": str(config)})
    assert settings.status_file == str(tmp_path / "status.json")
    assert settings.status_interval == 2.5
    assert settings.metrics_port == 9464
    assert settings.metrics_interface == "127.0.0.1"
    off = Settings.load(
        {"TWISTED_SAFELOG_CONFIG": str(config), "TWISTED_SAFELOG_METRICS_PORT": "off"}
    )
    assert off.metrics_port is None

"""
A status file that can never be written, or a status interval that makes no
sense, stops a real twistd at start-up with one line that says what to fix
(the status file is the fallback for reports when fd 2 is C{/dev/null}: one
that silently never appears would leave an operator with nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from twisted_safelog import ConfigurationError, StatusFile

from .twistdprocess import environment, runTwistd, theOneErrorLine


def startAndStop(tmp: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """
    A real twistd with the factory, ended at once by the tac unless the
    factory refuses to start.
    """
    tac = tmp / "stop.tac"
    tac.write_text(
        "from twisted.application import service\n"
        "from twisted.internet import reactor\n"
        "application = service.Application('startup')\n"
        "reactor.callWhenRunning(reactor.stop)\n"
    )
    return runTwistd(
        [
            "-n",
            "--pidfile=",
            "--logger=twisted_safelog.observer",
            f"--logfile={tmp / 'twistd.log'}",
            "-y",
            str(tac),
        ],
        tmp,
        environment(**variables),
        timeout=60,
    )


def test_aStatusFileWhereNoFileCanBeMadeStopsTwistd(tmp_path: Path) -> None:
    """
    C{/proc} is a real directory that root may write to by its mode bits,
    yet no file can be made in it: checking the mode is not enough.
    """
    path = "/proc/twisted-safelog-status.json"
    assert os.access("/proc", os.W_OK | os.X_OK)  # why asking is not enough
    line = theOneErrorLine(startAndStop(tmp_path, TWISTED_SAFELOG_STATUS_FILE=path))
    assert (
        f"TWISTED_SAFELOG_STATUS_FILE: status file {path}: cannot create a file in /proc (" in line
    )


def test_checkPathLeavesNothingBehind(tmp_path: Path) -> None:
    """
    Proving that the file can be written creates nothing that stays.
    """
    StatusFile(tmp_path / "status.json").checkPath()
    assert os.listdir(tmp_path) == []


def test_checkPathRefusesADirectoryWhereNoFileCanBeMade() -> None:
    with pytest.raises(ConfigurationError, match="cannot create a file in /proc"):
        StatusFile("/proc/twisted-safelog-status.json").checkPath()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999"])
def test_aNonFiniteStatusIntervalStopsTwistd(tmp_path: Path, value: str) -> None:
    line = theOneErrorLine(
        startAndStop(
            tmp_path,
            TWISTED_SAFELOG_STATUS_FILE=str(tmp_path / "status.json"),
            TWISTED_SAFELOG_STATUS_INTERVAL=value,
        )
    )
    assert f"TWISTED_SAFELOG_STATUS_INTERVAL={value!r} is not valid" in line
    assert not (tmp_path / "status.json").exists()


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_statusFileRefusesANonFiniteInterval(tmp_path: Path, value: float) -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        StatusFile(tmp_path / "status.json", interval=value)


def metricsURL(tmp: Path, **variables: str) -> str:
    """
    The metrics URL that a real twistd's status file gives, from the port
    it actually listens on.
    """
    statusPath = tmp / "status.json"
    result = startAndStop(
        tmp,
        TWISTED_SAFELOG_STATUS_FILE=str(statusPath),
        TWISTED_SAFELOG_METRICS_PORT="0",
        **variables,
    )
    assert result.returncode == 0, result
    document = json.loads(statusPath.read_text())
    return str(document["metrics"])


@pytest.mark.parametrize("value", ["", "  "])
def test_anEmptyMetricsInterfaceStaysOnLoopback(tmp_path: Path, value: str) -> None:
    """
    An empty TWISTED_SAFELOG_METRICS_INTERFACE (a blank line in a unit
    file) is the default, 127.0.0.1: not every interface of the host.
    """
    url = metricsURL(tmp_path, TWISTED_SAFELOG_METRICS_INTERFACE=value)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url


def test_theMetricsURLSaysWhereItListens(tmp_path: Path) -> None:
    url = metricsURL(tmp_path)
    port = int(url.split(":")[2].split("/")[0])
    assert port > 0
    assert url == f"http://127.0.0.1:{port}/metrics"


def test_anInterfaceNotOnThisHostNamesTheInterface(tmp_path: Path) -> None:
    """
    192.0.2.1 (TEST-NET-1, never a local address) cannot be listened on:
    the line names the interface setting, not the port.
    """
    line = theOneErrorLine(
        startAndStop(
            tmp_path,
            TWISTED_SAFELOG_METRICS_PORT="0",
            TWISTED_SAFELOG_METRICS_INTERFACE="192.0.2.1",
        )
    )
    assert line.startswith(
        "twisted-safelog: TWISTED_SAFELOG_METRICS_INTERFACE='192.0.2.1': cannot listen on "
        "192.0.2.1:0 (Cannot assign requested address); "
    ), line
    assert "choose another port" not in line


def test_aBusyPortOnAnotherInterfaceNamesThePort(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = theOneErrorLine(
            startAndStop(
                tmp_path,
                TWISTED_SAFELOG_METRICS_PORT=str(port),
                TWISTED_SAFELOG_METRICS_INTERFACE="0.0.0.0",
            )
        )
    assert line == (
        f"twisted-safelog: TWISTED_SAFELOG_METRICS_PORT={port}: cannot listen on "
        f"0.0.0.0:{port} (Address already in use); choose another port"
    )

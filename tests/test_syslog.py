"""
A real rsyslog daemon, stopped and restarted while the application keeps
logging through SafeHandler(SysLogHandler) behind a NonBlockingObserver:
every event arrives or is counted, nothing is lost with replay buffering,
and the reactor does not stall.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .helpers import requireTool
from .twistdprocess import EXAMPLES, stopPid


def startRsyslog(directory: Path) -> subprocess.Popen[bytes]:
    rsyslogd = requireTool("rsyslogd")
    conf = directory / "rsyslog.conf"
    if not conf.exists():
        conf.write_text(
            f'global(workDirectory="{directory}")\n'
            'module(load="imuxsock" SysSock.Use="off")\n'
            f'input(type="imuxsock" Socket="{directory}/log.sock" CreatePath="on" '
            'RateLimit.Interval="0")\n'
            'template(name="raw" type="string" string="%msg%\\n")\n'
            f'*.* action(type="omfile" file="{directory}/received.log" template="raw")\n'
        )
    process = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "rsyslogd.err", "ab"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 15
    while not (directory / "log.sock").exists():
        assert process.poll() is None, (directory / "rsyslogd.err").read_text()
        assert time.monotonic() < deadline, "rsyslogd did not create its socket"
        time.sleep(0.02)
    return process


def stopRsyslog(process: subprocess.Popen[bytes]) -> None:
    assert stopPid(process.pid)
    process.wait(15)


def runOutage(tmp_path: Path, *extra: str) -> tuple[dict, list[int]]:  # type: ignore[type-arg]
    """
    Start rsyslog and the application; stop rsyslog once it has written the
    application's first events, start it again 2 s later; return the
    application's results (with the outage's start and end on the shared
    monotonic clock) and the event numbers that rsyslog wrote.
    """
    rsyslog = startRsyslog(tmp_path)
    results = tmp_path / "results.json"
    app = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "syslog_app.py"),
            str(tmp_path / "log.sock"),
            str(results),
            "--duration",
            "6",
            "--rate",
            "500",
            *extra,
        ],
        stderr=open(tmp_path / "app.err", "wb"),  # noqa: SIM115
    )
    received = tmp_path / "received.log"

    def numbers() -> list[int]:
        text = received.read_text() if received.exists() else ""
        return [int(n) for n in re.findall(r"event (\d+)", text)]

    try:
        # The application is logging and the daemon is receiving: outage.
        waitFor(lambda: len(numbers()) >= 200, "rsyslog to receive 200 events", app)
        outageStarted = time.monotonic()
        stopRsyslog(rsyslog)
        time.sleep(2.0)  # the outage's length, not a wait for ordering
        rsyslog = startRsyslog(tmp_path)
        outageEnded = time.monotonic()
        assert app.wait(120) == 0, (tmp_path / "app.err").read_text()
        data = json.loads(results.read_text())
        # The last event is sent after the restart: wait until rsyslog has it.
        last = data["sent"] - 1
        waitFor(lambda: last in numbers(), f"rsyslog to write event {last}")
    finally:
        if app.poll() is None:
            app.kill()
        stopRsyslog(rsyslog)
    data["outage"] = outageEnded - outageStarted
    data["outageStarted"], data["outageEnded"] = outageStarted, outageEnded
    return data, numbers()


def waitFor(
    condition: Callable[[], bool], what: str, app: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert app is None or app.poll() is None, f"the application ended before {what}"
        assert time.monotonic() < deadline, f"waited 60 s for {what}"
        time.sleep(0.02)


def keptPace(data: dict) -> tuple[float, float, float]:  # type: ignore[type-arg]
    """
    The reactor's worst lag while the daemon was down, and the events sent
    per second before the outage and during it: a reactor that waited for
    the daemon would lag by about the outage and send nothing during it.
    """
    start, end = data["outageStarted"], data["outageEnded"]
    duringLag = max((lag for t, lag in data["lags"] if start <= t <= end), default=0.0)
    ticks = data["ticks"]
    before = [(t, n) for t, n in ticks if t < start]
    during = [(t, n) for t, n in ticks if start <= t <= end]
    assert len(before) >= 2 and len(during) >= 2, "no ticks around the outage"
    paceBefore = (before[-1][1] - before[0][1]) / (before[-1][0] - before[0][0])
    paceDuring = (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0])
    return duringLag, paceBefore, paceDuring


def counts(data: dict) -> int:  # type: ignore[type-arg]
    handler, nonBlocking, bridge = data["handler"], data["nonBlocking"], data["bridge"]
    for stats in (handler, nonBlocking, bridge):
        assert stats["received"] == (
            stats["delivered"] + stats["failed"] + stats["dropped"] + stats["buffered"]
        )
    return int(handler["failed"] + handler["dropped"] + nonBlocking["dropped"] + bridge["dropped"])


def test_rsyslogOutageLosesNothingAndDoesNotStallTheReactor(tmp_path: Path) -> None:
    data, received = runOutage(tmp_path)
    unique = set(received)
    sent = data["sent"]
    counted = counts(data)
    handler = data["handler"]
    print(
        f"rsyslog outage {data['outage']:.1f}s: sent={sent} received={len(unique)} "
        f"duplicates={len(received) - len(unique)} counted-lost={counted} "
        f"unread-by-the-stopped-daemon={sent - len(unique)} "
        f"handler={handler} worst reactor lag={data['worstLagSeconds'] * 1000:.1f} ms "
        f"p99={data['p99LagSeconds'] * 1000:.1f} ms"
    )
    # The outage really happened: the handler failed and was quarantined.
    assert any("quarantined" in line for line in data["reports"]), data["reports"]
    # Every event arrived or was counted; with replay buffering nothing is
    # lost by us. What rsyslog's socket held unread when it was stopped is
    # lost by the daemon, after the kernel accepted it: no syslog sender can
    # see that (only an acknowledging protocol such as RELP could). It is at
    # most the burst sent just before the stop, one contiguous run.
    assert unique <= set(range(sent))
    assert counted == 0
    missing = sorted(set(range(sent)) - unique)
    if missing:
        assert len(missing) <= 25, missing
        assert missing[-1] - missing[0] + 1 == len(missing), missing
    # The reactor kept its pace during the outage (ratios within this run,
    # not absolute times): it never waited for the daemon, and it logged
    # about as fast while the daemon was down as before.
    duringLag, paceBefore, paceDuring = keptPace(data)
    assert duringLag < data["outage"] / 4, (duringLag, data["outage"])
    assert paceDuring > paceBefore / 3, (paceBefore, paceDuring)


def test_rsyslogOutageWithoutReplayCountsEveryLoss(tmp_path: Path) -> None:
    data, received = runOutage(tmp_path, "--no-replay")
    unique = set(received)
    counted = counts(data)
    handler = data["handler"]
    print(
        f"rsyslog outage {data['outage']:.1f}s without replay: sent={data['sent']} "
        f"received={len(unique)} failed={handler['failed']} "
        f"dropped={handler['droppedByReason']}"
    )
    assert counted > 0, "events were lost during the outage"
    assert handler["droppedByReason"]["quarantine"] > 0
    # As above: all but what the stopped daemon had not read is accounted.
    unread = data["sent"] - len(unique) - counted
    assert 0 <= unread <= 25, unread
    duringLag, paceBefore, paceDuring = keptPace(data)
    assert duringLag < data["outage"] / 4, (duringLag, data["outage"])
    assert paceDuring > paceBefore / 3, (paceBefore, paceDuring)

"""
L{StatusFile} (the JSON status, written atomically from a worker) and the
C{python -m twisted_safelog status} command that reads it.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from twisted_safelog import ConfigurationError, RecentReports, SafeObserver, StatusFile
from twisted_safelog._statuscli import HEALTHY, UNHEALTHY, UNKNOWN, formatTable, judge, runStatus

from . import helpers
from .helpers import RecordingReporter, event

waitFor = functools.partial(helpers.waitFor, timeout=20.0, interval=0.02)


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def sinkIn(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(sink for sink in document["sinks"] if sink["name"] == name)


def failing(event: object) -> None:
    raise OSError(28, "No space left on device")


def test_writeReplacesTheFileAtomically(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text("old")
    before = path.stat().st_ino
    name = f"atomic-{uuid.uuid4().hex[:8]}"
    sink = SafeObserver(lambda e: None, name=name, reporter=RecordingReporter())
    sink(event())
    StatusFile(path, interval=5).write()
    # A new file took the old one's name: readers see the old or the new.
    assert path.stat().st_ino != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"], "no temporary left"
    document = read(path)
    assert document["version"] == 1
    assert document["pid"] == os.getpid()
    assert document["interval"] == 5
    assert document["stopped"] is False
    entry = sinkIn(document, name)
    assert entry["state"] == "closed" and entry["healthy"] is True
    assert entry["delivered"] == 1 and entry["lastError"] is None


def test_theWorkerWritesOnEveryStateChange(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    clock = Clock()
    statusFile = StatusFile(path, interval=600)
    statusFile.start()
    try:
        assert waitFor(path.exists), "the first write at start"
        name = f"changing-{uuid.uuid4().hex[:8]}"
        sink = SafeObserver(failing, name=name, reporter=RecordingReporter(), clock=clock)
        for n in range(5):
            sink(event(n))

        def quarantinedInFile() -> bool:
            try:
                return sinkIn(read(path), name)["state"] == "open"
            except (ValueError, StopIteration):
                return False

        # With a ten-minute interval, only the state change can explain it.
        assert waitFor(quarantinedInFile)
        entry = sinkIn(read(path), name)
        assert entry["healthy"] is False
        assert entry["failed"] == 5
        assert entry["lastError"] == "OSError: [Errno 28] No space left on device"
        assert read(path)["healthy"] is False
    finally:
        assert statusFile.stop()
    assert read(path)["stopped"] is True


def test_theWorkerRewritesEveryInterval(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    statusFile = StatusFile(path, interval=0.05)
    statusFile.start()
    try:
        assert waitFor(path.exists)
        first = read(path)["written"]
        assert waitFor(lambda: read(path)["written"] > first)
        assert statusFile.writes >= 2
    finally:
        statusFile.stop()


def test_aHungFileSystemNeverBlocksTheCaller(tmp_path: Path) -> None:
    """
    A FIFO where the temporary file goes makes the worker's open() hang, as
    a hung NFS mount would; state changes must still return at once, and
    stop() gives up on the worker after its deadline.
    """
    path = tmp_path / "status.json"
    fifo = tmp_path / f".status.json.{os.getpid()}.tmp"
    os.mkfifo(fifo)
    statusFile = StatusFile(path, interval=600)
    statusFile.start()
    worker = statusFile._thread
    assert worker is not None
    try:
        assert waitFor(lambda: statusFile.writes == 0 and _workerInOpen(statusFile), timeout=10)
        done = threading.Event()

        def changeStates() -> None:
            for _ in range(100):
                statusFile.changed()
            sink = SafeObserver(failing, reporter=RecordingReporter(), failureThreshold=1)
            sink(event())
            done.set()

        caller = threading.Thread(target=changeStates, daemon=True)
        caller.start()
        assert done.wait(10), "changed() blocked behind the hung write"
        assert statusFile.stop(timeout=0.2) is False, "the worker is still stuck"
    finally:
        # Let the stuck open() finish: its write then finds no reader.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(reader)
    worker.join(10)
    assert not worker.is_alive(), "the worker ends once its write returns"
    # Its write reached the reader's pipe buffer in time, or found no reader.
    assert statusFile.writes == 1 or "Broken pipe" in (statusFile.lastError or "")


def _workerInOpen(statusFile: StatusFile) -> bool:
    thread = statusFile._thread
    if thread is None or not thread.is_alive():
        return False
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "write":
            return True
        frame = frame.f_back
    return False


def test_reportsAreKeptForTheFile(tmp_path: Path) -> None:
    reports = RecentReports(maxLines=3)
    for n in range(5):
        reports(f"line {n}\n")
    reports("a\nb\n")
    assert reports.lines() == ["line 4", "a", "b"]
    path = tmp_path / "status.json"
    StatusFile(path, reports=reports).write()
    assert read(path)["reports"] == ["line 4", "a", "b"]


def test_checkPathRefusesWhatCanNeverWork(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist; create it"):
        StatusFile(tmp_path / "missing" / "status.json").checkPath()
    with pytest.raises(ConfigurationError, match="is a directory"):
        StatusFile(tmp_path).checkPath()
    StatusFile(tmp_path / "status.json").checkPath()
    with pytest.raises(ConfigurationError, match="interval"):
        StatusFile(tmp_path / "status.json", interval=0)


# -- the status command ------------------------------------------------------


def document(sinks: list[dict[str, Any]], written: float, **extra: Any) -> dict[str, Any]:
    result = {
        "version": 1,
        "pid": 4242,
        "written": written,
        "interval": 5.0,
        "stopped": False,
        "healthy": all(s["healthy"] for s in sinks),
        "sinks": sinks,
        "reports": [],
    }
    result.update(extra)
    return result


def sink(name: str, state: str = "closed", **extra: Any) -> dict[str, Any]:
    result = {
        "name": name,
        "state": state,
        "healthy": state == "closed",
        "since": time.time() - 90,
        "received": 10,
        "delivered": 10,
        "failed": 0,
        "dropped": 0,
        "droppedByReason": {"reentry": 0, "overflow": 0},
        "buffered": 0,
        "lastError": None,
    }
    result.update(extra)
    return result


def writeDocument(path: Path, value: dict[str, Any]) -> str:
    path.write_text(json.dumps(value))
    return str(path)


@pytest.mark.parametrize(
    ("state", "expected"),
    [("closed", HEALTHY), ("open", UNHEALTHY), ("half-open", UNHEALTHY), ("stalled", UNHEALTHY)],
)
def test_judgeExitsByTheWorstSink(tmp_path: Path, state: str, expected: int) -> None:
    path = writeDocument(
        tmp_path / "s.json", document([sink("app.log"), sink("handler", state)], time.time())
    )
    verdict = judge(path)
    assert verdict.exitCode == expected
    if expected == UNHEALTHY:
        assert f"handler {state}" in verdict.reason


def test_judgeMissingGarbledStaleAndStopped(tmp_path: Path) -> None:
    assert judge(str(tmp_path / "none.json")).exitCode == UNKNOWN
    (tmp_path / "garbled.json").write_text("{not json")
    assert judge(str(tmp_path / "garbled.json")).exitCode == UNKNOWN
    (tmp_path / "other.json").write_text('{"version": 99}')
    assert judge(str(tmp_path / "other.json")).exitCode == UNKNOWN
    now = time.time()
    stale = writeDocument(tmp_path / "stale.json", document([sink("a")], now - 60))
    verdict = judge(stale, now=now)
    assert verdict.exitCode == UNKNOWN and verdict.reason.startswith("stale")
    assert judge(stale, maxAge=120, now=now).exitCode == HEALTHY
    stopped = writeDocument(tmp_path / "stopped.json", document([sink("a")], now, stopped=True))
    assert judge(stopped, now=now).exitCode == UNKNOWN
    assert "stopped" in judge(stopped, now=now).reason


def test_tableShowsEveryColumnAtAGlance(tmp_path: Path) -> None:
    now = time.time()
    path = writeDocument(
        tmp_path / "s.json",
        document(
            [
                sink("twistd.log"),
                sink(
                    "<WatchedFileHandler /var/log/app/app.log (NOTSET)>",
                    "open",
                    since=now - 125,
                    delivered=25,
                    failed=8,
                    dropped=14,
                    droppedByReason={"overflow": 4, "shutdown": 10, "reentry": 0},
                    lastError="FileNotFoundError: [Errno 2] No such file or directory",
                ),
            ],
            now,
        ),
    )
    table = formatTable(judge(path, now=now), now=now)
    lines = table.splitlines()
    assert lines[0].startswith("UNHEALTHY: 1 of 2 sinks unhealthy")
    assert lines[2].split() == [
        "SINK", "STATE", "SINCE", "DELIVERED", "FAILED", "DROPPED", "LAST", "ERROR"
    ]  # fmt: skip
    broken = lines[4]
    for cell in ("open", "2m ago", "25", "8", "14 (overflow=4, shutdown=10)", "FileNotFound"):
        assert cell in broken
    assert lines[3].split()[:2] == ["twistd.log", "closed"]
    # Columns line up: every row's STATE starts where the header's does.
    column = lines[2].index("STATE")
    assert lines[3][column:].startswith("closed") and broken[column:].startswith("open")


def test_jsonOutputCarriesTheVerdict(tmp_path: Path) -> None:
    path = writeDocument(tmp_path / "s.json", document([sink("x", "open")], time.time()))
    out = io.StringIO()
    assert runStatus(path, asJSON=True, out=out) == UNHEALTHY
    result = json.loads(out.getvalue())
    assert result["check"]["exitCode"] == UNHEALTHY
    assert result["sinks"][0]["state"] == "open"


def statusCommand(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_commandExitStatusesForAMonitoringCheck(tmp_path: Path) -> None:
    now = time.time()
    healthy = writeDocument(tmp_path / "ok.json", document([sink("a")], now))
    broken = writeDocument(tmp_path / "bad.json", document([sink("a", "open")], now))
    stale = writeDocument(tmp_path / "old.json", document([sink("a")], now - 3600))
    ok = statusCommand(healthy)
    assert (ok.returncode, ok.stdout.split(":")[0]) == (0, "OK")
    assert statusCommand(broken).returncode == 1
    assert statusCommand(stale).returncode == 2
    missing = statusCommand(str(tmp_path / "nothing.json"))
    assert missing.returncode == 2
    assert "no status file" in missing.stdout
    machine = statusCommand(broken, "--json")
    assert machine.returncode == 1
    assert json.loads(machine.stdout)["check"]["exitCode"] == 1

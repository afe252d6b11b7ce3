"""
A status file that stops being writable while the process runs (its
directory deleted, a full disk) is reported once, out of band, and once
more when it is written again: a monitoring check then sees it missing or
stale, and the log says why, instead of nothing anywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted_safelog import StatusFile

from .helpers import RecordingReporter, waitFor


def _removed(directory: Path) -> bool:
    shutil.rmtree(directory, ignore_errors=True)
    return not directory.exists()


def test_aStatusFileThatCannotBeWrittenIsReportedOnceAndItsRecovery(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    path = directory / "status.json"
    reporter = RecordingReporter()
    statusFile = StatusFile(path, interval=0.05)
    statusFile.reporter = reporter
    statusFile.start()
    try:
        assert waitFor(path.exists)
        # The writer may create and replace its temporary file while the
        # tree is being removed: remove until the directory is gone.
        assert waitFor(lambda: _removed(directory))
        assert waitFor(lambda: statusFile.lastError is not None)
        writes = statusFile.writes
        # Many intervals go by, every write fails; one report says so.
        assert waitFor(lambda: statusFile.failures >= 10)
        assert statusFile.writes == writes
        assert len(reporter.notes) == 1, reporter.notes
        assert reporter.notes[0].startswith(f"status file {path} cannot be written (")
        assert "No such file or directory" in reporter.notes[0]
        directory.mkdir()
        assert waitFor(path.exists)
        assert waitFor(lambda: len(reporter.notes) == 2)
        assert reporter.notes[1] == f"status file {path} written again"
    finally:
        statusFile.stop()
    assert len(reporter.notes) == 2, reporter.notes


def test_underTwistdTheReportReachesTheLogFile(tmp_path: Path) -> None:
    from .metricsapp import startMetricsApp
    from .twistdprocess import stop, waitForPort

    (tmp_path / "app").mkdir()
    (tmp_path / "run").mkdir()
    statusPath = tmp_path / "run" / "status.json"
    process, appPort, log = startMetricsApp(tmp_path, statusPath, "0.2")
    try:
        assert waitForPort(appPort, process=process)
        assert waitFor(statusPath.exists)
        shutil.rmtree(tmp_path / "run")
        line = f"status file {statusPath} cannot be written ("
        assert waitFor(lambda: line in log.read_text()), log.read_text()[-2000:]
        (tmp_path / "run").mkdir()
        assert waitFor(lambda: f"status file {statusPath} written again" in log.read_text())
        assert waitFor(statusPath.exists)
    finally:
        stop(process)
    assert log.read_text().count(line) == 1

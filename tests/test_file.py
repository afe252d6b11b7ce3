"""
Tests for the file sinks, with real faults: logrotate, /dev/full, a deleted
directory, an unprivileged process, a rename that fails.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, eventsFromJSONLogFile, textFileLogObserver

from twisted_safelog import (
    BreakerState,
    ConfigurationError,
    LogFileWriter,
    Reporter,
    safeFileLogObserver,
)
from twisted_safelog._rotationwatch import rotationWatcher

from .helpers import LineCollector, RecordingReporter, event, requireTool

NUMBER = re.compile(r"event (\d+)")


def numbers(*paths: Path) -> list[int]:
    found: list[int] = []
    for path in paths:
        if path.exists():
            if path.suffix == ".gz":
                text = gzip.decompress(path.read_bytes()).decode()
            else:
                text = path.read_text()
            found.extend(int(n) for n in NUMBER.findall(text))
    return found


def makeObserver(path: Path, **kw: object):  # type: ignore[no-untyped-def]
    clock = Clock()
    reporter = RecordingReporter()
    observer = safeFileLogObserver(path, clock=clock, reporter=reporter, **kw)  # type: ignore[arg-type]
    return observer, clock, reporter


# -- the writer -----------------------------------------------------------------


def test_writesOneLinePerEventAndFlushesEach(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer, _, _ = makeObserver(path)
    observer(event(1))
    # On disk when the call returns: no Python buffer in between.
    assert numbers(path) == [1]
    observer(event(2))
    assert numbers(path) == [1, 2]


def test_reopensWhenTheFileIsMovedAwayAtTheNextCheck(tmp_path: Path) -> None:
    """
    The path is checked every C{checkEvery} writes, not before each: what
    is written in between goes to the rotated file, where it is not lost.
    """
    path = tmp_path / "app.log"
    observer, _, reporter = makeObserver(path, checkEvery=3, checkInterval=3600, watcher=None)
    observer(event(1))
    os.rename(path, tmp_path / "app.log.1")
    observer(event(2))
    observer(event(3))
    observer(event(4))
    assert numbers(tmp_path / "app.log.1") == [1, 2]
    assert numbers(path) == [3, 4]
    assert observer.writer.reopened == 1
    assert observer.writer.writtenToDeletedFile == 0
    assert reporter.notes == []


def test_checkEveryOneChecksBeforeEachWrite(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer, _, _ = makeObserver(path, checkEvery=1, watcher=None)
    observer(event(1))
    os.rename(path, tmp_path / "app.log.1")
    observer(event(2))
    assert numbers(tmp_path / "app.log.1") == [1]
    assert numbers(path) == [2]


def test_movedAwayIsNoticedAfterCheckIntervalSeconds(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "app.log"
    writer = LogFileWriter(
        path, checkInterval=0.5, checkEvery=10**6, clock=lambda: now[0], watcher=None
    )
    writer.write("event 1\n")
    os.rename(path, tmp_path / "app.log.1")
    now[0] = 0.4
    writer.write("event 2\n")
    now[0] = 0.5
    writer.write("event 3\n")
    assert numbers(tmp_path / "app.log.1") == [1, 2]
    assert numbers(path) == [3]
    writer.close()


def test_aDeletedFileIsReopenedAndWhatWentToItCountedAndReported(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer, _, reporter = makeObserver(path, checkEvery=4, checkInterval=3600, watcher=None)
    observer(event(1))
    path.unlink()
    observer(event(2))
    observer(event(3))
    observer(event(4))
    assert numbers(path) == [4]
    # Events 2 and 3 went to the deleted file; whether event 1 was written
    # before the deletion the writer cannot know: "up to 3".
    assert observer.writer.writtenToDeletedFile == 3
    assert len(reporter.notes) == 1
    assert "deleted; up to 3 events" in reporter.notes[0]


def test_aFailedWriteChecksThePathAtOnce(tmp_path: Path) -> None:
    """
    After a write fails the next one checks the path first, however long
    until the next check would be: on a full disk (a real 8 KiB tmpfs) an
    operator deletes the log file to make room; the deleted file's space
    is only freed once the writer lets go of it, which it does at once.
    """
    mount = requireTool("mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs (root needed): {done.stderr.decode().strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        path = disk / "app.log"
        writer = LogFileWriter(path, checkInterval=3600, checkEvery=10**6)
        line = "x" * 1000 + "\n"
        with pytest.raises(OSError) as failure:
            for _ in range(100):
                writer.write(line)
        assert failure.value.errno == errno.ENOSPC
        path.unlink()
        writer.write("event 2\n")
        assert numbers(path) == [2]
        assert writer.reopened == 1
        writer.close()
    finally:
        subprocess.run(["umount", str(disk)], check=True, timeout=30)


def test_reopenForSignalDrivenRotation(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer, _, _ = makeObserver(path)
    observer(event(1))
    # copy-then-signal style: the file is still there, but we are told to reopen
    observer.reopen()
    observer(event(2))
    assert numbers(path) == [1, 2]
    assert observer.writer.reopened == 1


def test_sizeRotationKeepsNFiles(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer, _, _ = makeObserver(path, rotateLength=300, maxRotatedFiles=2)
    for n in range(40):
        observer(event(n))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["app.log", "app.log.1", "app.log.2"]
    kept = numbers(tmp_path / "app.log.2", tmp_path / "app.log.1", path)
    assert kept == sorted(kept)
    assert kept[-1] == 39
    assert observer.writer.rotations > 2


def test_failedRotationKeepsWritingToTheCurrentFile(tmp_path: Path) -> None:
    """
    twisted.python.logfile.LogFile closes its file before renaming, so one
    failed rename leaves it closed for good; ours keeps writing.
    """
    path = tmp_path / "app.log"
    (tmp_path / "app.log.1").mkdir()  # os.remove() of the oldest fails
    (tmp_path / "app.log.1" / "keep").write_text("x")
    lines = LineCollector()
    observer = safeFileLogObserver(
        path,
        rotateLength=200,
        maxRotatedFiles=1,
        reporter=Reporter(write=lines, clock=Clock()),
        clock=Clock(),
    )
    for n in range(30):
        observer(event(n))
    assert numbers(path) == list(range(30))
    assert observer.writer.failedRotations >= 1
    assert observer.stats().failed == 0
    assert observer.stats().state == BreakerState.closed
    assert lines.matching("rotation failed")
    assert "still writing to the current file" in lines.matching("rotation failed")[0]


def test_rotationToleratesMissingFiles(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = LogFileWriter(path, rotateLength=50, maxRotatedFiles=3)
    writer.write("x" * 60 + "\n")
    (tmp_path / "app.log.1").unlink()
    writer.write("y" * 60 + "\n")
    writer.write("z\n")
    assert (tmp_path / "app.log.1").read_text().startswith("y")
    assert path.read_text() == "z\n"
    assert writer.failedRotations == 0


def test_devicesAreNeverRotated(tmp_path: Path) -> None:
    writer = LogFileWriter("/dev/null", rotateLength=1)
    writer.write("hello\n")
    writer.write("hello\n")
    assert writer.rotations == 0
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


# -- formats ----------------------------------------------------------------------


def test_jsonLinesReadBackWithTwisted(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    observer, _, _ = makeObserver(path, format="json")
    for n in range(3):
        observer(event(n, log_level=LogLevel.warn))
    cyclic: dict[str, object] = {}
    cyclic["me"] = cyclic
    observer(event(3, log_format="cycle {c}", c=cyclic))
    text = path.read_text()
    assert "\x1e" not in text, "newline-delimited, no record separator"
    lines = text.splitlines()
    assert len(lines) == 4
    assert all(json.loads(line) for line in lines)
    with open(path) as f:
        events = list(eventsFromJSONLogFile(f))
    assert [e.get("n") for e in events[:3]] == [0, 1, 2]
    assert events[0]["log_level"] is LogLevel.warn
    assert "log_unserializable" in events[3]
    assert "cycle" in events[3]["log_text"]


def test_unknownFormatIsOneClearLine(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="format must be one of json, text, not 'xml'"):
        safeFileLogObserver(tmp_path / "x.log", format="xml")


# -- start-up ---------------------------------------------------------------------


def test_aDirectoryIsRefusedAtStartUp(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        safeFileLogObserver(tmp_path)
    assert str(caught.value) == f"log file {tmp_path} is a directory; give a file path"


def test_aMissingDirectoryStartsQuarantinedAndSaysSo(tmp_path: Path) -> None:
    path = tmp_path / "not-mounted-yet" / "app.log"
    observer, clock, reporter = makeObserver(path)
    assert observer.stats().state == BreakerState.open
    assert "starting quarantined" in reporter.notes[0]
    observer(event(0))
    observer(event(1))
    assert observer.stats().buffered == 2
    path.parent.mkdir()
    clock.advance(1)
    observer(event(2))
    assert numbers(path) == [0, 1, 2]
    assert observer.stats().balanced


def test_createDirectory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "app.log"
    observer, _, _ = makeObserver(path, createDirectory=True)
    observer(event(0))
    assert numbers(path) == [0]


# -- real faults --------------------------------------------------------------------


def test_missingDirectoryUnderLoadThenRecreatedIsReplayed(tmp_path: Path) -> None:
    """
    With the path checked before every write (C{checkEvery=1}) nothing goes
    to the deleted file: the writes fail, the sink is quarantined, and the
    rest is replayed once the directory is back.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    observer, clock, reporter = makeObserver(path, failureThreshold=3, bufferSize=500, checkEvery=1)
    for n in range(100):
        observer(event(n))
    shutil.rmtree(logs)
    for n in range(100, 300):
        observer(event(n))
    stats = observer.stats()
    assert stats.state == BreakerState.open
    # A missing directory is the file's trouble, not the events': the event
    # that failed is kept at the head of the buffer, not counted failed.
    assert stats.failed == 0
    assert stats.buffered == 200
    logs.mkdir()
    clock.advance(1)
    observer(event(300))
    # Everything since the directory went (with the first 100) is replayed
    # in order, exactly once.
    assert numbers(path) == list(range(100, 301))
    final = observer.stats()
    assert final.received == 301
    assert (final.delivered, final.failed, final.buffered) == (301, 0, 0)
    assert [s[1:] for s in reporter.states][-1] == ("half-open", "closed")


def test_missingDirectoryBetweenChecksIsCountedReportedThenReplayed(tmp_path: Path) -> None:
    """
    With the path checked every 50 writes, the writes between the deletion
    and the next check go to the deleted file: counted and reported; from
    the check on, as with a check before every write.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "app.log"
    observer, clock, reporter = makeObserver(
        path, failureThreshold=3, bufferSize=500, checkEvery=50, checkInterval=3600, watcher=None
    )
    for n in range(100):
        observer(event(n))  # the 50th and 100th writes check the path
    shutil.rmtree(logs)
    for n in range(100, 300):
        observer(event(n))
    # 100 to 148 went to the deleted file; from 149 (the check) on they
    # fail, and a missing directory being the file's trouble, not the
    # events', they are kept for replay.
    assert observer.writer.writtenToDeletedFile == 49
    assert [note for note in reporter.notes if "deleted; up to 49 events" in note]
    stats = observer.stats()
    assert stats.state == BreakerState.open
    assert (stats.failed, stats.buffered) == (0, 151)
    logs.mkdir()
    clock.advance(1)
    observer(event(300))
    assert numbers(path) == list(range(149, 301))
    final = observer.stats()
    assert final.received == 301
    assert (final.delivered, final.failed, final.buffered) == (301, 0, 0)


def test_enospcOnDevFullQuarantinesBuffersAndRecovers(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.symlink_to("/dev/full")
    observer, clock, reporter = makeObserver(path, failureThreshold=5, bufferSize=100)
    for n in range(50):
        observer(event(n))  # never raises
    stats = observer.stats()
    assert stats.state == BreakerState.open
    # The failed event is kept for replay (ENOSPC is the disk's fault).
    assert (stats.received, stats.failed, stats.buffered, stats.dropped) == (50, 0, 50, 0)
    error = reporter.failures[0][1]
    assert isinstance(error, OSError) and error.errno == 28
    # "Pointed back": the path is a real file again.
    path.unlink()
    path.touch()
    clock.advance(1)
    observer(event(50))
    assert numbers(path) == list(range(51))
    assert observer.stats().balanced


def test_fallbackChainFileThenStderr(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.symlink_to("/dev/full")
    stderr = io.StringIO()
    observer, _, _ = makeObserver(path, failureThreshold=2, fallback=textFileLogObserver(stderr))
    for n in range(6):
        observer(event(n))
    assert NUMBER.findall(stderr.getvalue()) == [str(n) for n in range(6)]


EACCES_CHILD = """
import json, os, sys, time
from twisted.logger import LogLevel
from twisted_safelog import safeFileLogObserver, Reporter

# Everything is imported (the interpreter lives under /root): now drop root.
os.setgroups([])
os.setgid(65534)
os.setuid(65534)

notes = []
observer = safeFileLogObserver(
    sys.argv[1], resetTimeout=0.05, reporter=Reporter(write=notes.append)
)
def event(n):
    return {"log_format": "event {n}", "n": n, "log_level": LogLevel.info,
            "log_namespace": "child", "log_time": time.time()}
for n in range(10):
    observer(event(n))
before = observer.stats().asDict()
sys.stdout.write(json.dumps({"before": before, "notes": notes}) + "\\n")
sys.stdout.flush()
sys.stdin.readline()           # the parent fixes the permissions
time.sleep(0.1)
observer(event(10))
print(json.dumps({"after": observer.stats().asDict(), "notes": notes}))
"""


def test_eaccesInAnUnprivilegedProcess() -> None:
    """
    The tests run as root, where permissions do not bite: the child drops
    to uid 65534 (nobody) once it has imported what it needs.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another uid")
    directory = Path(tempfile.mkdtemp(prefix="safelog-eacces-"))
    try:
        directory.chmod(0o755)
        path = directory / "app.log"
        child = subprocess.Popen(
            [sys.executable, "-c", EACCES_CHILD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd="/",
        )
        assert child.stdout is not None and child.stdin is not None
        first = json.loads(child.stdout.readline() or "{}")
        assert first, child.stderr.read() if child.stderr else ""
        assert first["before"]["state"] == "open"
        assert first["before"]["buffered"] == 10
        assert "Permission denied" in first["notes"][0]
        assert "starting quarantined" in first["notes"][0]
        directory.chmod(0o777)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
        after = json.loads(out)["after"]
        assert after["state"] == "closed", err
        assert (after["received"], after["delivered"], after["buffered"]) == (11, 11, 0)
        assert numbers(path) == list(range(11))
        assert path.stat().st_uid == 65534
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- real logrotate -------------------------------------------------------------------


def runLogrotate(
    tmp: Path,
    path: Path,
    mode: str,
    events: int,
    rotations: int,
    options: str = "nocompress",
    settle: bool = False,
    **writerArguments: Any,
) -> dict[str, int]:
    """
    Write C{events} numbered events from a thread while logrotate rotates
    the file C{rotations} times in C{mode} ("create" or "copytruncate"),
    with C{options} (more logrotate directives, one per line); if
    C{settle}, one more event (numbered C{events}) once the path is due
    for a check, as an application that goes on logging writes;
    C{writerArguments} go to L{safeFileLogObserver}.
    Returns the counts: found, lost, lostRuns (maximal runs of consecutive
    lost numbers), duplicated, writtenToOldInode, rotatedFiles, rotations
    (logrotate runs), delivered and failed (the sink's own counters).
    """
    logrotate = requireTool("logrotate")
    conf = tmp / "logrotate.conf"
    directives = [mode, "rotate 1000", "missingok", *options.split("\n")]
    lines = "".join(f"    {line}\n" for line in directives)
    conf.write_text(f"{path} {{\n{lines}}}\n")
    reporter = RecordingReporter()
    observer = safeFileLogObserver(path, rotateLength=None, reporter=reporter, **writerArguments)
    writer = observer.writer
    watched = rotationWatcher.watches(writer)
    oldInode = [0]
    done = threading.Event()

    def write() -> None:
        for n in range(events):
            observer(event(n))
            fd = writer._fd
            if fd is not None:
                try:
                    if os.stat(path).st_ino != os.fstat(fd).st_ino:
                        oldInode[0] += 1
                except FileNotFoundError:
                    oldInode[0] += 1
            if n % 500 == 0:
                time.sleep(0.001)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    state = tmp / "logrotate.state"
    deadline = time.monotonic() + 60
    ran = 0
    for _ in range(rotations):
        if done.is_set() or time.monotonic() > deadline:
            break
        subprocess.run(
            [logrotate, "-f", "-s", str(state), str(conf)],
            check=True,
            timeout=30,
            stderr=subprocess.DEVNULL,  # gzip: "file size changed while zipping"
        )
        ran += 1
        time.sleep(0.05)
    thread.join(60)
    assert not thread.is_alive()
    if settle:
        time.sleep(writer.checkInterval * 2)
        observer(event(events))
    found = numbers(*sorted(tmp.glob(path.name + "*")))
    unique = set(found)
    missing = sorted(set(range(events)) - unique)
    lostRuns = sum(1 for i, n in enumerate(missing) if i == 0 or missing[i - 1] != n - 1)
    stats = observer.stats()
    assert stats.balanced
    return {
        "found": len(unique),
        "lost": len(missing),
        "lostRuns": lostRuns,
        "rotations": ran,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "duplicated": len(found) - len(unique),
        "writtenToOldInode": oldInode[0],
        "rotatedFiles": len(list(tmp.glob(path.name + ".*"))),
        "checkEvery": writer.checkEvery,
        "writtenToDeletedFile": writer.writtenToDeletedFile,
        "deletedNotes": sum("was deleted" in note for note in reporter.notes),
        "watched": watched,
    }


def test_logrotateCreateModeLosesNothing(tmp_path: Path) -> None:
    counts = runLogrotate(tmp_path, tmp_path / "app.log", "create", events=20_000, rotations=8)
    print("logrotate create:", counts)
    assert counts["rotatedFiles"] >= 3, counts
    assert (counts["delivered"], counts["failed"]) == (20_000, 0), counts
    assert counts["lost"] == 0
    assert counts["duplicated"] == 0
    # Until the next check of the path (every DEFAULT_CHECK_EVERY events or
    # DEFAULT_CHECK_INTERVAL seconds) events land in the just-rotated file:
    # not lost, they are in that file. Written after the check, none.
    assert counts["writtenToOldInode"] <= counts["rotatedFiles"] * counts["checkEvery"]


def test_logrotateCreateModeWithCompressLosesNothing(tmp_path: Path) -> None:
    """
    create with compress and no delaycompress (a common configuration):
    logrotate moves the file away, creates a new one and at once compresses
    the one it moved and removes it. The rotation watcher (inotify) flags
    the writer within microseconds of the rename, long before the
    compressor has read the file (the periodic check alone lost 1,700 to
    4,300 of these 20,000 events, 8.5% to 21%). What may still be lost is
    a write already past its check when the rename happens and held up
    until the compressor has read the file (the race a stat() before every
    write has too: one event per rotation at most), and, when the CPUs are
    overloaded, what is written while the woken watcher waits for a CPU.
    Measured here: 0 to 3 in most runs; under heavy overload (load 5 to 7
    on 2 CPUs) about one run in 20 lost tens to hundreds (up to 3.9%). So:
    three runs; in the median run at most one event per rotation, in every
    run under 5% (the periodic check: 8.5% or more).
    """
    runs = []
    for run in range(3):
        directory = tmp_path / f"run{run}"
        directory.mkdir()
        counts = runLogrotate(
            directory,
            directory / "app.log",
            "create",
            events=20_000,
            rotations=8,
            options="compress",
        )
        print("logrotate create compress:", counts)
        assert counts["watched"], "the rotation watcher is what this test is about"
        assert counts["rotatedFiles"] >= 3, counts
        assert (counts["delivered"], counts["failed"]) == (20_000, 0), counts
        assert counts["duplicated"] == 0, counts
        assert counts["lost"] < 1_000, counts
        runs.append(counts)
    median = sorted(runs, key=lambda counts: counts["lost"])[1]
    assert median["lost"] <= median["rotations"], runs


def test_logrotateCreateModeWithCompressCountsAndReportsWhatItLosesWithoutWatcher(
    tmp_path: Path,
) -> None:
    """
    Without the rotation watcher (no inotify: not Linux, or its limits
    reached), the path is checked every C{checkEvery} writes or
    C{checkInterval} seconds, and what goes to a rotated file that logrotate
    then compresses and removes is lost; it is at least counted
    (C{writtenToDeletedFile}, an upper bound) and reported, at the next
    check of the path (the README's remedy there: C{delaycompress}, or a
    C{postrotate} that reopens).
    """
    counts = runLogrotate(
        tmp_path,
        tmp_path / "app.log",
        "create",
        events=20_000,
        rotations=8,
        options="compress",
        settle=True,
        watcher=None,
    )
    assert not counts["watched"]
    print("logrotate create compress:", counts)
    assert counts["rotatedFiles"] >= 3, counts
    assert counts["lost"] <= counts["writtenToDeletedFile"], counts
    assert counts["deletedNotes"] >= 1 or counts["lost"] == 0, counts
    assert counts["duplicated"] == 0, counts


def test_logrotateCopytruncateHasAnInherentRace(tmp_path: Path) -> None:
    """
    copytruncate copies the file and then truncates it; what is written in
    between is gone. Measured, not hidden: the sink keeps working (every
    write succeeds), and the only events missing are the ones written
    between a copy and its truncate: at most one run of consecutive events
    per rotation, never scattered ones, never a duplicate.
    """
    counts = runLogrotate(
        tmp_path, tmp_path / "app.log", "copytruncate", events=20_000, rotations=8
    )
    print("logrotate copytruncate:", counts)
    assert counts["rotatedFiles"] >= 3, counts
    assert (counts["delivered"], counts["failed"]) == (20_000, 0), counts
    assert counts["lostRuns"] <= counts["rotations"], counts
    assert counts["duplicated"] == 0, counts
    assert counts["writtenToOldInode"] == 0, "copytruncate keeps the inode"

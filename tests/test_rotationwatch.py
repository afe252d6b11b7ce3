"""
The rotation watcher: one inotify thread per process that flags a file
writer whose file was moved away or deleted, so the writer checks its path
at its next write with no system call per event. Tested with real inotify,
real renames and a real C{os.fork()} (in a child interpreter); the fallback
with inotify really unavailable (a child, as uid 65534, that has used up
its user's inotify instances).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import weakref
from pathlib import Path

import pytest

from twisted_safelog import LogFileWriter
from twisted_safelog._rotationwatch import rotationWatcher

from .helpers import CHILD_HELPERS, RecordingReporter, childResult, requireTool, waitFor
from .test_file import numbers
from .twistdprocess import daemonize, environment, start, stop, stopPid

#: No periodic check within any test's life: only the watcher can notice.
NEVER = {"checkInterval": 3600.0, "checkEvery": 10**9}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def writeUntilAtPath(writer: LogFileWriter, path: Path, timeout: float = 30.0) -> bool:
    """
    Write numbered lines until one lands in the file at C{path} (the
    writer noticed that the file it had open moved away).
    """
    n = [0]

    def landed() -> bool:
        n[0] += 1
        writer.write(f"after {n[0]}\n")
        return f"after {n[0]}" in lines(path)

    return waitFor(landed, timeout=timeout, interval=0.01)


def test_aMovedFileIsNoticedWithoutAPeriodicCheck(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = LogFileWriter(path, reporter=RecordingReporter(), **NEVER)
    writer.write("before\n")
    assert rotationWatcher.watches(writer)
    assert waitFor(lambda: rotationWatcher.running)
    os.rename(path, tmp_path / "app.log.1")
    path.write_text("")  # logrotate's create
    assert writeUntilAtPath(writer, path)
    assert lines(tmp_path / "app.log.1")[0] == "before"
    assert writer.reopened == 1
    writer.close()


def test_aDeletedFileIsNoticedWithoutAPeriodicCheck(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = LogFileWriter(path, reporter=RecordingReporter(), **NEVER)
    writer.write("before\n")
    assert waitFor(lambda: rotationWatcher.running)
    path.unlink()
    assert writeUntilAtPath(writer, path)
    writer.close()


def test_aMovedFileIsKeptUntilLogrotateCreatesTheNewOne(tmp_path: Path) -> None:
    """
    logrotate's create opens the new file with O_EXCL microseconds after
    the rename: a writer that created it first would make logrotate move
    the writer's file aside and fail. While the path is missing, a watched
    writer keeps writing to the moved file (for at most CREATE_GRACE
    seconds, by its clock: here it never advances), until the new file
    is there.
    """
    path = tmp_path / "app.log"
    writer = LogFileWriter(path, reporter=RecordingReporter(), clock=lambda: 0.0, **NEVER)
    writer.write("line 0\n")
    assert waitFor(lambda: rotationWatcher.running)
    os.rename(path, tmp_path / "app.log.1")
    for n in range(1, 50):
        writer.write(f"line {n}\n")
    assert not path.exists()
    path.write_text("")
    assert writeUntilAtPath(writer, path)
    assert lines(tmp_path / "app.log.1")[:50] == [f"line {n}" for n in range(50)]
    writer.close()


def test_aMovedFileIsReplacedAfterTheGraceIfNobodyCreatesOne(tmp_path: Path) -> None:
    """
    ... if nobody creates it within CREATE_GRACE seconds (by the writer's
    clock, here a millisecond per call), the writer does.
    """
    now = [0.0]

    def clock() -> float:
        now[0] += 0.001
        return now[0]

    path = tmp_path / "app.log"
    writer = LogFileWriter(path, reporter=RecordingReporter(), clock=clock, **NEVER)
    writer.write("line 0\n")
    assert waitFor(lambda: rotationWatcher.running)
    os.rename(path, tmp_path / "app.log.1")
    assert writeUntilAtPath(writer, path)
    assert lines(tmp_path / "app.log.1")[0] == "line 0"
    writer.close()


def test_theGraceCountsFromTheMoveNotFromTheNextWrite(tmp_path: Path) -> None:
    """
    A plain C{mv app.log app.log.1} and nothing after it, then the next
    event a second later (a quiet application): the grace for logrotate's
    create is long over, so that event goes to a new file at the path, not
    to the moved one (as the periodic check alone would do too).
    """
    now = [0.0]
    path = tmp_path / "app.log"
    writer = LogFileWriter(path, reporter=RecordingReporter(), clock=lambda: now[0], **NEVER)
    writer.write("before\n")
    assert waitFor(lambda: rotationWatcher.running)
    os.rename(path, tmp_path / "app.log.1")
    # The watcher has flagged the writer (its next write checks the path).
    assert waitFor(lambda: writer._checkAt == float("-inf"))
    now[0] += 1.0
    writer.write("a second later\n")
    assert lines(path) == ["a second later"]
    assert lines(tmp_path / "app.log.1") == ["before"]
    writer.close()


def test_aLinkedPathIsWatchedWhereItsFileIs(tmp_path: Path) -> None:
    """
    The path is a symbolic link to a file in another directory (logs on a
    bigger disk); logrotate, which does not rotate links, is given the
    file's own path, and renames it there. The watcher watches that
    directory too, so the move is noticed without a periodic check.
    """
    logs, disk = tmp_path / "logs", tmp_path / "disk"
    logs.mkdir()
    disk.mkdir()
    path, real = logs / "app.log", disk / "app-real.log"
    path.symlink_to(real)
    writer = LogFileWriter(path, reporter=RecordingReporter(), **NEVER)
    writer.write("before\n")
    assert waitFor(lambda: rotationWatcher.running)
    os.rename(real, disk / "app-real.log.1")
    real.write_text("")  # logrotate's create
    assert writeUntilAtPath(writer, real, timeout=10.0)
    assert lines(disk / "app-real.log.1")[0] == "before"
    assert {str(logs), str(disk)} <= rotationWatcher.watchedDirectories
    writer.close()
    assert str(disk) not in rotationWatcher.watchedDirectories


def test_aClosedWriterRemovesItsWatch(tmp_path: Path) -> None:
    path = tmp_path / "own" / "app.log"
    path.parent.mkdir()
    writer = LogFileWriter(path, reporter=RecordingReporter(), **NEVER)
    writer.write("line\n")
    assert rotationWatcher.watches(writer)
    assert str(path.parent) in rotationWatcher.watchedDirectories
    writer.close()
    assert not rotationWatcher.watches(writer)
    assert str(path.parent) not in rotationWatcher.watchedDirectories


def test_theWatcherKeepsNoWriterAliveAndEndsWithTheLast(tmp_path: Path) -> None:
    """
    A writer the application lets go is freed (the thread holds writers
    weakly, also while it waits), its directory's watch is removed, and
    the thread ends with the last writer.
    """
    path = tmp_path / "own" / "app.log"
    path.parent.mkdir()
    writer = LogFileWriter(path, reporter=RecordingReporter(), **NEVER)
    writer.write("line\n")
    assert waitFor(lambda: rotationWatcher.running)
    assert str(path.parent) in rotationWatcher.watchedDirectories
    gone = weakref.ref(writer)
    del writer
    assert waitFor(lambda: (gc.collect(), gone() is None)[1], timeout=10)
    assert waitFor(lambda: str(path.parent) not in rotationWatcher.watchedDirectories, timeout=10)
    if rotationWatcher.watchedDirectories == frozenset():
        # No other writer is alive in this process (other tests' may be).
        assert waitFor(lambda: not rotationWatcher.running, timeout=10)


FORK_CHILD = CHILD_HELPERS + textwrap.dedent(
    """
    import json, os, sys, threading, time
    seen = []
    # Registered before the library's: "before" hooks run in reverse
    # order, so this one runs last, just before the fork.
    os.register_at_fork(before=lambda: seen.append(
        sorted(t.name for t in threading.enumerate())))
    from twisted_safelog import LogFileWriter

    here = sys.argv[1]
    NAME = "twisted-safelog rotation watcher"

    def names():
        return sorted(t.name for t in threading.enumerate())

    def wait(condition):
        return waitFor(condition, 20)

    def inotifyDescriptors():
        found = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                found += "inotify" in os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        return found

    path = os.path.join(here, "app.log")
    writer = LogFileWriter(path, checkInterval=3600.0, checkEvery=10**9)
    writer.write("before\\n")
    running = wait(lambda: NAME in names())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Until it writes, the child holds no inotify instance and no
        # thread (a forked worker that never logs costs nothing).
        idle = {"inotify": inotifyDescriptors(), "threads": names()}
        child = {"idle": idle,
                 "noticed": noticed(writer, path, path + ".child", 20),
                 "running": wait(lambda: NAME in names()),
                 "inotify": inotifyDescriptors()}
        os.write(w, json.dumps(child).encode())
        os._exit(0)
    os.close(w)
    child = json.loads(os.read(r, 65536))
    os.waitpid(pid, 0)
    print(json.dumps({
        "runningBefore": running,
        "atFork": seen,
        "child": child,
        "parentRunning": wait(lambda: NAME in names()),
        "parentNoticed": noticed(writer, path, path + ".parent", 20),
    }))
    """
)


def test_theWatcherSurvivesFork(tmp_path: Path) -> None:
    """
    The thread ends just before C{os.fork()} (the process forks with no
    thread of ours) and runs again in both processes, each with an inotify
    descriptor of its own (the child's once it writes: until then it holds
    none, and no thread): a move is noticed in the child and, after it, in
    the parent.
    """
    found = childResult(FORK_CHILD, str(tmp_path))
    assert found["runningBefore"] is True
    assert found["atFork"] == [["MainThread"]]
    assert found["child"] == {
        "idle": {"inotify": 0, "threads": ["MainThread"]},
        "noticed": True,
        "running": True,
        "inotify": 1,
    }
    assert found["parentRunning"] is True
    assert found["parentNoticed"] is True


NO_INOTIFY_CHILD = textwrap.dedent(
    """
    import ctypes, errno, json, os, sys, time
    from twisted_safelog import LogFileWriter, Reporter
    from twisted_safelog._rotationwatch import rotationWatcher

    # Everything is imported: drop root, then use up this user's inotify
    # instances (fs.inotify.max_user_instances), as a busy machine can.
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    libc = ctypes.CDLL(None, use_errno=True)
    held = []
    while len(held) < 100_000:
        fd = libc.inotify_init1(0)
        if fd < 0:
            exhausted = ctypes.get_errno() == errno.EMFILE
            break
        held.append(fd)
    here = sys.argv[1]
    notes = []
    path = os.path.join(here, "app.log")
    writer = LogFileWriter(path, reporter=Reporter(write=notes.append),
                           checkInterval=0.05, checkEvery=10**9)
    results = {"exhausted": exhausted, "held": len(held)}
    for rotation in range(3):
        writer.write(f"before {rotation}\\n")
        results[f"watched {rotation}"] = rotationWatcher.watches(writer)
        os.rename(path, f"{path}.{rotation}")
        # The periodic check (every 0.05 s here) notices instead.
        deadline = time.monotonic() + 20
        n = 0
        while time.monotonic() < deadline:
            n += 1
            writer.write(f"after {rotation} {n}\\n")
            if os.path.exists(path):
                break
            time.sleep(0.01)
    results["reopened"] = writer.reopened
    results["running"] = rotationWatcher.running
    results["notes"] = notes
    print(json.dumps(results))
    """
)


def test_withoutInotifyThePeriodicCheckNoticesAndItIsSaidOnce() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another uid")
    directory = Path(tempfile.mkdtemp(prefix="safelog-noinotify-"))
    try:
        directory.chmod(0o777)
        result = subprocess.run(
            [sys.executable, "-c", NO_INOTIFY_CHILD, str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        checkWithoutInotify(result, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def checkWithoutInotify(result: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["exhausted"] is True, found
    assert [found[f"watched {n}"] for n in range(3)] == [False] * 3
    assert found["reopened"] == 3
    assert found["running"] is False
    said = [line for line in found["notes"] if "inotify" in line]
    assert len(said) == 1, found["notes"]
    assert "cannot watch it for logrotate with inotify" in said[0]
    assert "fs.inotify.max_user_instances" in said[0]
    assert "periodic check" in said[0]
    for n in range(3):
        assert f"before {n}" in lines(tmp_path / f"app.log.{n}")


ROTATING_TAC = textwrap.dedent(
    """
    import os
    from twisted.application import service
    from twisted.internet import reactor, task
    from twisted.logger import Logger

    log = Logger(namespace="rot")
    application = service.Application("rot")
    total = int(os.environ["ROT_EVENTS"])
    state = {"n": 0}

    def burst():
        # 100 events every 5 ms: a busy server's log.
        for _ in range(100):
            n = state["n"]
            if n >= total:
                loop.stop()
                open(os.environ["ROT_DONE"], "w").close()
                return
            log.info("event {n}", n=n)
            state["n"] = n + 1

    loop = task.LoopingCall(burst)
    reactor.callWhenRunning(loop.start, 0.005)
    """
)


@pytest.mark.parametrize("daemon", [False, True], ids=["foreground", "daemon"])
def test_logrotateCreateCompressUnderTwistdLosesNothing(tmp_path: Path, daemon: bool) -> None:
    """
    Real twistd with the factory, real logrotate (create, compress, no
    delaycompress, no postrotate) rotating 8 times while the application
    logs 15,000 events: none or next to none lost (the periodic check alone
    lost 2,300 to 3,300 of them, 15% to 22%); measured 0 to 6 in most runs,
    78 in one run of six with the CPUs overloaded (the woken watcher waits
    for a CPU): bounded at 5%. Daemonized, the watcher starts once twistd
    has forked.
    """
    logrotate = requireTool("logrotate")
    events = 15_000
    log, done = tmp_path / "app.log", tmp_path / "done"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    create\n    rotate 1000\n    missingok\n    compress\n}}\n")
    (tmp_path / "app.tac").write_text(ROTATING_TAC)
    env = environment(ROT_EVENTS=str(events), ROT_DONE=str(done))
    args = ["--logger=twisted_safelog.observer", f"--logfile={log}", "-y", "app.tac"]
    process = pid = None
    if daemon:
        pid = daemonize(args, tmp_path, env, tmp_path / "twistd.pid")
    else:
        process = start(["-n", "--pidfile=", *args], tmp_path, env)
    rotations = 0
    try:
        assert waitFor(lambda: log.exists() and b"event 1" in log.read_bytes(), timeout=60)
        while not done.exists() and rotations < 8:
            subprocess.run(
                [logrotate, "-f", "-s", str(tmp_path / "logrotate.state"), str(conf)],
                check=True,
                timeout=30,
                stderr=subprocess.DEVNULL,  # gzip: "file size changed while zipping"
            )
            rotations += 1
            time.sleep(0.05)
        assert waitFor(done.exists, timeout=120)
    finally:
        if process is not None:
            stop(process)
        if pid is not None:
            stopPid(pid)
    found = set(numbers(*tmp_path.glob("app.log*")))
    lost = sorted(set(range(events)) - found)
    print(f"twistd ({'daemon' if daemon else 'foreground'}): {len(lost)} of {events} lost")
    assert rotations >= 3
    assert len(list(tmp_path.glob("app.log.*.gz"))) == rotations
    assert len(lost) < events // 20, lost[:50]

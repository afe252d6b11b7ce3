"""
File sinks under faults: a real full disk (a 64 KiB tmpfs mounted here),
partial writes, events Twisted's formatter cannot format, control
characters, and a symbolic link swapped in at the log path.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from twisted_safelog import BreakerState, ConfigurationError, LogFileWriter, safeFileLogObserver

from .helpers import RecordingReporter, event, missingComponent, mountedTmpfs

LINE = re.compile(r"^\S+ \[tests#info\] event (\d+) (x*)$")


@pytest.fixture
def smallTmpfs() -> Iterator[Path]:
    """
    A real 64 KiB tmpfs, mounted for the test (we are root). Where it cannot
    be mounted the test is skipped, and under CI=true it fails.
    """
    mountPoint = Path(tempfile.mkdtemp(prefix="safelog-tmpfs-"))
    try:
        with mountedTmpfs(mountPoint, "size=64k,mode=0755"):
            yield mountPoint
    finally:
        mountPoint.rmdir()


def payloadFor(n: int) -> str:
    # 200 to 1,000 bytes: lines straddle the tmpfs's 4 KiB pages.
    return "x" * (200 + (n * 137) % 800)


def wholeLines(path: Path) -> list[int]:
    """
    The event numbers in C{path}, checking that every line is whole: the
    right payload for its number, nothing glued on.
    """
    found = []
    for line in path.read_text().split("\n")[:-1]:
        match = LINE.match(line)
        assert match, f"torn or glued line: {line[:80]!r}...{line[-40:]!r}"
        n = int(match.group(1))
        assert match.group(2) == payloadFor(n), f"torn line for event {n}"
        found.append(n)
    assert path.read_text().endswith("\n")
    return found


def test_fullTmpfsNoTornLineNoGlueNothingLostNothingDuplicated(smallTmpfs: Path) -> None:
    """
    The disk fills up in the middle of an event's line (a short write, then
    ENOSPC): the partial line is rolled back, the events that failed are
    kept and replayed once the space is back, in order, exactly once.
    """
    filler = smallTmpfs / "filler"
    filler.write_bytes(b"f" * 50_000)
    path = smallTmpfs / "app.log"
    clock = Clock()
    reporter = RecordingReporter()
    observer = safeFileLogObserver(path, clock=clock, reporter=reporter, bufferSize=5000)
    total = 80  # about 52 kB of lines: more than is left, less than the disk
    for n in range(total):
        observer(event(n, log_format="event {n} {p}", p=payloadFor(n)))
    stats = observer.stats()
    assert stats.state == BreakerState.open, "the disk must have filled up"
    assert stats.failed == 0
    assert stats.buffered > 0
    assert observer.writer.rolledBack >= 1, "a partial write happened and was rolled back"
    assert any(isinstance(f[1], OSError) and f[1].errno == 28 for f in reporter.failures)
    before = wholeLines(path)
    assert before == list(range(len(before)))
    # The fault clears: the filler goes.
    filler.unlink()
    clock.advance(1)
    observer.drain()
    final = observer.stats()
    assert final.state == BreakerState.closed
    found = wholeLines(path)
    print(
        f"64 KiB tmpfs: {total} events, {len(before)} written before the disk filled, "
        f"{observer.writer.rolledBack} partial writes rolled back; "
        f"lost={total - len(set(found))} duplicated={len(found) - len(set(found))} torn=0"
    )
    assert found == list(range(total)), "in order, none lost, none duplicated"
    assert (final.received, final.delivered, final.failed, final.dropped) == (total, total, 0, 0)


#: A process that fills the tmpfs to the last byte, holds it full a moment,
#: frees it, and again, until told to stop (or its deadline passes).
_FILLER = """
import os, sys, time
path, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline and not os.path.exists(path + ".stop"):
    try:
        with open(path, "ab", buffering=0) as f:
            while True:
                f.write(b"f" * 4096)
    except OSError:
        pass
    time.sleep(0.02)
    os.unlink(path)
    time.sleep(0.01)
if os.path.exists(path):
    os.unlink(path)
"""


def test_threadsLoggingWhileAnotherProcessFillsAndFreesTheDisk(tmp_path: Path) -> None:
    """
    Four threads log into a real 1 MiB tmpfs that another process fills up
    and frees over and over. Every line in the file is whole, each thread's
    events are in its order, none is duplicated, and every event missing
    from the file is counted (here: none is missing).
    """
    mountPoint = tmp_path / "disk"
    mountPoint.mkdir()
    threads, perThread = 4, 300  # about 550 kB of lines

    def payload(t: int, n: int) -> str:
        return "x" * (100 + (t * 7919 + n * 137) % 700)

    with mountedTmpfs(mountPoint, "size=1m"):
        path = mountPoint / "app.log"
        observer = safeFileLogObserver(
            path,
            reporter=RecordingReporter(),
            bufferSize=10_000,
            resetTimeout=0.005,
            maxResetTimeout=0.02,
        )
        filler = subprocess.Popen([sys.executable, "-c", _FILLER, str(mountPoint / "f"), "60"])

        def work(t: int) -> None:
            for n in range(perThread):
                observer(event(n, log_format="T{t} N{n} {p}", t=t, p=payload(t, n)))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        (mountPoint / "f.stop").touch()
        filler.wait(60)
        deadline = time.monotonic() + 30
        while observer.stats().buffered and time.monotonic() < deadline:
            observer.drain()
            time.sleep(0.01)
        stats = observer.stats()
        text = path.read_text()
    assert text.endswith("\n")
    line = re.compile(r"^\S+ \[tests#info\] T(\d) N(\d+) (x*)$")
    seen: dict[int, list[int]] = {t: [] for t in range(threads)}
    for each in text.split("\n")[:-1]:
        match = line.match(each)
        assert match, f"torn or glued line: {each[:60]!r}...{each[-30:]!r}"
        t, n = int(match.group(1)), int(match.group(2))
        assert match.group(3) == payload(t, n), f"torn line for T{t} N{n}"
        seen[t].append(n)
    for t, numbers in seen.items():
        assert numbers == sorted(set(numbers)), f"thread {t}: out of order or duplicated"
    missing = sum(perThread - len(numbers) for numbers in seen.values())
    assert stats.balanced and stats.buffered == 0
    assert missing == stats.failed + stats.dropped
    assert missing == 0


def test_aPartialWriteThatCannotBeRolledBackIsNeverGluedToTheNext(tmp_path: Path) -> None:
    """
    Another process appended after our partial line, so it cannot be cut
    off: the next event starts on a line of its own.
    """
    path = tmp_path / "app.log"
    writer = LogFileWriter(path)
    writer.write("one\n")
    fd = writer._current()
    os.write(fd, b"torn half of a line")  # as if the disk filled here
    with open(path, "a") as other:
        other.write("other process\n")
    writer._rollBack(fd, len(b"torn half of a line"))
    writer.write("two\n")
    lines = path.read_text().split("\n")
    assert lines == ["one", "torn half of a lineother process", "", "two", ""]
    assert "two" in lines, "never glued"


def test_aPartialWriteIsRolledBack(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    writer = LogFileWriter(path)
    writer.write("one\n")
    fd = writer._current()
    os.write(fd, b"torn half")
    writer._rollBack(fd, len(b"torn half"))
    writer.write("two\n")
    assert path.read_text() == "one\ntwo\n"
    assert writer.rolledBack == 1


# -- events the formatter cannot format -------------------------------------------


@pytest.mark.parametrize(
    "odd",
    [
        {"log_time": "2026-11-27"},
        {"log_time": datetime.datetime(2026, 11, 27)},
        {"log_time": float("nan")},
        {"log_time": float("inf")},
        {"log_level": 40},
        {"log_level": ["info"]},
    ],
    ids=["time-str", "time-datetime", "time-nan", "time-inf", "level-int", "level-list"],
)
def test_anEventTwistedCannotFormatIsWrittenNeverCountedDeliveredSilently(
    tmp_path: Path, odd: dict[str, object]
) -> None:
    path = tmp_path / "app.log"
    observer = safeFileLogObserver(path, clock=Clock(), reporter=RecordingReporter())
    observer(event(7, **odd))
    observer(event(8))
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert "event 7" in lines[0]
    assert "unformattable event" in lines[0]
    assert "event 8" in lines[1] and "unformattable" not in lines[1]
    stats = observer.stats()
    assert (stats.delivered, stats.failed) == (2, 0)


# -- control characters ------------------------------------------------------------


def test_controlCharactersCannotForgeOrHideLinesInTheTextLog(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer = safeFileLogObserver(path, clock=Clock(), reporter=RecordingReporter())
    forged = "twisted-safelog: sink quarantined"
    nasty = ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x1b[2J\x1b[31m"]
    for n, char in enumerate(nasty):
        observer(event(n, log_format="event {n} {m}", m=f"ok{char}{forged}"))
    observer(event(99, log_format="first\nsecond"))
    text = path.read_text()
    lines = text.splitlines()  # the Unicode way: breaks at every one of them
    assert len(lines) == len(nasty) + 2
    assert not any(line.startswith("twisted-safelog:") for line in lines)
    assert "\x1b" not in text
    assert "\\x1b[2J" in text and "\\u2028" in text and "\\r" in text
    # A newline is Twisted's: a continuation line indented by a tab.
    assert lines[-2].endswith("first") and lines[-1] == "\tsecond"


# -- a symbolic link swapped in at the log path -------------------------------------------


def test_reopenDoesNotFollowASymlinkSwappedInAtThePath(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = logs / "app.log"
    clock = Clock()
    reporter = RecordingReporter()
    observer = safeFileLogObserver(path, clock=clock, reporter=reporter)
    observer(event(0))
    # Someone who can write the directory swaps in a link before a reopen
    # (logrotate's postrotate, SIGUSR1 under twistd).
    path.rename(logs / "app.log.1")
    path.symlink_to(victim)
    observer.reopen()
    for n in range(1, 20):
        observer(event(n))
    assert victim.read_text() == "precious\n", "the link was not followed"
    refusals = [note for note in reporter.notes if "symbolic link" in note]
    assert len(refusals) == 1, "said once"
    assert "not following it" in refusals[0]
    stats = observer.stats()
    assert stats.state == BreakerState.open
    assert (stats.failed, stats.buffered) == (0, 19)
    # The link is removed: the events are written to a real file, in order.
    path.unlink()
    clock.advance(1)
    observer(event(20))
    assert victim.read_text() == "precious\n"
    assert [int(n) for n in re.findall(r"event (\d+)", path.read_text())] == list(range(1, 21))
    assert not path.is_symlink()


def writtenAcrossAReopen(path: Path, real: Path) -> tuple[list[int], int]:
    """
    Log event 0 into a file sink at C{path}, reopen it, log event 1: the
    numbers of the events in the file C{real}, and the sink's failures.
    """
    observer = safeFileLogObserver(path, clock=Clock(), reporter=RecordingReporter())
    observer(event(0))
    observer.reopen()
    observer(event(1))
    return [int(n) for n in re.findall(r"event (\d+)", real.read_text())], observer.stats().failed


def test_theFirstOpenFollowsTheAdministratorsLinkAndReopensDoToo(tmp_path: Path) -> None:
    real = tmp_path / "data" / "real.log"
    real.parent.mkdir()
    path = tmp_path / "app.log"
    path.symlink_to(real)
    assert writtenAcrossAReopen(path, real) == ([0, 1], 0)


def test_reopensFollowAChainOfTheAdministratorsLinks(tmp_path: Path) -> None:
    """
    The configured path is a link to a link (the same owner's) to the file:
    reopens follow the chain hop by hop, as the first open did.
    """
    real = tmp_path / "data" / "real.log"
    real.parent.mkdir()
    middle = tmp_path / "current.log"
    middle.symlink_to(real)
    path = tmp_path / "app.log"
    path.symlink_to(middle)
    assert writtenAcrossAReopen(path, real) == ([0, 1], 0)


def test_levelsStillReadAsTwistedWrites(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    observer = safeFileLogObserver(path, clock=Clock(), reporter=RecordingReporter())
    observer(event(1, log_level=LogLevel.warn))
    assert "[tests#warn] event 1" in path.read_text()


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"rotateLength": "1000"}, "rotateLength"),
        ({"rotateLength": float("nan")}, "rotateLength"),
        ({"rotateLength": True}, "rotateLength"),
        ({"rotateLength": 0}, "rotateLength"),
        ({"rotateLength": 10**400}, "rotateLength"),
        ({"maxRotatedFiles": 1.5}, "maxRotatedFiles"),
        ({"maxRotatedFiles": 0}, "maxRotatedFiles"),
        ({"mode": "rw"}, "mode"),
    ],
)
def test_fileSettingsThatMakeNoSenseAreRefusedNamingThem(
    tmp_path: Path, settings: dict[str, Any], name: str
) -> None:
    """
    A file sink's own keyword settings are checked like the policy's: one
    L{ConfigurationError} naming the setting, never a C{TypeError} from deep
    inside, nor a NaN that silently turns rotation off.
    """
    with pytest.raises(ConfigurationError, match=rf"^{name}=.* is not valid; use "):
        safeFileLogObserver(tmp_path / "app.log", reporter=RecordingReporter(), **settings)


def _returnsWithin(seconds: float, call: Any) -> Any:
    """
    Run C{call} on a daemon thread and fail (not hang) if it has not
    returned within C{seconds}.
    """
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return result[0] if result else None


@pytest.fixture
def fifoPath(tmp_path: Path) -> Iterator[Path]:
    """
    A path for a FIFO; afterwards a reader opens it once, so that a writer
    stuck in open() (the bug) is let go rather than left blocked.
    """
    path = tmp_path / "app.log"
    yield path
    if path.exists():
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))


def test_aFifoAtTheLogPathNeverBlocksTheFirstOpen(fifoPath: Path) -> None:
    """
    A FIFO nobody reads at the configured path (a log shipper not started
    yet): opening it for writing would wait for a reader for ever. The sink
    starts quarantined instead, at once.
    """
    path = fifoPath
    os.mkfifo(path)
    reporter = RecordingReporter()
    observer = _returnsWithin(
        10, lambda: safeFileLogObserver(path, clock=Clock(), reporter=reporter)
    )
    _returnsWithin(10, lambda: observer(event(0)))
    stats = observer.stats()
    assert stats.state == BreakerState.open
    assert stats.balanced


def test_aFifoSwappedInAtThePathNeverBlocksAReopen(fifoPath: Path) -> None:
    """
    The log file replaced by a FIFO nobody reads, then a reopen (SIGUSR1,
    logrotate's postrotate): the log call returns at once, the event is
    counted, never stuck in open().
    """
    path = fifoPath
    reporter = RecordingReporter()
    observer = safeFileLogObserver(path, clock=Clock(), reporter=reporter)
    observer(event(0))
    path.unlink()
    os.mkfifo(path)
    observer.reopen()
    for n in range(1, 4):
        _returnsWithin(10, lambda n=n: observer(event(n)))
    stats = observer.stats()
    assert stats.delivered == 1
    assert stats.balanced


def administratorsLink(tmp_path: Path) -> tuple[Path, Path]:
    """
    The log path C{logs/app.log}, a link the administrator made to
    C{data/real.log}, and a file that must never be written:
    C{(path, victim)}.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    real = tmp_path / "data" / "real.log"
    real.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = logs / "app.log"
    path.symlink_to(real)
    return path, victim


def test_aLinkSwappedInBetweenTheCheckAndTheReopenIsNotFollowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The administrator's link at the log path is followed on reopen; but
    someone who can write the directory may swap their own link in just
    after the writer looked at the path and before it opened it (and put
    the administrator's back after). The writer opens where the link it
    checked points, never whatever is at the path by then.

    The interleaving is made exact: the swap happens inside the writer's
    own C{lstat} of the path, as a racing process would do it.
    """
    path, victim = administratorsLink(tmp_path)
    logs = path.parent
    observer = safeFileLogObserver(path, clock=Clock(), reporter=RecordingReporter())
    observer(event(0))
    realLstat = os.lstat
    swaps = []

    def racingLstat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = realLstat(target, *args, **kwargs)
        if os.fspath(target) == str(path) and not swaps:
            # The administrator's link moved aside, another in its place.
            swaps.append(True)
            path.rename(logs / "aside")
            path.symlink_to(victim)
        return result

    monkeypatch.setattr(os, "lstat", racingLstat)
    observer.reopen()
    observer(event(1))
    monkeypatch.undo()
    assert victim.read_text() == "precious\n", "the swapped-in link was followed"


def test_aRacingProcessSwappingLinksNeverGetsALineWritten(tmp_path: Path) -> None:
    """
    The real race, for a few seconds: the log path is the administrator's
    link in a directory anyone can write; a process of another user moves
    that link aside, puts its own (to a file it wants written) in its place
    and the administrator's back, in a tight loop, while a root process logs
    and reopens the file after every event. Not one line reaches the file.
    """
    if os.geteuid() != 0:
        missingComponent("needs root to run a process as another user")
    tmp_path.chmod(0o755)
    path, victim = administratorsLink(tmp_path)
    path.parent.chmod(0o777)
    observer = safeFileLogObserver(
        path, reporter=RecordingReporter(), resetTimeout=0.001, maxResetTimeout=0.002
    )
    attack = textwrap.dedent(
        f"""
        import os, time
        path, victim = {str(path)!r}, {str(victim)!r}
        aside, mine = path + ".aside", path + ".mine"
        stop = time.monotonic() + 4
        while time.monotonic() < stop:
            try:
                os.rename(path, aside)
                try:
                    os.symlink(victim, mine)
                except FileExistsError:
                    pass
                os.rename(mine, path)
                os.rename(aside, path)
            except OSError:
                pass
        """
    )
    attacker = subprocess.Popen(["/usr/bin/python3", "-c", attack], user=65534, group=65534)
    try:
        deadline = time.monotonic() + 4
        n = 0
        while time.monotonic() < deadline:
            observer(event(n))
            observer.reopen()
            n += 1
    finally:
        attacker.wait(30)
    assert victim.read_text() == "precious\n", "lines were written through the attacker's link"
    assert observer.stats().received == n

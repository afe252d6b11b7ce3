"""
twisted-safelog under real twistd processes: the factory
(C{--logger=twisted_safelog.observer}) in the foreground and daemonized, the
C{.tac} example, bad configuration, and the loop doctor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    eventsFromJSONLogFile,
)

from twisted_safelog import SafeObserver

from .twistdprocess import (
    EXAMPLES,
    daemonize,
    environment,
    errorLines,
    freePort,
    get,
    runTwistd,
    start,
    stop,
    stopPid,
    theOneErrorLine,
    waitForPort,
)

INCIDENT_TAC = str(EXAMPLES / "incident.tac")
#: twistd re-raises SIGTERM after a clean shutdown, so its status is -15.
CLEAN_EXIT = (0, -signal.SIGTERM)
SAFE_TAC = str(EXAMPLES / "safe_observer.tac")


def appEnvironment(tmp: Path, port: int, broken: bool = True, **extra: str) -> dict[str, str]:
    return environment(
        CHARTAPP_PORT=str(port),
        CHARTAPP_LOG_DIR=str(tmp),
        CHARTAPP_BREAK_LOGGING="1" if broken else "0",
        # The example ends itself when wedged for 10 s (its bound for people
        # trying it); these tests end it themselves, on conditions.
        CHARTAPP_WEDGE_SECONDS="600",
        **extra,
    )


def serveRequests(port: int, count: int) -> list[tuple[int, float]]:
    return [get(port, f"/chart-data?series=s{n}") for n in range(count)]


FACTORY = ["-n", "--logger=twisted_safelog.observer", "--pidfile="]


def serveUnderTwistd(
    tmp: Path,
    args: list[str],
    env: dict[str, str],
    requests: int,
    during: Callable[[subprocess.Popen[bytes], int], None] | None = None,
) -> tuple[int | None, list[tuple[int, float]]]:
    """
    Start twistd with C{args}, serve C{requests} requests (then call
    C{during}, if given), stop it with SIGTERM; return its exit status and
    the (status, seconds) of each request.
    """
    port = int(env["CHARTAPP_PORT"])
    process = start(args, tmp, env)
    try:
        assert waitForPort(port, process=process), (tmp / "twistd-stderr.txt").read_text()
        results = serveRequests(port, requests)
        if during is not None:
            during(process, port)
    finally:
        status = stop(process)
    return status, results


def test_hardenedTwistdKeepsServingWithTheIncidentsBrokenHandler(tmp_path: Path) -> None:
    log = tmp_path / "twistd.log"
    status, results = serveUnderTwistd(
        tmp_path,
        [*FACTORY, f"--logfile={log}", "-y", INCIDENT_TAC],
        appEnvironment(tmp_path, freePort()),
        100,
    )
    assert status in CLEAN_EXIT, "SIGTERM ends it cleanly"
    # Every request answered, each within the client's timeout (the plain
    # app answers none once the loop starts; speed is measured in
    # benchmarks/, not here).
    statuses = [s for s, _ in results]
    assert statuses == [200] * 100
    text = log.read_text()
    assert text.count("served chart data") == 100
    assert "quarantined after 5 consecutive failures" in text
    assert text.count("Traceback (most recent call last)") == 1, "only the first failure's"
    assert "--- Logging error ---" not in text
    assert "Server Shut Down." in text
    assert log.stat().st_size < 200_000
    # What the quarantined handler still held at shutdown is counted and said.
    assert "events (shutdown)" in text
    # In the foreground the operator sees the reports on the terminal too.
    stderr = (tmp_path / "twistd-stderr.txt").read_text()
    assert "quarantined after" in stderr
    # An ILogObserver: twistd neither wrapped it nor warned.
    assert "DeprecationWarning" not in stderr + text


def test_plainTwistdLoopsOnTheSameApp(tmp_path: Path) -> None:
    """
    Without the flag the same app wedges: the scenario is real.
    """
    port = freePort()
    log = tmp_path / "twistd.log"
    process = start(
        ["-n", f"--logfile={log}", "--pidfile=", "-y", INCIDENT_TAC],
        tmp_path,
        appEnvironment(tmp_path, port),
    )

    def logged() -> tuple[int, int]:
        # twistd's own LogFile rotates at 1 MB: read every generation.
        generations = sorted(tmp_path.glob("twistd.log*"))
        size = sum(p.stat().st_size for p in generations)
        errors = sum(
            p.read_text(errors="replace").count("--- Logging error ---") for p in generations
        )
        return errors, size

    try:
        assert waitForPort(port, timeout=60, process=process)
        # Ends as soon as the loop is proven: the log filling with the
        # handler's tracebacks while requests go unanswered.
        deadline = time.monotonic() + 120
        served = 0
        while True:
            status, _ = get(port, "/chart-data", timeout=1.0)
            served += status == 200
            errors, size = logged()
            if errors >= 20 and size > 100_000:
                break
            assert time.monotonic() < deadline, f"no loop in 120 s: {errors} errors, {size} B"
            if status == 200:
                continue
            assert process.poll() is None, "plain twistd exited instead of looping"
    finally:
        process.kill()
        process.wait()
    assert served < 5


def test_daemonModeWithLogfileAndPidfile(tmp_path: Path) -> None:
    port = freePort()
    log = tmp_path / "daemon.log"
    pid = daemonize(
        ["--logger=twisted_safelog.observer", f"--logfile={log}", "-y", INCIDENT_TAC],
        tmp_path,
        appEnvironment(tmp_path, port),
        tmp_path / "daemon.pid",
        pidTimeout=20,
    )
    try:
        assert waitForPort(port)
        results = serveRequests(port, 30)
    finally:
        assert stopPid(pid), "SIGTERM ends the daemon"
    assert [s for s, _ in results] == [200] * 30
    text = log.read_text()
    assert text.count("served chart data") == 30
    # Daemonized, fd 2 is /dev/null: the reports are in the log file itself,
    # marked as the library's own lines.
    reports = [line for line in text.splitlines() if line.startswith("twisted-safelog:")]
    assert any("quarantined after 5 consecutive failures" in line for line in reports)


def test_tacWithSafeObserverComponent(tmp_path: Path) -> None:
    log = tmp_path / "safe.log"
    status, results = serveUnderTwistd(
        tmp_path,
        ["-n", "--pidfile=", "-y", SAFE_TAC],
        appEnvironment(tmp_path, freePort(), SAFE_EXAMPLE_LOG=str(log)),
        40,
    )
    assert status in CLEAN_EXIT
    assert [s for s, _ in results] == [200] * 40
    text = log.read_text()
    assert text.count("served chart data") == 40
    assert "--- Logging error ---" not in text


def test_jsonFormatReadsBack(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    serveUnderTwistd(
        tmp_path,
        [*FACTORY, f"--logfile={log}", "-y", INCIDENT_TAC],
        appEnvironment(tmp_path, freePort(), broken=False, TWISTED_SAFELOG_FORMAT="json"),
        5,
    )
    with open(log) as f:
        events = list(eventsFromJSONLogFile(f))
    served = [e for e in events if e.get("log_namespace") == "chartapp"]
    assert [e["series"] for e in served] == [f"s{n}" for n in range(5)]


def test_sigusr1ReopensTheLogFile(tmp_path: Path) -> None:
    log = tmp_path / "rot.log"

    old = tmp_path / "rot.log.old"

    def holdsOldFile(pid: int) -> bool:
        fds = Path(f"/proc/{pid}/fd")
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == str(old):
                    return True
            except OSError:
                pass
        return False

    def rotate(process: subprocess.Popen[bytes], port: int) -> None:
        # Every line of the three requests is written (the last, the access
        # lines, included): nothing is left to be delivered, so nothing but
        # SIGUSR1 can make the process let go of the renamed file.
        deadline = time.monotonic() + 60
        while not (
            log.read_text().count("served chart data") == 3
            and log.read_text().count('"GET /chart-data') == 3
        ):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.02)
        os.rename(log, old)
        assert holdsOldFile(process.pid)
        process.send_signal(signal.SIGUSR1)
        # SIGUSR1 closes the renamed file at once, before any new event
        # (the inode check before each write would only notice at the next).
        while holdsOldFile(process.pid):
            assert time.monotonic() < deadline, "SIGUSR1 did not close the log file"
            time.sleep(0.02)
        serveRequests(port, 4)

    serveUnderTwistd(
        tmp_path,
        [*FACTORY, f"--logfile={log}", "-y", INCIDENT_TAC],
        appEnvironment(tmp_path, freePort(), broken=False),
        3,
        rotate,
    )
    assert old.read_text().count("served chart data") == 3
    assert log.read_text().count("served chart data") == 4


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "TWISTED_SAFELOG_FORMAT",
            "xml",
            "TWISTED_SAFELOG_FORMAT='xml' is not valid; use one of: text, json",
        ),
        ("TWISTED_SAFELOG_LEVEL", "loud", "use one of: critical, debug, error, info, warn"),
        ("TWISTED_SAFELOG_FAILURE_THRESHOLD", "0", "use an integer >= 1"),
        ("TWISTED_SAFELOG_RESET_TIMEOUT", "soon", "use a finite number > 0"),
        ("TWISTED_SAFELOG_RESET_TIMEOUT", "inf", "use a finite number > 0"),
        ("TWISTED_SAFELOG_CONFIG", "/dev/zero", "is a character device, not a regular file"),
        ("TWISTED_SAFELOG_BRIDGE", "sideways", "none, to-stdlib, from-stdlib, both"),
        ("TWISTED_SAFELOG_BOGUS", "1", "TWISTED_SAFELOG_BOGUS is not a twisted-safelog setting"),
        ("TWISTED_SAFELOG_CONFIG", "/nonexistent/safelog.toml", "cannot read it"),
        # Too big for a float, then too big for a C size: each one line too.
        ("TWISTED_SAFELOG_BUFFER_SIZE", "1" + "0" * 400, "use an integer >= 0 and <= "),
        ("TWISTED_SAFELOG_BUFFER_SIZE", str(2**63), "use an integer >= 0 and <= "),
    ],
)
def test_badConfigurationExitsWithOneClearLine(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = runTwistd(
        [*FACTORY, "-y", INCIDENT_TAC],
        tmp_path,
        appEnvironment(tmp_path, freePort(), broken=False, **{variable: value}),
    )
    assert expected in theOneErrorLine(result)


def test_logfileThatIsADirectoryExitsWithOneClearLine(tmp_path: Path) -> None:
    result = runTwistd(
        [*FACTORY, f"--logfile={tmp_path}", "-y", INCIDENT_TAC],
        tmp_path,
        appEnvironment(tmp_path, freePort(), broken=False),
    )
    assert result.returncode == 1
    lines = errorLines(result)
    assert lines == [f"twisted-safelog: log file {tmp_path} is a directory; give a file path"]


def runDoctor(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "doctor", "--tac", INCIDENT_TAC, *args],
        cwd=tmp,
        env=appEnvironment(tmp, freePort()),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctorFindsTheIncidentsLoopUnguarded(tmp_path: Path) -> None:
    result = runDoctor(tmp_path)
    assert result.returncode == 1, result.stderr
    assert (
        "twisted publisher -> STDLibLogObserver -> logger 'twisted' -> "
        f"RotatingFileHandler({tmp_path}/chartapp.log) -> (on failure) handleError -> "
        "sys.stderr <stderr LoggingFile> -> twisted publisher  [UNGUARDED]"
    ) in result.stdout
    assert "1 unguarded." in result.stdout


def test_doctorReportsItGuardedUnderTheFactory(tmp_path: Path) -> None:
    result = runDoctor(tmp_path, "--logger", "twisted_safelog.observer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[guarded by SafeObserver, SafeHandler" in result.stdout
    assert "0 unguarded." in result.stdout


def test_nonBlockingSettingServesWithTheBrokenHandler(tmp_path: Path) -> None:
    log = tmp_path / "nb.log"
    status, results = serveUnderTwistd(
        tmp_path,
        [*FACTORY, f"--logfile={log}", "-y", INCIDENT_TAC],
        appEnvironment(
            tmp_path,
            freePort(),
            TWISTED_SAFELOG_NONBLOCKING="true",
            TWISTED_SAFELOG_BRIDGE="to-stdlib",
        ),
        50,
    )
    assert status in CLEAN_EXIT
    assert [s for s, _ in results] == [200] * 50
    text = log.read_text()
    # Flushed at reactor shutdown, before the process re-raised SIGTERM.
    assert text.count("served chart data") == 50
    assert "Server Shut Down." in text
    assert "quarantined after 5 consecutive failures" in text
    threads = [line for line in text.splitlines() if "twisted-safelog worker" in line]
    assert threads == [], "the worker thread logs nothing of its own"


def test_observersAndHandlersAddedAfterStartUpAreHardenedToo(tmp_path: Path) -> None:
    """
    The incident's framework added its stdlib bridge and handler itself;
    here it does so once the reactor runs, after the factory hardened the
    process.
    """
    log = tmp_path / "late.log"
    status, results = serveUnderTwistd(
        tmp_path,
        [*FACTORY, f"--logfile={log}", "-y", INCIDENT_TAC],
        appEnvironment(tmp_path, freePort(), CHARTAPP_LATE_LOGGING="1"),
        60,
    )
    assert status in CLEAN_EXIT
    assert [s for s, _ in results] == [200] * 60
    text = log.read_text()
    assert text.count("served chart data") == 60
    assert "quarantined after 5 consecutive failures" in text
    assert "--- Logging error ---" not in text


def test_observerIsACallableAttributeTwistdCanResolve() -> None:
    """
    twistd resolves --logger with namedAny; a submodule named observer.py
    would shadow the factory.
    """
    from twisted.python.reflect import namedAny

    import twisted_safelog

    assert namedAny("twisted_safelog.observer") is twisted_safelog.observer
    assert not (Path(twisted_safelog.__file__).parent / "observer.py").exists()


def test_factoryReturnsAnILogObserverSoTwistdDoesNotWrapIt(tmp_path: Path) -> None:
    script = (
        "import sys, warnings\n"
        "warnings.simplefilter('error')\n"
        "sys.argv = ['twistd', '-n']\n"
        "from twisted.logger import ILogObserver\n"
        "from zope.interface.verify import verifyObject\n"
        "import twisted_safelog\n"
        "print(verifyObject(ILogObserver, twisted_safelog.observer()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "True", result.stderr


def test_doctorLoadsAModule(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "doctor", "--module", "chartapp"],
        cwd=EXAMPLES,
        env=appEnvironment(tmp_path, freePort()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "chartapp under twistd" in result.stdout
    assert "[UNGUARDED]" in result.stdout


def _filters(minimum: LogLevel) -> tuple[Any, list[Any], Any, list[Any]]:
    """
    Twisted's level filter at C{minimum} and the twistd observer's, each
    with the list of events it passed.
    """
    from twisted_safelog._twistd import _TwistdObserver

    expectedSeen: list[Any] = []
    twisted = FilteringLogObserver(
        expectedSeen.append, [LogLevelFilterPredicate(defaultLogLevel=minimum)]
    )
    seen: list[Any] = []
    ours = _TwistdObserver(
        FilteringLogObserver(seen.append, [LogLevelFilterPredicate(defaultLogLevel=minimum)]),
        SafeObserver(lambda event: None),
        seen.append,
        minimum,
    )
    return twisted, expectedSeen, ours, seen


@pytest.mark.parametrize("minimum", list(LogLevel.iterconstants()))
def test_levelFilterPassesWhatTwistedsFilterPasses(minimum: LogLevel) -> None:
    """
    The twistd observer's level filter answers the common event with a set
    lookup; every event, common or odd, is passed, dropped or raised on
    exactly as Twisted's C{FilteringLogObserver} with a
    C{LogLevelFilterPredicate} does.
    """

    events: list[Any] = [
        *({"log_level": level, "log_namespace": "app.web"} for level in LogLevel.iterconstants()),
        {"log_level": LogLevel.critical, "log_namespace": ""},
        {"log_level": LogLevel.critical, "log_namespace": None},
        {"log_level": LogLevel.critical, "log_namespace": 5},
        {"log_level": LogLevel.critical},
        {"log_namespace": "app"},
        {"log_level": None, "log_namespace": "app"},
        {"log_level": 40, "log_namespace": "app"},
        {"log_level": "info", "log_namespace": "app"},
        {"log_level": [LogLevel.info], "log_namespace": "app"},
        None,
        "not an event",
    ]

    def outcomes(observer: Callable[[Any], None], seen: list[Any]) -> list[object]:
        result: list[object] = []
        for event in events:
            before = len(seen)
            try:
                observer(event)
            except Exception as error:
                result.append(type(error))
            else:
                result.append(len(seen) > before)
        return result

    twisted, expectedSeen, ours, seen = _filters(minimum)
    assert outcomes(ours, seen) == outcomes(twisted, expectedSeen)
    assert seen == expectedSeen
    assert any(seen), "some events pass"


class _LevelLike:
    """
    Equal to C{LogLevel.error} and hashed like it, but ordered below
    every level: Twisted's filter compares it and drops it.
    """

    def __hash__(self) -> int:
        return hash(LogLevel.error)

    def __eq__(self, other: object) -> bool:
        return other is LogLevel.error

    def __lt__(self, other: object) -> bool:
        return True


class _Missing(dict):  # type: ignore[type-arg]
    """
    A dict whose subscript answers a missing key (get() does not).
    """

    def __missing__(self, key: str) -> object:
        return {"log_namespace": "app", "log_level": LogLevel.critical}.get(key)


class _Namespace(str):
    pass


@pytest.mark.parametrize("minimum", [LogLevel.info, LogLevel.warn])
def test_levelFilterTreatsOddEventsAsTwistedsFilterDoes(minimum: LogLevel) -> None:
    """
    Events the set lookup must not answer, each made anew for each filter
    (some are changed by being looked at): mappings whose subscript differs
    from get() (a defaultdict grows the missing key: it passed, or raised a
    TypeError, where Twisted drops it), an event with log_trace (Twisted's
    filter appends itself to it), a level look-alike equal to a LogLevel,
    a level from a pickled event, a str subclass namespace. Each is passed,
    dropped or raised on, and left, exactly as with Twisted's
    C{FilteringLogObserver}.
    """
    import pickle
    from collections import defaultdict

    makers: list[Callable[[], Any]] = [
        lambda: defaultdict(lambda: "app", {"log_level": LogLevel.info}),
        lambda: defaultdict(str, {"log_namespace": "app"}),
        lambda: defaultdict(lambda: None, {"log_namespace": "app"}),
        lambda: _Missing(log_level=LogLevel.critical),
        lambda: _Missing(log_namespace="app"),
        lambda: {"log_level": LogLevel.info, "log_namespace": "app", "log_trace": []},
        lambda: {"log_level": LogLevel.warn, "log_namespace": "app", "log_trace": []},
        lambda: {"log_level": _LevelLike(), "log_namespace": "app"},
        lambda: {"log_level": pickle.loads(pickle.dumps(LogLevel.error)), "log_namespace": "a"},
        lambda: {"log_level": pickle.loads(pickle.dumps(LogLevel.debug)), "log_namespace": "a"},
        lambda: {"log_level": LogLevel.error, "log_namespace": _Namespace("app")},
        lambda: {"log_level": LogLevel.debug, "log_namespace": _Namespace("app")},
    ]

    def outcome(observer: Callable[[Any], None], seen: list[Any], event: Any) -> object:
        before = len(seen)
        try:
            observer(event)
        except Exception as error:
            result: object = type(error)
        else:
            result = len(seen) > before
        # What the filter left in the event (the trace: how many entries).
        left = {k: len(v) if k == "log_trace" else repr(v) for k, v in event.items()}
        return result, sorted(left.items())

    for make in makers:
        twisted, expectedSeen, ours, seen = _filters(minimum)
        expected = outcome(twisted, expectedSeen, make())
        # (Object reprs differ between two events made alike: compare
        # what is not an address.)
        got = outcome(ours, seen, make())
        strip = lambda o: str(o).split(" object at ")[0]  # noqa: E731
        assert strip(got) == strip(expected), make()


ODD_EVENTS_TAC = """
import json, os, pickle
from collections import defaultdict
from twisted.application import service
from twisted.internet import reactor
from twisted.logger import (
    FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogPublisher)

application = service.Application("odd events")

class Missing(dict):
    def __missing__(self, key):
        return {"log_namespace": "app", "log_level": LogLevel.critical}.get(key)

def makers():
    for level in LogLevel.iterconstants():
        yield lambda: {"log_level": level, "log_namespace": "app"}
        yield lambda: {"log_level": level, "log_namespace": "app", "log_trace": []}
        yield lambda: defaultdict(lambda: "app", {"log_level": level})
        yield lambda: defaultdict(str, {"log_namespace": "app"})
        yield lambda: Missing(log_level=level)
        yield lambda: {"log_level": pickle.loads(pickle.dumps(level)), "log_namespace": "app"}

def logAll():
    minimum = LogLevel.levelWithName(os.environ["TWISTED_SAFELOG_LEVEL"])
    expected = []
    for n, make in enumerate(makers()):
        # What Twisted's own filter does with a copy made alike.
        passed = []
        FilteringLogObserver(passed.append, [LogLevelFilterPredicate(minimum)])(make())
        if passed:
            expected.append(n)
        event = make()
        event["log_format"] = "odd event {odd}"
        event["odd"] = n
        event["log_time"] = 0.0
        globalLogPublisher(event)
    with open("expected.json", "w") as f:
        json.dump(expected, f)
    reactor.callLater(0.1, reactor.stop)

reactor.callWhenRunning(logAll)
"""


@pytest.mark.parametrize("level", ["debug", "info", "warn", "critical"])
def test_levelFilterUnderRealTwistdWritesWhatTwistedsFilterPasses(
    tmp_path: Path, level: str
) -> None:
    """
    Under a real twistd with C{--logger=twisted_safelog.observer} and
    C{TWISTED_SAFELOG_LEVEL}, an app logs events of every level, plain and
    odd (a log_trace, mappings whose subscript answers a missing key, a
    level from a pickled event): the log file has exactly the events that
    Twisted's C{FilteringLogObserver} passes for a copy of each made alike.
    """
    (tmp_path / "odd.tac").write_text(ODD_EVENTS_TAC)
    log = tmp_path / "odd.log"
    result = runTwistd(
        [*FACTORY, f"--logfile={log}", "-y", "odd.tac"],
        tmp_path,
        environment(TWISTED_SAFELOG_LEVEL=level),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = json.loads((tmp_path / "expected.json").read_text())
    written = [
        int(line.rsplit(" ", 1)[1]) for line in log.read_text().splitlines() if "odd event " in line
    ]
    assert written == expected
    assert expected, "some events pass"

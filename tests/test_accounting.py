"""
Tests for the accounting of every hardened sink at interpreter exit and at
reactor shutdown, whoever made it: what a sink still buffers is replayed if
its breaker allows, else counted (C{"shutdown"}) and reported in one line
that names the sink and the exact count.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from twisted.internet.task import Clock

from twisted_safelog import SafeObserver
from twisted_safelog._accounting import accountAll

from .helpers import RecordingReporter, event


def runScript(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def shutdownLines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.endswith("(shutdown)")]


_BROKEN = """
    from twisted_safelog import SafeObserver

    class Broken:
        def __call__(self, event):
            raise OSError("disk gone")

    # Made by the application itself, not by install() or the factory.
    observer = SafeObserver(Broken(), name="app-sink")
    for n in range(12):
        observer({"log_format": "event {n}", "n": n})
"""


def test_anApplicationsOwnSinkIsAccountedAtExit() -> None:
    result = runScript(textwrap.dedent(_BROKEN))
    assert result.returncode == 0, result.stderr
    # 5 failures quarantine it; the other 7 wait in its buffer.
    lines = shutdownLines(result.stderr)
    assert len(lines) == 1 and "sink app-sink dropped 7 events (shutdown)" in lines[0]


def test_accountedAtReactorShutdownWhenExitSkipsAtexit() -> None:
    """
    twistd ends by re-raising SIGTERM, which skips atexit; os._exit does
    the same here. The reactor's shutdown is where the count is made.
    """
    script = (
        "from twisted.internet import reactor\n"
        + textwrap.dedent(_BROKEN)
        + textwrap.dedent(
            """
            import os
            reactor.callWhenRunning(reactor.stop)
            reactor.run()
            os._exit(0)
            """
        )
    )
    result = runScript(script)
    assert result.returncode == 0, result.stderr
    lines = shutdownLines(result.stderr)
    assert len(lines) == 1 and "sink app-sink dropped 7 events (shutdown)" in lines[0]


def test_aHardenedHandlersBufferIsAccountedAtExit() -> None:
    result = runScript(
        """
        import logging
        import twisted_safelog
        twisted_safelog.install()

        class Raising(logging.Handler):
            def emit(self, record):
                raise RuntimeError("broken")

        logger = logging.getLogger("app")
        logger.addHandler(Raising())
        # 5 failures quarantine it, the next 5 are early probes (they fail
        # too: the handler, not the records, is broken), 4 stay buffered.
        for n in range(14):
            logger.warning("event %d", n)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = shutdownLines(result.stderr)
    assert len(lines) == 1 and re.search(r"sink <Raising \(NOTSET\)> dropped 4 events", lines[0])


def test_plainExitIsSilentForHealthySinks() -> None:
    result = runScript(
        """
        import io, logging
        import twisted_safelog
        from twisted.logger import textFileLogObserver
        twisted_safelog.install()
        observer = twisted_safelog.SafeObserver(textFileLogObserver(io.StringIO()))
        observer({"log_format": "fine"})
        logging.getLogger("app").addHandler(logging.StreamHandler(io.StringIO()))
        logging.getLogger("app").warning("fine")
        """
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_whatTheBreakerAllowsIsReplayedNotDropped() -> None:
    clock = Clock()
    reporter = RecordingReporter()
    delivered: list[object] = []
    failing = [True]

    def sink(e: object) -> None:
        if failing[0]:
            raise OSError("not yet")
        delivered.append(e["n"])  # type: ignore[index]

    observer = SafeObserver(sink, reporter=reporter, clock=clock, name="replayed")
    for n in range(8):
        observer(event(n))
    assert observer.stats().buffered == 3
    failing[0] = False
    clock.advance(60)
    accountAll()
    assert delivered == [5, 6, 7]
    assert not [d for d in reporter.drops if d[0] == "replayed"]
    assert observer.stats().balanced

# -*- test-case-name: tests.test_incident -*-
"""
The parent side of an incident run: start a variant in a child process,
end it when it finished, when the loop is proven (its failing sinks called
a given number of times) or at a deadline, and say what happened.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attrs import define

from ._variants import VARIANTS

__all__ = [
    "IncidentResult",
    "RunningIncident",
    "loopProof",
    "resultsOf",
    "runIncident",
    "startIncident",
]


_SERVED = re.compile(r"chart-data request (\d+) served")
_POLL = 0.05
_KNOWN = {
    "variant",
    "hardened",
    "events",
    "completed",
    "meanEventSeconds",
    "worstEventSeconds",
    "failingCalls",
    "cpuSeconds",
    "done",
}


def loopProof(events: int) -> int:
    """
    How many calls of the failing sinks (plus datagrams sent) prove the loop
    in a run of C{events} application events: more than any variant can make
    without one (two per event: a failing file and a syslog datagram), and
    at least 500.

    @param events: application events in the run.
    """
    return max(500, 3 * events)


def _work(data: dict[str, Any]) -> int:
    return int(data.get("failingCalls", 0)) + int(data.get("syslogDatagrams", 0))


@define
class IncidentResult:
    """
    What one run of a variant did, read from its status file and stderr.

    @ivar variant: The variant's name (a key of L{VARIANTS}).
    @ivar hardened: Was it the twisted-safelog run?
    @ivar events: Application events the run was to log.
    @ivar completed: Application events whose log call returned.
    @ivar done: Did the child log every event?
    @ivar timedOut: Was the child killed at the deadline?
    @ivar proven: Was the child killed because the loop was proven (its
        failing sinks were called L{loopProof} times before it finished)?
    @ivar elapsed: Seconds from start to end.
    @ivar cpuSeconds: The child's CPU time at its last status.
    @ivar failingCalls: Calls of the failing sinks.
    @ivar meanEventSeconds: Mean time per completed application event.
    @ivar worstEventSeconds: The longest completed application event.
    @ivar bytesWritten: Bytes in every log file the run left.
    @ivar witnessText: What the healthy sinks received (their files).
    @ivar stderr: The child's standard error (fd 2): the out-of-band reports.
    @ivar extra: Variant-specific counters.
    """

    variant: str
    hardened: bool
    events: int
    completed: int
    done: bool
    timedOut: bool
    proven: bool
    elapsed: float
    cpuSeconds: float
    failingCalls: int
    meanEventSeconds: float | None
    worstEventSeconds: float
    bytesWritten: int
    witnessText: str
    stderr: str
    extra: dict[str, Any]

    @property
    def reports(self) -> list[str]:
        """
        The library's own out-of-band report lines.
        """
        from .._report import REPORT_PREFIX

        return [line for line in self.stderr.splitlines() if line.startswith(REPORT_PREFIX)]

    def appEventsInWitness(self) -> int:
        """
        How many distinct application events reached the healthy sinks.
        """
        return len(set(_SERVED.findall(self.witnessText)))

    @property
    def looped(self) -> bool:
        """
        Did the run show the feedback loop: ended unfinished after
        L{loopProof} calls of its failing sinks (or datagrams), more than
        any run without a loop can make? A hardened run makes about a dozen.
        """
        work = self.failingCalls + int(self.extra.get("syslogDatagrams", 0))
        return not self.done and work >= loopProof(self.events)

    def problems(self) -> list[str]:
        """
        What a hardened run did wrong, in words (empty when it behaved): the
        checks the demo's verdict and the suite share.
        """
        found = []
        if not self.done or self.completed != self.events:
            found.append(f"completed {self.completed} of {self.events} events")
        limit = VARIANTS[self.variant].hardenedLimit(self.events)
        if self.failingCalls > limit:
            found.append(f"failing sinks were called {self.failingCalls} times (limit {limit})")
        if self.appEventsInWitness() != self.events:
            found.append(f"healthy sinks got {self.appEventsInWitness()} of {self.events} events")
        return found


class RunningIncident:
    """
    A variant running in a child process; L{result} waits for its end.
    Several may run at once.

    The parameters are L{startIncident}'s, which makes it.

    @param variant: see L{startIncident}.
    @param hardened: see L{startIncident}.
    @param events: see L{startIncident}.
    @param timeout: see L{startIncident}.
    @param stopAtProof: see L{startIncident}.
    @param workdir: see L{startIncident}.
    """

    def __init__(
        self,
        variant: str,
        hardened: bool,
        events: int,
        timeout: float,
        stopAtProof: bool,
        workdir: Path | None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.variant = variant
        self.hardened = hardened
        self.events = events
        self.timeout = timeout
        # A variant that nests rather than loops (last-resort) runs to its end.
        self.stopAtProof = stopAtProof and VARIANTS[variant].plainLoops
        self._cleanup = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"safelog-{variant}-")) if workdir is None else workdir
        )
        self._status = self.workdir / "status.json"
        command = [
            sys.executable,
            "-m",
            "twisted_safelog.incident._child",
            variant,
            "--events",
            str(events),
            "--workdir",
            str(self.workdir),
            "--status",
            str(self._status),
        ]
        if hardened:
            command.append("--hardened")
        self._ended: str | None = None
        self._elapsed = 0.0
        self._result: IncidentResult | None = None
        self._start = time.monotonic()
        with open(self.workdir / "stderr.txt", "wb") as errFile:
            self._child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errFile
            )

    def _readStatus(self) -> dict[str, Any]:
        try:
            data = json.loads(self._status.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def poll(self) -> bool:
        """
        Has the run ended? Ends it first if its deadline has passed or, when
        asked, the loop is proven (the child is killed).
        """
        if self._ended is not None:
            return True
        if self._child.poll() is None:
            if time.monotonic() >= self._start + self.timeout:
                self._ended = "timeout"
            elif self.stopAtProof:
                data = self._readStatus()
                if not data.get("done") and _work(data) >= loopProof(self.events):
                    self._ended = "proven"
            if self._ended is None:
                return False
            self._child.kill()
        else:
            self._ended = "exited"
        self._child.wait()
        self._elapsed = time.monotonic() - self._start
        return True

    def result(self) -> IncidentResult:
        """
        Wait until the run ends (see L{poll}) and say what happened.
        """
        while not self.poll():
            time.sleep(_POLL)
        if self._result is None:
            self._result = self._collect(
                self._ended == "timeout", self._ended == "proven", self._elapsed
            )
        return self._result

    def _collect(self, timedOut: bool, proven: bool, elapsed: float) -> IncidentResult:
        work = self.workdir
        data = self._readStatus()
        stderr = (work / "stderr.txt").read_text(errors="replace")
        written = sum(p.stat().st_size for p in work.rglob("*.log*") if p.is_file())
        witness = ""
        for name in ("other.log", "other-stdlib.log"):
            if (work / name).exists():
                with open(work / name, errors="replace") as f:
                    witness += f.read(20_000_000)
        result = IncidentResult(
            variant=self.variant,
            hardened=self.hardened,
            events=self.events,
            completed=data.get("completed", 0),
            done=bool(data.get("done")),
            timedOut=timedOut,
            proven=proven,
            elapsed=elapsed,
            cpuSeconds=data.get("cpuSeconds", 0.0),
            failingCalls=data.get("failingCalls", 0),
            meanEventSeconds=data.get("meanEventSeconds"),
            worstEventSeconds=data.get("worstEventSeconds", 0.0),
            bytesWritten=written,
            witnessText=witness,
            stderr=stderr,
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )
        if self._cleanup:
            shutil.rmtree(work, ignore_errors=True)
        return result


def startIncident(
    variant: str,
    hardened: bool,
    events: int = 300,
    timeout: float = 5.0,
    stopAtProof: bool = False,
    workdir: Path | None = None,
) -> RunningIncident:
    """
    Start C{variant} in a child process and return at once.

    @param variant: A key of L{VARIANTS}.
    @param hardened: Run it with twisted-safelog (or with plain Twisted).
    @param events: Application events to log.
    @param timeout: Seconds after which the child is killed.
    @param stopAtProof: Kill the child as soon as the loop is proven
        (L{loopProof} calls of its failing sinks) instead of at C{timeout}
        (for a variant whose L{plainLoops
        <twisted_safelog.incident.Variant.plainLoops>} is true).
    @param workdir: The run's directory (default: a temporary one, removed
        when the result is collected).
    """
    return RunningIncident(variant, hardened, events, timeout, stopAtProof, workdir)


def resultsOf(runs: Iterable[RunningIncident]) -> list[IncidentResult]:
    """
    Wait for several runs at once (each is ended at its own proof or
    deadline while the others go on) and return their results in order.

    @param runs: runs started with L{startIncident}.
    """
    pending = list(runs)
    while not all([run.poll() for run in pending]):
        time.sleep(_POLL)
    return [run.result() for run in pending]


def runIncident(
    variant: str,
    hardened: bool,
    events: int = 300,
    timeout: float = 5.0,
    stopAtProof: bool = False,
    workdir: Path | None = None,
) -> IncidentResult:
    """
    Run C{variant} in a child process and say what happened; the parameters
    are L{startIncident}'s.

    @param variant: a key of L{VARIANTS}.
    @param hardened: run it with twisted-safelog (or with plain Twisted).
    @param events: application events to log.
    @param timeout: seconds after which the child is killed.
    @param stopAtProof: kill the child as soon as the loop is proven.
    @param workdir: the run's directory (default: a temporary one, removed afterwards).
    """
    return startIncident(variant, hardened, events, timeout, stopAtProof, workdir).result()

"""
Identical-event suppression (L{twisted_safelog._repeats}) at its edges, as a
production user meets them: events that look alike but render differently,
a process that forks while copies are held back, a summary due on a sink
that has stalled.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FORK_WITH_COPIES_HELD_BACK = """
import os, sys, time
from twisted.logger import LogLevel
from twisted_safelog import NonBlockingObserver, Reporter, safeFileLogObserver

path, kind = sys.argv[1], sys.argv[2]
reporter = Reporter(write=lambda line: None)
sink = safeFileLogObserver(path, reporter=reporter)
observer = sink if kind == "file" else NonBlockingObserver(sink, reporter=reporter)

def event(text):
    return {"log_format": text, "log_namespace": "app", "log_level": LogLevel.warn,
            "log_time": time.time()}

for _ in range(5000):
    observer(event("upstream refused; retrying"))
held = observer.stats().droppedByReason["repeated"]
pid = os.fork()
observer(event("child" if pid == 0 else "parent"))
observer.close()
stats = observer.stats()
if pid == 0:
    os._exit(0 if stats.balanced else 3)
_, status = os.waitpid(pid, 0)
print(held, os.waitstatus_to_exitcode(status), stats.balanced)
"""


@pytest.mark.parametrize("kind", ["file", "nonblocking"])
def test_aForkedChildDoesNotSummariseTheParentsCopies(tmp_path: Path, kind: str) -> None:
    """
    A process forks while a flood's copies are held back (their summary not
    yet due), and both processes go on and close the sink: the summary is
    written once (by the parent, which keeps what was pending at the fork),
    and its count plus the copies written is exactly what was sent.
    """
    path = tmp_path / "app.log"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK_WITH_COPIES_HELD_BACK), str(path), kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    held, childStatus, balanced = result.stdout.split()
    assert childStatus == "0" and balanced == "True"
    lines = path.read_text().splitlines()
    copies = [line for line in lines if line.endswith("] upstream refused; retrying")]
    counts = [
        int(line.split("repeated ")[1].split(" times")[0])
        for line in lines
        if " times: upstream refused; retrying" in line
    ]
    assert counts == [int(held)]
    assert len(copies) + sum(counts) == 5000
    assert sum(1 for line in lines if line.endswith("] child")) == 1
    assert sum(1 for line in lines if line.endswith("] parent")) == 1

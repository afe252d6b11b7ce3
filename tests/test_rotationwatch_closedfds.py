"""
The rotation watcher when the application closes descriptors it does not
own, as a daemonizing library does after its fork (python-daemon's
C{DaemonContext} closes every descriptor but the ones it is told to keep):
the watcher's inotify, epoll and wake descriptors are gone, and their
numbers soon belong to the application (here at once, with C{dup2()}).
The watcher must not read, write or close what is now the application's,
must not spin, and must go on noticing rotations with descriptors of its
own. In a child interpreter (the closing would take the test process's
descriptors too).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .helpers import CHILD_HELPERS, childResult

CHILD = CHILD_HELPERS + textwrap.dedent(
    """
    import gc, json, os, sys, time
    from twisted_safelog import LogFileWriter, Reporter
    from twisted_safelog._rotationwatch import rotationWatcher

    here = sys.argv[1]
    path = os.path.join(here, "app.log")
    writer = LogFileWriter(path, reporter=Reporter(write=lambda line: None),
                           checkInterval=3600.0, checkEvery=10**9)
    writer.write("before\\n")
    found = {"runningBefore": waitFor(lambda: rotationWatcher.running)}
    old = {rotationWatcher._fd, rotationWatcher._wakeRead, rotationWatcher._wakeWrite,
           rotationWatcher._epoll.fileno()}
    # The daemonizing library closes them and the application's own pipes
    # take their numbers, each with data waiting to be read: dup2() does
    # both at once (closed, then reused before the watcher could open any).
    mine = []
    for number in sorted(old):
        read, write = os.pipe()
        os.write(write, b"the application's")
        os.dup2(read, number)
        os.close(read)
        mine.append((number, write))
    found["reused"] = len(mine) == 4

    # A rotation is still noticed with no periodic check (logrotate create).
    found["noticed"] = noticed(writer, path, path + ".1")

    # The last writer goes: the watcher ends and closes what is its own.
    writer.close()
    del writer
    gc.collect()
    found["ended"] = waitFor(lambda: not rotationWatcher.running)
    untouched = True
    for read, write in mine:
        try:
            os.fstat(write)
            os.set_blocking(read, False)
            untouched = untouched and os.read(read, 100) == b"the application's"
        except OSError:
            untouched = False
    found["untouched"] = untouched
    print(json.dumps(found))
    """
)


def test_descriptorsClosedUnderTheWatcherAreNotTouchedAndWatchingGoesOn(tmp_path: Path) -> None:
    found = childResult(CHILD, str(tmp_path))
    assert found == {
        "runningBefore": True,
        "reused": True,
        "noticed": True,
        "ended": True,
        "untouched": True,
    }

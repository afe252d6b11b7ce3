"""
A file sink on a full disk, then back: nothing raised, nothing lost.

    python examples/survive_full_disk.py

The log path is made a symlink to /dev/full (every write fails with ENOSPC),
events are logged, then the path becomes a real file again and the buffered
events are replayed in order. Reports go to stderr; the stats are printed.
The temporary directory it uses is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from twisted.logger import Logger, LogPublisher, textFileLogObserver

from twisted_safelog import safeFileLogObserver


def main() -> None:
    directory = tempfile.mkdtemp(prefix="safelog-example-")
    try:
        run(os.path.join(directory, "app.log"))
    finally:
        shutil.rmtree(directory)


def run(path: str) -> None:
    os.symlink("/dev/full", path)
    observer = safeFileLogObserver(path, resetTimeout=0.2, fallback=textFileLogObserver(sys.stderr))
    log = Logger(namespace="example", observer=LogPublisher(observer))
    for n in range(20):
        log.info("request {n} served", n=n)
    print("disk full:  ", observer.stats().summary(), observer.stats().state)
    os.unlink(path)
    open(path, "w").close()
    time.sleep(0.25)
    log.info("request 20 served")
    print("disk back:  ", observer.stats().summary(), observer.stats().state)
    with open(path) as f:
        print(f"{path} holds {len(f.readlines())} lines")


if __name__ == "__main__":
    main()

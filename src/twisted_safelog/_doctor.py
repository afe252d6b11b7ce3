# -*- test-case-name: tests.test_loops -*-
"""
C{python -m twisted_safelog doctor}: load an application's logging
configuration the way twistd would and print its feedback loops.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import SimpleNamespace
from typing import Any, TextIO

from twisted.logger import (
    ILogObserver,
    Logger,
    LoggingFile,
    LogLevel,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.reflect import namedAny

from ._loops import findFeedbackLoops

__all__ = ["runDoctor"]


def _loadApplication(tac: str | None, module: str | None) -> Any:
    if tac is not None:
        from twisted.application.service import loadApplication

        return loadApplication(tac, "python")  # type: ignore[no-untyped-call]
    assert module is not None
    sys.path.insert(0, os.getcwd())
    loaded = importlib.import_module(module)
    application = getattr(loaded, "application", None)
    if application is None and callable(getattr(loaded, "makeService", None)):
        loaded.makeService()
    return application


def _observerFor(application: Any, logger: str | None) -> ILogObserver:
    """
    The observer twistd would begin logging to (as twistd -n would).
    """
    if logger is not None:
        saved = sys.argv
        sys.argv = ["twistd", "-n", f"--logfile={os.devnull}", f"--logger={logger}"]
        try:
            return namedAny(logger)()  # type: ignore[no-untyped-call,no-any-return]
        finally:
            sys.argv = saved
    if application is not None:
        component = application.getComponent(ILogObserver, None)
        if component is not None:
            return component  # type: ignore[no-any-return]
    return textFileLogObserver(open(os.devnull, "w"))


def runDoctor(
    tac: str | None = None,
    module: str | None = None,
    logger: str | None = None,
    out: TextIO | None = None,
) -> int:
    """
    Print the feedback loops of the application in C{tac} (or C{module})
    under twistd (with C{--logger=logger} if given). Returns 1 if any loop
    is unguarded, 0 otherwise. Standard I/O is not really redirected, so no
    loop can run while the doctor looks.
    """
    write = (out or sys.stdout).write
    application = _loadApplication(tac, module)
    observer = _observerFor(application, logger)
    globalLogPublisher.addObserver(observer)
    stdio = SimpleNamespace(
        stdout=LoggingFile(Logger(namespace="stdout", observer=globalLogPublisher)),
        stderr=LoggingFile(
            Logger(namespace="stderr", observer=globalLogPublisher), level=LogLevel.error
        ),
    )
    loops = findFeedbackLoops(globalLogPublisher, stdio)
    what = tac or module
    how = f"twistd --logger={logger}" if logger else "twistd"
    write(f"{what} under {how} (stdout and stderr redirected to the log):\n")
    for loop in loops:
        write(f"  {loop}\n")
    unguarded = [loop for loop in loops if not loop.guarded]
    write(
        f"{len(loops)} feedback loop{'s' if len(loops) != 1 else ''} found, "
        f"{len(unguarded)} unguarded.\n"
    )
    return 1 if unguarded else 0

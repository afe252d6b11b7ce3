"""
Tests for L{twisted_safelog._guard}.
"""

from __future__ import annotations

import threading

from twisted_safelog._guard import ReentryGuard, looksLikeErrorOutput


def test_enterMarksOnlyTheCallingThread() -> None:
    guard = ReentryGuard()
    tid = guard.enter()
    assert guard.entered()
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(guard.entered()))
    t.start()
    t.join()
    assert seen == [False]
    assert guard.exit(tid) is False
    assert not guard.entered()


def test_errorOutputIsReportedOnExit() -> None:
    guard = ReentryGuard()
    tid = guard.enter()
    guard.sawErrorOutput()
    assert guard.exit(tid) is True
    assert guard.exit(guard.enter()) is False


def test_looksLikeErrorOutput() -> None:
    assert looksLikeErrorOutput({"log_namespace": "stderr", "log_io": "--- Logging error ---"})
    assert looksLikeErrorOutput(
        {"log_namespace": "stderr", "log_io": "Traceback (most recent call last):"}
    )
    assert not looksLikeErrorOutput({"log_namespace": "stderr", "log_io": "hello"})
    assert not looksLikeErrorOutput({"log_namespace": "stdout", "log_io": "--- Logging error ---"})
    assert not looksLikeErrorOutput({"log_namespace": "stderr", "log_io": 42})

    class Weird(dict[str, object]):
        def get(self, *a: object) -> object:
            raise RuntimeError("odd mapping")

    assert not looksLikeErrorOutput(Weird())


def test_enterOnceRefusesAReentry() -> None:
    guard = ReentryGuard()
    tid = guard.enterOnce()
    assert tid is not None
    assert guard.enterOnce() is None
    guard.exit(tid)
    assert guard.enterOnce() == tid

"""
Run Twisted's own trial suites in this process, plain or with
C{twisted_safelog.install()} active process-wide (before trial starts its
log observer), and print each test's outcome as one JSON object.

    python realapps/trialrun.py plain|installed MODULE...
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any


def main(mode: str, modules: list[str]) -> None:
    if mode == "installed":
        import twisted_safelog

        twisted_safelog.install()
    elif mode != "plain":
        raise SystemExit(f"mode must be plain or installed, not {mode!r}")

    from twisted.trial import reporter, runner

    if os.geteuid() == 0:
        # As root, this test's chmod of /dev/null to 0555 succeeds (it
        # expects it to fail) and leaves the machine's /dev/null unwritable
        # for every unprivileged process after it: skipped in both runs.
        from twisted.test.test_logfile import LogFileTests

        LogFileTests.test_cantChangeFileMode.skip = "chmods /dev/null when run as root"

    outcomes: dict[str, str] = {}

    class Recording(reporter.Reporter):  # type: ignore[misc]
        def addSuccess(self, test: Any) -> None:
            super().addSuccess(test)
            outcomes[test.id()] = "success"

        def addFailure(self, test: Any, fail: Any) -> None:
            super().addFailure(test, fail)
            outcomes[test.id()] = "failure"

        def addError(self, test: Any, error: Any) -> None:
            super().addError(test, error)
            outcomes[test.id()] = "error"

        def addSkip(self, test: Any, reason: Any) -> None:
            super().addSkip(test, reason)
            outcomes[test.id()] = "skip"

        def addExpectedFailure(self, test: Any, error: Any, todo: Any = None) -> None:
            super().addExpectedFailure(test, error, todo)
            outcomes[test.id()] = "expectedFailure"

        def addUnexpectedSuccess(self, test: Any, todo: Any = None) -> None:
            super().addUnexpectedSuccess(test, todo)
            outcomes[test.id()] = "unexpectedSuccess"

    report = io.StringIO()
    trial = runner.TrialRunner(lambda *a, **k: Recording(report), stream=report)
    suite = runner.TestLoader().loadByNames(modules, recurse=True)
    trial.run(suite)
    sys.stdout.write(json.dumps({"outcomes": outcomes, "report": report.getvalue()[-20000:]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

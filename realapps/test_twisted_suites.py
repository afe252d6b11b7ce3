"""
Twisted's own tests for logging, twistd, applications, log files and
syslog, run by trial in one process with C{twisted_safelog.install()} active
process-wide, against the same tests run plain: every test has the same
outcome, except the one listed here, which expects the re-emission of an
observer's failure to the other observers that twisted-safelog removes on
purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import HERE

MODULES = [
    "twisted.logger.test",
    "twisted.test.test_log",
    "twisted.test.test_twistd",
    "twisted.test.test_application",
    "twisted.test.test_logfile",
    "twisted.python.test.test_syslog",
]

#: test id -> (plain outcome, outcome with install()): the only differences.
EXPECTED_DIFFERENCES = {
    # Asserts that a failing legacy observer's error is re-emitted to the
    # other observers ("Temporarily disabling observer"); a hardened
    # observer never raises into its publisher (guarantee 3), so there is
    # nothing to re-emit.
    "twisted.test.test_log.LogTests.test_erroneousErrors": ("success", "failure"),
}


def runTrial(mode: str, directory: Path) -> tuple[dict[str, str], str]:
    directory.mkdir()
    result = subprocess.run(
        [sys.executable, str(HERE / "trialrun.py"), mode, *MODULES],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    outcomes: dict[str, str] = json.loads(result.stdout)["outcomes"]
    return outcomes, result.stderr


def test_twistedsOwnSuitesDifferOnlyWhereExpected(tmp_path: Path) -> None:
    devNull = os.stat("/dev/null").st_mode
    plain, plainErr = runTrial("plain", tmp_path / "plain")
    installed, installedErr = runTrial("installed", tmp_path / "installed")
    # Run as root, test_logfile's test_cantChangeFileMode made /dev/null
    # mode 0555 for the whole machine (trialrun.py skips it as root).
    assert os.stat("/dev/null").st_mode == devNull, "the suites left /dev/null alone"
    # Printed for the record (pytest -s): the counts of each run.
    print("plain:", len(plain), dict(Counter(plain.values())))
    print("installed:", len(installed), dict(Counter(installed.values())))
    assert len(plain) > 400, "the suites ran"
    assert set(installed) == set(plain), "the same tests ran"
    differences = {
        test: (plain[test], installed[test]) for test in plain if plain[test] != installed[test]
    }
    assert differences == EXPECTED_DIFFERENCES
    # Nothing else said, during the tests or at exit (test_stdlib closes
    # handlers it attached): the only reports are about the observer that
    # test_erroneousErrors breaks on purpose.
    assert plainErr == ""
    reports = [line for line in installedErr.splitlines() if line.startswith("twisted-safelog:")]
    assert reports and len(reports) == len(installedErr.splitlines())
    assert all(
        "test_erroneousErrors" in line
        for line in reports
        if " sink " in line or "similar failures of sink" in line
    )
    assert not [line for line in reports if "(shutdown)" in line]

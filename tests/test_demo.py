"""
The README's first command: C{python -m twisted_safelog demo}.
"""

from __future__ import annotations

import subprocess
import sys


def runDemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demoShowsTheIncidentSideBySideAndSucceeds() -> None:
    result = runDemo("--timeout", "3", "--events", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "plain Twisted" in out and "twisted-safelog" in out
    assert "200 of 200" in out
    assert "killed at" in out
    assert "quarantined after 5 consecutive" in out
    assert "plain Twisted looped; twisted-safelog completed every event." in out


def test_demoRejectsAnUnknownVariantInOneLine() -> None:
    result = runDemo("--variant", "nope")
    assert result.returncode == 2
    assert result.stdout.strip().startswith("unknown variant 'nope'; choose from: all, incident")

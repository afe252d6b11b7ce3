"""
The README's first command: C{python -m twisted_safelog demo}. Its exit
status is the verdict on twisted-safelog, with the limits the incident suite
uses (L{twisted_safelog.incident.Variant.hardenedLimit}).
"""

from __future__ import annotations

import subprocess
import sys

from twisted_safelog.incident import VARIANTS

#: Generous: each run ends long before (a plain one as soon as the loop is
#: proven with --stop-at-proof).
DEADLINE = 600


def runDemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twisted_safelog", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def test_demoShowsTheIncidentSideBySideAndSucceeds() -> None:
    result = runDemo("demo", "--stop-at-proof", "--timeout", "300", "--events", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "plain Twisted" in out and "twisted-safelog" in out
    assert "200 of 200" in out
    assert "loop proven" in out
    assert "quarantined after 5 consecutive" in out
    assert "plain Twisted looped; twisted-safelog completed every event." in out


def test_demoOfEveryVariantSucceeds() -> None:
    """
    C{demo --variant all} exits 0 when twisted-safelog behaves on every
    variant, including the two where the failing sink is called more than
    a handful of times or plain Twisted finishes (last-resort).
    """
    result = runDemo(
        "demo", "--variant", "all", "--stop-at-proof", "--timeout", "300", "--events", "100"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "did NOT behave" not in out
    for name in VARIANTS:
        assert f"== {name}: " in out
    assert out.count("twisted-safelog completed every event.") == len(VARIANTS)
    assert out.count("plain Twisted looped;") == len(VARIANTS) - 1
    assert "plain Twisted finished, nesting" in out


def test_demoRejectsAnUnknownVariantInOneLine() -> None:
    result = runDemo("demo", "--variant", "nope")
    assert result.returncode == 2
    assert result.stdout.strip().startswith("unknown variant 'nope'; choose from: all, incident")


def test_helpListsTheCommandsCleanly() -> None:
    result = runDemo("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "doctor" in result.stdout
    assert "SUPPRESS" not in result.stdout
    assert "_incident" not in result.stdout


def test_demoHelpListsEveryVariant() -> None:
    result = runDemo("demo", "--help")
    assert result.returncode == 0
    for name, variant in VARIANTS.items():
        assert f"  {name} " in result.stdout
        assert variant.description in result.stdout

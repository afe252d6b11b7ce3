"""
The status command against what a monitoring check meets in the field: a
file that is not what the process wrote (truncated, garbled, hand-edited, or
from another program), and sinks whose names hold newlines, quotes or
unicode. A check that crashes would exit 1, "unhealthy", for a file that
says nothing; it must say "unknown" (2) in one line instead.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from twisted_safelog._statuscli import HEALTHY, UNHEALTHY, UNKNOWN, formatTable, judge, runStatus

from .test_statusfile import document, sink


def writeRaw(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


GARBAGE = {
    "sinksNotObjects": lambda now: json.dumps(document([], now) | {"sinks": [1, "x"]}),
    "sinksAString": lambda now: json.dumps(document([], now) | {"sinks": "ab"}),
    "writtenNaN": lambda now: json.dumps(document([sink("a")], now) | {"written": float("nan")}),
    "writtenInfinite": lambda now: json.dumps(document([sink("a")], now) | {"written": 1e400}),
    "intervalInfinite": lambda now: json.dumps(document([sink("a")], now) | {"interval": 1e400}),
    "intervalNegative": lambda now: json.dumps(document([sink("a")], now) | {"interval": -5}),
    "writtenAString": lambda now: json.dumps(document([sink("a")], now) | {"written": "now"}),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_aDocumentThatIsNotOursIsUnknownNeverHealthy(tmp_path: Path, name: str) -> None:
    now = time.time()
    path = writeRaw(tmp_path / "s.json", GARBAGE[name](now))
    verdict = judge(path, now=now)
    assert verdict.exitCode == UNKNOWN, verdict
    out = io.StringIO()
    assert runStatus(path, out=out) == UNKNOWN
    assert out.getvalue().startswith("UNKNOWN: ")
    machine = io.StringIO()
    assert runStatus(path, asJSON=True, out=machine) == UNKNOWN
    assert json.loads(machine.getvalue())["check"]["exitCode"] == UNKNOWN


BAD_CELLS: dict[str, dict[str, Any]] = {
    "since": {"since": "yesterday"},
    "sinceNaN": {"since": float("nan")},
    "droppedByReason": {"droppedByReason": [1, 2]},
    "counts": {"delivered": None, "failed": {"a": 1}, "dropped": "many"},
    "lastError": {"lastError": 42},
    "name": {"name": None},
}


@pytest.mark.parametrize("name", sorted(BAD_CELLS))
def test_oddCellsNeverCrashTheTable(tmp_path: Path, name: str) -> None:
    """
    A sink entry with odd values is still shown (as best it can be) and
    judged; the command does not crash into exit status 1.
    """
    now = time.time()
    odd = sink("odd", "open") | BAD_CELLS[name]
    path = writeRaw(tmp_path / "s.json", json.dumps(document([sink("a"), odd], now)))
    out = io.StringIO()
    assert runStatus(path, out=out) == UNHEALTHY
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("UNHEALTHY: 1 of 2 sinks unhealthy")
    assert len(lines) == 5
    assert "open" in lines[4]


def test_aHealthyFlagMustBeTrue(tmp_path: Path) -> None:
    """
    Only C{"healthy": true} is healthy: a string "false" is not.
    """
    now = time.time()
    odd = sink("odd") | {"healthy": "false"}
    path = writeRaw(tmp_path / "s.json", json.dumps(document([sink("a"), odd], now)))
    assert judge(path, now=now).exitCode == UNHEALTHY


ODD_NAMES = [
    "app\nlog",
    'say "hi" \\ there',
    "journal \u00e9t\u00e9 \u65e5\u672c",
    "tab\there\rreturn",
    "\x1b[31mred\x1b[0m",
]


def test_oddNamesKeepOneRowPerSinkAndAOneLineHeading(tmp_path: Path) -> None:
    """
    Sink names (and states and errors) with newlines, carriage returns,
    tabs or escape sequences are shown escaped: the heading a monitoring
    system shows is one line, and each sink is one row.
    """
    now = time.time()
    sinks = [
        sink(name, "open", lastError=f"OSError: {name}") | {"state": "open\nreally"}
        for name in ODD_NAMES
    ]
    path = writeRaw(tmp_path / "s.json", json.dumps(document(sinks, now)))
    table = formatTable(judge(path, now=now), now=now)
    lines = table.splitlines()
    assert len(lines) == 3 + len(ODD_NAMES), table
    assert lines[0].startswith("UNHEALTHY: 5 of 5 sinks unhealthy")
    assert "app\\nlog" in lines[0]
    for line in lines:
        assert "\x1b" not in line and "\r" not in line and "\t" not in line
    assert lines[3].startswith("app\\nlog")
    assert "journal \u00e9t\u00e9 \u65e5\u672c" in lines[5]


def test_theCommandNeverExitsOneForACrash(tmp_path: Path) -> None:
    """
    Whatever the file holds, a real C{python -m twisted_safelog status}
    exits 2 (unknown) for what it cannot read, not 1 from a traceback.
    """
    now = time.time()
    path = writeRaw(tmp_path / "s.json", GARBAGE["sinksNotObjects"](now))
    for extra in ([], ["--json"]):
        result = subprocess.run(
            [sys.executable, "-m", "twisted_safelog", "status", path, *extra],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == UNKNOWN, result
        assert "Traceback" not in result.stderr


def test_aHealthyDocumentIsStillHealthy(tmp_path: Path) -> None:
    now = time.time()
    path = writeRaw(tmp_path / "s.json", json.dumps(document([sink("a"), sink("b")], now)))
    assert judge(path, now=now).exitCode == HEALTHY


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_aMaxAgeThatMakesNoSenseIsRefused(tmp_path: Path, value: str) -> None:
    """
    C{--max-age nan} would make every file fresh, C{-1} every file stale:
    the command says so and exits 2, whatever the file says.
    """
    path = writeRaw(tmp_path / "s.json", json.dumps(document([sink("a")], time.time())))
    result = subprocess.run(
        [sys.executable, "-m", "twisted_safelog", "status", path, f"--max-age={value}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == UNKNOWN, result
    assert "--max-age" in result.stderr
    assert result.stdout == ""

"""
The README's two set-up commands are the ones that work: CI runs exactly the
test command, and the demo command is the demo.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def readmeCommands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line for block in blocks for line in block.splitlines() if "python3 -m venv" in line]


def test_readmeHasADemoCommandAndATestCommand() -> None:
    commands = readmeCommands()
    assert any(c.endswith("python -m twisted_safelog demo") for c in commands)
    assert any("tox run" in c for c in commands)


def test_ciRunsExactlyTheReadmeTestCommand() -> None:
    (testCommand,) = [c for c in readmeCommands() if "tox run" in c]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert testCommand in ci

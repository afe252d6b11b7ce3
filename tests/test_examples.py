"""
The runnable examples run. (The .tac examples run under real twistd in
test_twistd.py.)
"""

from __future__ import annotations

import subprocess
import sys

from .twistdprocess import EXAMPLES


def test_surviveFullDisk() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "survive_full_disk.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("disk full:   received=20 delivered=0 failed=5")
    assert lines[0].endswith("buffered=15 open")
    assert lines[1].startswith("disk back:   received=21 delivered=16 failed=5")
    assert lines[2].endswith("holds 16 lines")
    assert "failed: OSError: [Errno 28] No space left on device" in result.stderr

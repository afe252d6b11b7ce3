"""
The runnable examples run. (The .tac examples run under real twistd in
test_twistd.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .twistdprocess import EXAMPLES


def test_surviveFullDisk(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "survive_full_disk.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # ENOSPC is the disk's fault, not the events': all are kept and replayed.
    assert lines[0].startswith("disk full:   received=20 delivered=0 failed=0")
    assert lines[0].endswith("buffered=20 open")
    assert lines[1].startswith("disk back:   received=21 delivered=21 failed=0")
    assert lines[2].endswith("holds 21 lines")
    assert "failed: OSError: [Errno 28] No space left on device" in result.stderr
    assert list(tmp.iterdir()) == [], "it removes its temporary directory"

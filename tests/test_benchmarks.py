"""
The benchmark suite runs: C{benchmarks/run.py --quick} with tiny counts
completes and prints every case. No timing is asserted (speed is measured
by the suite itself, not by tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_quickRunCompletesAndPrintsEveryCase(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import CASES, EXTRA_ROWS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    output = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--scale",
            "0.002",
            "--rounds",
            "1",
            "--seconds",
            "0.3",
            "--json",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for label in [*CASES.values(), *EXTRA_ROWS.values()]:
        assert label in done.stdout, label
    results = json.loads(output.read_text())["results"]
    assert [r["case"] for r in results] == list(CASES)
    for result in results:
        assert "error" not in result, result
        assert isinstance(result["measure"], (int, float)), result

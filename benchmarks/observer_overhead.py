"""
What does SafeObserver cost a healthy observer? Now part of the suite:
runs its "wrapper-cost" (a no-op observer called directly, bare and
wrapped) and "text-observer" (textFileLogObserver on a real file, fed by
Logger.info) cases, each in its own process, rounds alternating.

    python benchmarks/observer_overhead.py [run.py options, e.g. --quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import main

if __name__ == "__main__":
    sys.exit(main(["--only", "wrapper-cost,text-observer", *sys.argv[1:]]))

"""
What does a slow sink cost the caller (the reactor thread)? Now part of the
suite: runs its "slow-sink" case (a sink that takes 10 ms per write, called
bare and behind NonBlockingObserver, against the hardened fast path) in its
own process, rounds alternating.

    python benchmarks/nonblocking_caller_cost.py [run.py options, e.g. --quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import main

if __name__ == "__main__":
    sys.exit(main(["--only", "slow-sink", *sys.argv[1:]]))

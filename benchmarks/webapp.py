"""
The incident's web application (examples/incident.tac) under a real twistd,
loaded by a bounded HTTP client on 127.0.0.1: four runs alternating, plain
healthy, hardened healthy (--logger=twisted_safelog.observer), hardened
broken (CHARTAPP_BREAK_LOGGING=1) and plain broken (bounded: it wedges; run
once, in the first round, as it serves nothing). The full run takes at least
L{ROUNDS} rounds: one run's p99 here moves by a factor of two from one run
to the next of the same server (11 to 26 ms), so that the median of three
rounds could put either side 1.7x ahead of the other. The
hardened runs turn identical-event suppression off, so that they write every
line plain twistd writes (the app logs one identical line per request).

The client is this process: C{clients} keep-alive connections, each sending
GET /chart-data and waiting for the answer, for C{seconds} seconds; a
request not answered in C{requestTimeout} seconds counts as failed and its
connection is replaced. Requests per second count answered requests;
latency percentiles are over answered requests. On Linux each run also
gives the server's CPU time per answered request (all its threads, user
and system, from /proc) and its threads' context switches per request:
the reactor is CPU-bound, so req/s follows the CPU time per request, which
scheduling on a shared machine moves less than it moves req/s and latency.

Where the machine has two CPUs or more (Linux's sched_setaffinity), the
server runs on one CPU and the client on the others, as a load generator on
another machine would: otherwise the client, itself busy, and every thread
of the server share all the CPUs, and a server thread beyond the reactor
(twisted-safelog's worker) takes CPU slices from the client or the reactor
that plain twistd's single thread never has to share with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TAC = ROOT / "examples" / "incident.tac"

RUNS = ("plain healthy", "hardened healthy", "hardened broken", "plain broken")

#: Rounds of the full run, at least (see the module's docstring).
ROUNDS = 8


def twistdCommand() -> list[str]:
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(
    port: int, until: float, requestTimeout: float, latencies: list[float], failures: list[int]
) -> None:
    request = b"GET /chart-data?series=load HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    reader = writer = None
    while time.monotonic() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), requestTimeout
                )
            assert reader is not None
            start = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), requestTimeout)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), requestTimeout)
            latencies.append(time.perf_counter() - start)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            failures[0] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def load(port: int, seconds: float, clients: int, requestTimeout: float) -> dict[str, Any]:
    """
    Load the server on C{port} for C{seconds}; requests per second and
    latency percentiles (milliseconds).
    """
    latencies: list[float] = []
    failures = [0]

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(_client(port, until, requestTimeout, latencies, failures) for _ in range(clients))
        )

    start = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)

    def percentile(p: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1e3

    return {
        "requests": len(ordered),
        "failures": failures[0],
        "rps": len(ordered) / elapsed,
        "p50": percentile(0.50),
        "p99": percentile(0.99),
    }


def cpuSplit() -> tuple[set[int], set[int]] | None:
    """
    The CPUs for the server (one) and for the client (the others), or
    L{None} with fewer than two CPUs or no C{sched_setaffinity}.
    """
    getAffinity = getattr(os, "sched_getaffinity", None)
    if getAffinity is None:
        return None
    cpus = sorted(getAffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[0]}, set(cpus[1:])


def processUsage(pid: int) -> tuple[float, int] | None:
    """
    Process C{pid}'s CPU seconds so far (user and system, all threads) and
    its threads' context switches (voluntary and not); L{None} without
    Linux's /proc.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        switches = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return seconds, switches


def serverCommand(which: str, tmp: str, port: int) -> tuple[list[str], dict[str, str]]:
    """
    The twistd command line and environment for run C{which} (one of
    L{RUNS}) serving on C{port}, its logs in C{tmp}.
    """
    hardened = which.startswith("hardened")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWISTED_SAFELOG_")}
    env.update(
        CHARTAPP_PORT=str(port),
        CHARTAPP_LOG_DIR=tmp,
        CHARTAPP_BREAK_LOGGING="1" if which.endswith("broken") else "0",
    )
    args = ["-n", "--pidfile=", "--logfile", str(Path(tmp) / "twistd.log")]
    if hardened:
        args.append("--logger=twisted_safelog.observer")
        # Like for like: the app logs the same line for every request,
        # which identical-event suppression (on by default) would hold
        # back past 100 a second, writing far less than plain twistd.
        env["TWISTED_SAFELOG_REPEAT_BURST"] = "0"
    return [*twistdCommand(), *args, "-y", str(TAC)], env


def oneRun(which: str, seconds: float, clients: int) -> dict[str, Any]:
    """
    Start twistd for run C{which}, load it, stop it (SIGTERM, then SIGKILL
    after a deadline). Everything is bounded.
    """
    hardened, broken = which.startswith("hardened"), which.endswith("broken")
    with tempfile.TemporaryDirectory() as tmp:
        port = freePort()
        command, env = serverCommand(which, tmp, port)
        split = cpuSplit()
        process = subprocess.Popen(
            command,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=None if split is None else lambda: os.sched_setaffinity(0, split[0]),
        )
        try:
            ready = _waitForHealth(port, process, 5.0 if broken and not hardened else 30.0)
            before = processUsage(process.pid)
            mine = None if split is None else os.sched_getaffinity(0)
            if split is not None:
                os.sched_setaffinity(0, split[1])
            try:
                result = load(port, seconds, clients, requestTimeout=1.0 if ready else 0.5)
            finally:
                if mine is not None:
                    os.sched_setaffinity(0, mine)
            after = processUsage(process.pid)
            result["cpus"] = None if split is None else [sorted(split[0]), sorted(split[1])]
            result["ready"] = ready
            answered = result["requests"]
            if before is not None and after is not None and answered:
                result["cpuPerRequest"] = (after[0] - before[0]) / answered * 1e6
                result["switchesPerRequest"] = (after[1] - before[1]) / answered
            else:
                result["cpuPerRequest"] = result["switchesPerRequest"] = None
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        result["logBytes"] = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return result


def _waitForHealth(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def caseWebApp(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds
    clients = 9
    rounds = 1 if args.quick else max(ROUNDS, args.rounds)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    for r in range(rounds):
        order = RUNS if r % 2 == 0 else RUNS[::-1]
        for which in order:
            if which == "plain broken" and r:
                continue
            runs[which].append(oneRun(which, seconds, clients))

    def med(which: str, key: str) -> float:
        values = [run[key] for run in runs[which] if run.get(key) is not None]
        return statistics.median(values) if values else float("nan")

    ph, hh, hb = "plain healthy", "hardened healthy", "hardened broken"
    healthyRps = med(hh, "rps") / med(ph, "rps")
    healthyP99 = med(hh, "p99") / med(ph, "p99")
    brokenRps = med(hb, "rps") / med(ph, "rps")
    brokenP99 = med(hb, "p99") / med(ph, "p99")
    summary = {
        which: {
            key: med(which, key)
            for key in ("rps", "p50", "p99", "cpuPerRequest", "switchesPerRequest")
        }
        for which in RUNS
    }
    return {
        "plain": med(ph, "rps"),
        "hardened": med(hh, "rps"),
        "unit": "req/s",
        "measure": healthyRps * 100,
        "measureUnit": "% of plain req/s",
        "target": 97.0,
        "targetSense": ">=",
        "met": healthyRps >= 0.97,
        "extraRows": [
            {
                "case": "twistd-healthy-p99",
                "plain": med(ph, "p99"),
                "hardened": med(hh, "p99"),
                "unit": "ms",
                "measure": healthyP99,
                "measureUnit": "x",
                "target": 1.05,
                "met": healthyP99 <= 1.05,
            },
            {
                "case": "twistd-broken",
                "plain": med(ph, "rps"),
                "plainNote": f"plain broken: {med('plain broken', 'rps'):.0f} req/s",
                "hardened": med(hb, "rps"),
                "unit": "req/s",
                "measure": brokenRps * 100,
                "measureUnit": "% of plain healthy",
                "target": 90.0,
                "targetSense": ">=",
                "met": brokenRps >= 0.90,
            },
            {
                "case": "twistd-broken-p99",
                "plain": med(ph, "p99"),
                "hardened": med(hb, "p99"),
                "unit": "ms",
                "measure": brokenP99,
                "measureUnit": "x",
                "target": 1.2,
                "met": brokenP99 <= 1.2,
            },
        ],
        "table": summary,
        "raw": {"runs": runs, "seconds": seconds, "clients": clients, "rounds": rounds},
    }

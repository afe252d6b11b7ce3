"""
Running real twistd processes in tests: on 127.0.0.1, bounded in time,
stopped by pid.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def twistdCommand() -> list[str]:
    """
    This interpreter's twistd (the one installed next to it, or the module).
    """
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWISTED_SAFELOG_")}
    env.update(extra)
    return env


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*twistdCommand(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(cwd / "twistd-stdout.txt", "wb"),
        stderr=open(cwd / "twistd-stderr.txt", "wb"),
    )


def waitForPort(
    port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, float]:
    """
    (status, seconds) of one GET; status 0 if it failed or timed out.
    """
    start = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - start
    except OSError:
        return 0, time.monotonic() - start
    finally:
        connection.close()


def stopPid(pid: int, timeout: float = 15.0) -> bool:
    """
    SIGTERM, then wait until the process is gone; SIGKILL if it will not go.
    Returns whether SIGTERM was enough.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").exists():
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
            if state == "Z":
                return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return False


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """
    SIGTERM the child and return its exit status (None if it had to be
    killed).
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode

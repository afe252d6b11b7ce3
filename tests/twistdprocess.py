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


def start(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """
    Start twistd with C{args}; its stdout and stderr go to the descriptors
    given, or else to C{twistd-stdout.txt} and C{twistd-stderr.txt} in C{cwd}.
    """
    return subprocess.Popen(
        [*twistdCommand(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(cwd / "twistd-stdout.txt", "wb") if stdout is None else stdout,
        stderr=open(cwd / "twistd-stderr.txt", "wb") if stderr is None else stderr,
    )


def runTwistd(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """
    Run twistd with C{args} until it ends (a start-up that fails, or the
    launcher of a daemon), its output captured as text.
    """
    return subprocess.run(
        [*twistdCommand(), *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def errorLines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """
    The lines of what a finished twistd wrote to stderr that are not blank.
    """
    return [line for line in result.stderr.splitlines() if line.strip()]


def theOneErrorLine(result: subprocess.CompletedProcess[str]) -> str:
    """
    The one line a twistd that refused to start wrote to stderr: it
    exited with status 1, and the line is the library's own.
    """
    assert result.returncode == 1, result
    lines = errorLines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("twisted-safelog: ")
    return lines[0]


def readPid(pidfile: Path, timeout: float) -> int | None:
    """
    The pid a daemon wrote to C{pidfile}, once it is there whole; L{None}
    if it is not within C{timeout} seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = pidfile.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def daemonize(
    args: list[str], cwd: Path, env: dict[str, str], pidfile: Path, pidTimeout: float = 30.0
) -> int:
    """
    Run twistd with C{args} and C{--pidfile=pidfile} (it daemonizes): the
    daemon's pid, once its pidfile is written. The test fails if the
    launcher fails, or if no pid is written within C{pidTimeout} seconds.
    """
    launcher = runTwistd([f"--pidfile={pidfile}", *args], cwd, env)
    assert launcher.returncode == 0, launcher.stderr
    pid = readPid(pidfile, pidTimeout)
    assert pid is not None, f"no pid in {pidfile} after {pidTimeout} s"
    return pid


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

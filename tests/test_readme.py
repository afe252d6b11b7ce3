"""
The README is what a newcomer follows: every command and snippet in it runs
as written, from a copy of the clone whose C{.venv/bin} is this interpreter's
environment; the two set-up commands are the ones that work (CI runs exactly
the test command, and the demo command is the demo); nothing is written into
the clone's root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .twistdprocess import freePort, get, stop

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DEADLINE = 120.0


def readmeBlocks(language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", README, re.S | re.M)


def commandsOf(block: str) -> list[str]:
    """
    The commands of a C{sh} block: continued lines joined, comments dropped.
    """
    joined = re.sub(r"\\\n\s*", "", block)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def readmeCommands() -> list[str]:
    return [command for block in readmeBlocks("sh") for command in commandsOf(block)]


def setupCommands() -> list[str]:
    return [c for c in readmeCommands() if "python3 -m venv" in c]


def test_readmeHasADemoCommandAndATestCommand() -> None:
    commands = setupCommands()
    assert any(c.endswith("python -m twisted_safelog demo") for c in commands)
    assert any("tox run" in c for c in commands)


def test_ciRunsExactlyTheReadmeTestCommand() -> None:
    (testCommand,) = [c for c in setupCommands() if "tox run" in c]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert testCommand in ci


def test_theLicenseIsThere() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


# -- running every command, as written, in a copy of the clone ------------------


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    """
    A copy of the clone's examples and benchmarks, with C{.venv/bin} made of
    this interpreter's environment (the package is installed there).
    """
    root = tmp_path / "clone"
    root.mkdir()
    for name in ("examples", "benchmarks"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("*.log"))
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    assert (root / ".venv" / "bin" / "twistd").exists(), "twistd next to this interpreter"
    return root


def split(command: str) -> tuple[dict[str, str], list[str]]:
    """
    C{A=1 B=2 prog args} -> ({A: 1, B: 2}, [prog, args]).
    """
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWISTED_SAFELOG_", "CHART"))}
    env.update(extra)
    return env


def run(clone: Path, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env, argv = split(command)
    return subprocess.run(
        [*argv, *extra],
        cwd=clone,
        env=environment(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def waitFor(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {what}"
        time.sleep(0.05)


def serve(clone: Path, command: str, wedges: bool) -> str:
    """
    Run a twistd command from the README (on a free port instead of 8080):
    either it answers /health, serves /chart-data and stops cleanly on
    SIGTERM, or (the unhardened incident) the loop starts and the example's
    own watchdog ends it with status 3. Returns its stderr.
    """
    env, argv = split(command)
    port = freePort()
    env["CHARTAPP_PORT"] = str(port)
    if wedges:
        # The example's bound, shortened: the loop is proven in seconds.
        env["CHARTAPP_WEDGE_SECONDS"] = "3"
    errors = clone / "stderr.txt"
    with open(errors, "wb") as err:
        process = subprocess.Popen(
            argv, cwd=clone, env=environment(env), stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    try:
        if wedges:
            # It wedges as soon as its handler must roll over: at start-up
            # (the log file is already full), after a few requests, or at
            # shutdown; the example's watchdog ends it with status 3.
            def ended() -> bool:
                get(port, "/chart-data", timeout=2.0)
                return process.poll() is not None

            waitFor(ended, "the wedged example to end itself")
            assert process.returncode == 3
        else:

            def health() -> bool:
                assert process.poll() is None, f"{command!r} ended: {errors.read_text()[-3000:]}"
                return get(port, "/health")[0] == 200

            waitFor(health, "/health")
            for n in range(20):
                assert get(port, f"/chart-data?series=s{n}", timeout=30.0)[0] == 200
            # twistd ends by re-raising SIGTERM, after a clean shutdown.
            assert stop(process, timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
    return errors.read_text(errors="replace")


def checkCommand(clone: Path, command: str) -> None:
    _, argv = split(command)
    program = argv[0]
    if program == "pip" or "python3 -m venv" in command:
        # Installation: what tox's environment for this test did (the wheel);
        # the demo command's last step is tests/test_demo.py, and CI runs the
        # test command.
        return
    if program == ".venv/bin/twistd":
        wedges = "--logger=twisted_safelog.observer" not in argv and "safe_observer" not in command
        stderr = serve(clone, command, wedges)
        if wedges:
            assert "chartapp: wedged (" in stderr, stderr[-2000:]
        else:
            assert "quarantined after 5 consecutive failures" in stderr, stderr[-2000:]
        return
    if argv[1:4] == ["-m", "twisted_safelog", "doctor"]:
        result = run(clone, command)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "[UNGUARDED]" in result.stdout
        assert "1 feedback loop found, 1 unguarded." in result.stdout
        return
    if argv[1] == "benchmarks/run.py":
        # As written, but two cases with tiny counts: speed is not what is
        # tested here (tests/test_benchmarks.py runs every case).
        result = run(
            clone,
            command,
            *("--scale", "0.002", "--rounds", "1", "--only", "wrapper-cost,text-observer"),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "textFileLogObserver" in result.stdout
        return
    pytest.fail(f"no check for the README command {command!r}: add one to tests/test_readme.py")


def operate(clone: Path, commands: list[str]) -> None:
    """
    The "Operating it" scenario, in its own directory instead of /tmp/op:
    the application runs; its handler's directory is removed; the status
    command then reports it unhealthy (exit status 1).
    """
    op = clone / "op"
    commands = [c.replace("/tmp/op", str(op)) for c in commands]
    serverCommand, removal, check = commands
    env, argv = split(serverCommand)
    env["METRICS_APP_PORT"] = str(freePort())
    errors = clone / "stderr.txt"
    with open(errors, "wb") as err:
        process = subprocess.Popen(
            argv, cwd=clone, env=environment(env), stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    try:

        def statusSays(code: int) -> bool:
            assert process.poll() is None, errors.read_text()[-3000:]
            return run(clone, check).returncode == code

        waitFor(lambda: (op / "status.json").exists() and statusSays(0), "a healthy status")
        assert run(clone, removal).returncode == 0
        waitFor(lambda: statusSays(1), "the status command to say UNHEALTHY")
        assert "UNHEALTHY: 1 of " in run(clone, check).stdout
        assert stop(process, timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()


def test_everyReadmeCommandRunsAsWritten(clone: Path) -> None:
    before = {p.name for p in clone.iterdir()}
    commands = readmeCommands()
    assert any(c.startswith(".venv/bin/twistd") or ".venv/bin/twistd" in c for c in commands)
    for command in commands:
        assert not re.match(r"^(\w+=\S+ )*(twistd|python|tox) ", command), (
            f"{command!r} needs the venv: use .venv/bin/..."
        )
    for block in readmeBlocks("sh"):
        if "examples/metrics.tac" in block:
            operate(clone, commandsOf(block))
            continue
        for command in commandsOf(block):
            checkCommand(clone, command)
    written = {p.name for p in clone.iterdir()} - before - {"stderr.txt"}
    assert written <= {"logs", "op"}, f"written into the clone's root: {written}"


# -- every Python snippet ---------------------------------------------------------


def excerptOf(snippet: str, path: Path) -> bool:
    """
    Is every code line of C{snippet} in the file (comments and spacing aside)?
    """
    text = " ".join(path.read_text().split())
    for line in snippet.splitlines():
        code = " ".join(line.split("#")[0].split())
        if code and code not in text:
            return False
    return True


@pytest.mark.parametrize("index", range(len(readmeBlocks("python"))))
def test_everyReadmeSnippetRuns(index: int, clone: Path) -> None:
    snippet = readmeBlocks("python")[index]
    lines = snippet.splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    snippet = "\n".join(line[indent:] for line in lines) + "\n"
    if "application.setComponent" in snippet:
        # An excerpt of the example it names, which test_twistd.py runs.
        assert excerptOf(snippet, clone / "examples" / "safe_observer.tac")
        return
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=clone,
        env=environment({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, snippet + result.stderr
    assert "Traceback" not in result.stderr, result.stderr

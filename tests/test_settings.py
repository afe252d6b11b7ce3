"""
Tests for the twistd factory's settings and option reading, in process.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from twisted_safelog import ConfigurationError, Policy
from twisted_safelog._settings import SETTINGS, Settings
from twisted_safelog._twistd import twistdOptions


def test_defaults() -> None:
    settings = Settings.load({})
    assert settings == Settings()
    assert settings.policy() == Policy()


def test_settingsBecomeThePolicy() -> None:
    settings = Settings.load(
        {
            "TWISTED_SAFELOG_FAILURE_THRESHOLD": "3",
            "TWISTED_SAFELOG_RESET_TIMEOUT": "2.5",
            "TWISTED_SAFELOG_MAX_RESET_TIMEOUT": "30",
            "TWISTED_SAFELOG_BUFFER_SIZE": "7",
        }
    )
    assert settings.policy() == Policy(
        failureThreshold=3, resetTimeout=2.5, maxResetTimeout=30.0, bufferSize=7
    )


def test_environmentOverridesTheTomlFile(tmp_path: Path) -> None:
    config = tmp_path / "safelog.toml"
    config.write_text('[twisted_safelog]\nformat = "json"\nlevel = "warn"\nfailure-threshold = 3\n')
    settings = Settings.load(
        {"TWISTED_SAFELOG_CONFIG": str(config), "TWISTED_SAFELOG_LEVEL": "ERROR"}
    )
    assert (settings.format, settings.level, settings.failure_threshold) == ("json", "error", 3)


def test_tomlWithoutTableAlsoWorks(tmp_path: Path) -> None:
    config = tmp_path / "safelog.toml"
    config.write_text('bridge = "both"\nbuffer_size = 0\n')
    settings = Settings.load({"TWISTED_SAFELOG_CONFIG": str(config)})
    assert (settings.bridge, settings.buffer_size) == ("both", 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("format = [", "not valid TOML"),
        ("colour = 'red'", "unknown setting 'colour'"),
        ("buffer_size = -1", "use an integer >= 0"),
        ("create_directory = 'maybe'", "use one of: true, false"),
    ],
)
def test_badTomlIsOneClearLine(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "safelog.toml"
    config.write_text(content + "\n")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({"TWISTED_SAFELOG_CONFIG": str(config)})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_everySettingHasAnEnvironmentVariable() -> None:
    for name, (parse, default, _) in SETTINGS.items():
        variable = "TWISTED_SAFELOG_" + name.upper()
        assert getattr(Settings.load({variable: str(default)}), name) == parse(variable, default)


def test_twistdOptionsStopAtTheSubcommand() -> None:
    options = twistdOptions(
        ["-n", "--logfile", "x.log", "-r", "poll", "--pidfile=p", "web", "--port", "8080", "-n"]
    )
    assert options["nodaemon"]
    assert options["logfile"] == "x.log"
    assert options["pidfile"] == "p"


def test_twistdOptionsWithCombinedShortFlags() -> None:
    options = twistdOptions(["-nl", "y.log", "-y", "app.tac"])
    assert options["nodaemon"] and options["logfile"] == "y.log"
    assert options["python"] == "app.tac"


def test_unparseableCommandLineGivesDefaults() -> None:
    options = twistdOptions(["--no-such-option"])
    assert not options["nodaemon"]
    assert options["logfile"] is None


def test_stallTimeoutAndNonBlockingDefaults() -> None:
    """
    Under twistd delivery is non-blocking by default (a hung disk or a
    stdout nobody reads must not freeze the reactor); a stalled delivery is
    reported after 5 s unless told otherwise.
    """
    assert Settings().nonblocking is True
    assert Settings().stall_timeout == 5.0
    settings = Settings.load(
        {"TWISTED_SAFELOG_STALL_TIMEOUT": "0.5", "TWISTED_SAFELOG_NONBLOCKING": "false"}
    )
    assert (settings.stall_timeout, settings.nonblocking) == (0.5, False)
    with pytest.raises(ConfigurationError, match="TWISTED_SAFELOG_STALL_TIMEOUT='-1'"):
        Settings.load({"TWISTED_SAFELOG_STALL_TIMEOUT": "-1"})


# -- settings validated for meaning -------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "wanted"),
    [
        ("TWISTED_SAFELOG_RESET_TIMEOUT", "inf", "use a finite number > 0"),
        ("TWISTED_SAFELOG_RESET_TIMEOUT", "nan", "use a finite number > 0"),
        ("TWISTED_SAFELOG_MAX_RESET_TIMEOUT", "1e400", "use a finite number > 0"),
        ("TWISTED_SAFELOG_RESET_TIMEOUT", "0", "use a finite number > 0"),
        ("TWISTED_SAFELOG_FAILURE_THRESHOLD", "2.5", "use an integer >= 1"),
        ("TWISTED_SAFELOG_FAILURE_THRESHOLD", "0", "use an integer >= 1"),
        ("TWISTED_SAFELOG_BUFFER_SIZE", "-1", "use an integer >= 0"),
        ("TWISTED_SAFELOG_BUFFER_BYTES", "0", "use an integer >= 1"),
        ("TWISTED_SAFELOG_QUEUE_SIZE", "", "use an integer >= 1"),
        # Too big for a float (math.isfinite overflows), or for a C size
        # (a deque's maxlen): refused the same way, never an OverflowError.
        (
            "TWISTED_SAFELOG_BUFFER_SIZE",
            "1" + "0" * 400,
            f"use an integer >= 0 and <= {sys.maxsize}",
        ),
        ("TWISTED_SAFELOG_BUFFER_SIZE", str(2**63), f"use an integer >= 0 and <= {sys.maxsize}"),
        ("TWISTED_SAFELOG_QUEUE_SIZE", str(2**63), f"use an integer >= 1 and <= {sys.maxsize}"),
        ("TWISTED_SAFELOG_ROTATE_LENGTH", "9" * 400, f"use an integer >= 0 and <= {sys.maxsize}"),
    ],
)
def test_nonsenseInTheEnvironmentIsOneLineNamingTheSetting(
    variable: str, value: str, wanted: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({variable: value})
    message = str(caught.value)
    if len(repr(value)) <= 60:
        assert message == f"{variable}={value!r} is not valid; {wanted}"
    else:
        # A huge value is cut in the message, which stays one short line.
        assert message.startswith(f"{variable}={repr(value)[:40]}...")
        assert message.endswith(f" is not valid; {wanted}")
        assert len(message) < 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("buffer_size = 1.9", "buffer_size in {path}=1.9 is not valid; use an integer >= 0"),
        ("buffer_size = 2.0", "buffer_size in {path}=2.0 is not valid; use an integer >= 0"),
        ("failure_threshold = true", "use an integer >= 1"),
        (
            "reset_timeout = inf",
            "reset_timeout in {path}=inf is not valid; use a finite number > 0",
        ),
        ("reset_timeout = nan", "use a finite number > 0"),
        ("buffer_size = [1, 2]", "use a single value"),
        (
            'format = "json"\n[twisted_safelog]\nlevel = "warn"',
            "top-level key 'format' next to the [twisted_safelog] table; "
            "put every setting in the table",
        ),
        ("[twisted_safelog]\nbufer_size = 3", "unknown setting 'bufer_size'; known: format"),
    ],
)
def test_nonsenseInTheTomlFileIsOneLineNamingTheSetting(
    tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "safelog.toml"
    config.write_text(content + "\n")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({"TWISTED_SAFELOG_CONFIG": str(config)})
    assert message.format(path=config) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_floatsWhereFloatsBelongAreTaken(tmp_path: Path) -> None:
    config = tmp_path / "safelog.toml"
    config.write_text("[twisted_safelog]\nreset_timeout = 0.5\nmax_reset_timeout = 30\n")
    settings = Settings.load({"TWISTED_SAFELOG_CONFIG": str(config)})
    assert (settings.reset_timeout, settings.max_reset_timeout) == (0.5, 30.0)
    assert settings.policy().resetTimeout == 0.5


def test_bufferBytesBecomesThePolicy() -> None:
    settings = Settings.load({"TWISTED_SAFELOG_BUFFER_BYTES": "1048576"})
    assert settings.policy().bufferBytes == 1_048_576
    assert Settings.load({}).policy().bufferBytes == 16 * 1024 * 1024


def loadInto(path: str, outcome: list[BaseException]) -> None:
    try:
        Settings.load({"TWISTED_SAFELOG_CONFIG": path})
    except BaseException as error:
        outcome.append(error)


def test_aConfigPathThatIsNotARegularFileIsRefusedAtOnce(tmp_path: Path) -> None:
    """
    /dev/zero used to end in a MemoryError and a FIFO hung start-up: both
    are refused at once, in one line. (A thread bounds the test in case
    the FIFO blocks.)
    """
    fifo = tmp_path / "settings.fifo"
    os.mkfifo(fifo)
    cases = {
        "/dev/zero": "is a character device, not a regular file",
        str(fifo): "is a FIFO, not a regular file",
        str(tmp_path): "is a directory, not a regular file",
        str(tmp_path / "missing.toml"): "cannot read it (No such file or directory); fix the path",
    }
    for path, wanted in cases.items():
        outcome: list[BaseException] = []
        thread = threading.Thread(target=loadInto, args=(path, outcome), daemon=True)
        thread.start()
        thread.join(10)
        assert not thread.is_alive(), f"{path}: start-up hung"
        assert len(outcome) == 1 and isinstance(outcome[0], ConfigurationError), outcome
        message = str(outcome[0])
        assert message.startswith(f"TWISTED_SAFELOG_CONFIG={path!r}")
        assert wanted in message
        assert "\n" not in message

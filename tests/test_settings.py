"""
Tests for the twistd factory's settings and option reading, in process.
"""

from __future__ import annotations

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

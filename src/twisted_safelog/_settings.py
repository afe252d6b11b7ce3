# -*- test-case-name: tests.test_settings -*-
"""
Settings for C{twistd --logger=twisted_safelog.observer}: from environment
variables (prefix C{TWISTED_SAFELOG_}) and an optional TOML file named by
C{TWISTED_SAFELOG_CONFIG}; the environment wins. Every bad value is a
L{ConfigurationError} whose message is one line naming the setting and what
it accepts.
"""

from __future__ import annotations

import math
import os
import stat
import sys
from collections.abc import Callable, Mapping
from typing import Any

from attrs import evolve, frozen
from twisted.logger import LogLevel

from ._compat import tomllib
from ._errors import ConfigurationError
from ._policy import Policy

__all__ = ["ENV_PREFIX", "SETTINGS", "Settings"]

ENV_PREFIX = "TWISTED_SAFELOG_"


def _choice(*choices: str) -> Callable[[str, object], str]:
    def parse(name: str, value: object) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigurationError(
                f"{name}={value!r} is not valid; use one of: {', '.join(choices)}"
            )
        return text

    return parse


def _number(kind: type, minimum: float, inclusive: bool = True) -> Callable[[str, object], Any]:
    word = "an integer" if kind is int else "a finite number"
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    # Counts and sizes become C sizes (a deque's maxlen, say).
    largest = f" and <= {sys.maxsize}" if kind is int else ""

    def parse(name: str, value: object) -> Any:
        text = repr(value)
        if len(text) > 60:
            text = f"{text[:40]}...[{len(text)} characters]"
        refusal = ConfigurationError(f"{name}={text} is not valid; use {word} {bound}")
        tooBig = ConfigurationError(f"{name}={text} is not valid; use {word} {bound}{largest}")
        # A bool is not a number; a float (TOML's 1.9, or 2.0) is not an
        # integer, and is never truncated into one.
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise refusal
        try:
            number = kind(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            raise refusal from None
        # inf and nan parse as floats but mean nothing here: "never probe
        # again" and "no backoff at all".
        if kind is int and number > sys.maxsize:
            raise tooBig
        try:
            bad = (
                not math.isfinite(number)
                or number < minimum
                or (not inclusive and number == minimum)
            )
        except OverflowError:
            # A float setting given an integer too large for a float.
            bad = True
        if bad:
            raise refusal
        return number

    return parse


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name}={value!r} is not valid; use one of: true, false")


def _reports(name: str, value: object) -> str:
    text = str(value).strip()
    if not text:
        raise ConfigurationError(
            f"{name}={value!r} is not valid; use auto, stderr, logfile or a file path"
        )
    return text if text.lower() not in ("auto", "stderr", "logfile") else text.lower()


def _path(name: str, value: object) -> str:
    """
    A file path; empty means off.
    """
    return str(value).strip()


def _port(name: str, value: object) -> int | None:
    text = str(value).strip()
    if text.lower() in ("", "off", "none"):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(
            f"{name}={value!r} is not valid; use a TCP port number from 1 to 65535 "
            "(0: any free port; off: none)"
        )
    return port


_LEVELS = {"debug", "info", "warn", "error", "critical"}

#: setting -> (parser, default, what it does). The environment variable is
#: ENV_PREFIX + the name in upper case; the TOML key is the name.
SETTINGS: dict[str, tuple[Callable[[str, object], Any], Any, str]] = {
    "format": (_choice("text", "json"), "text", "log line format: text or json (JSON lines)"),
    "level": (_choice(*sorted(_LEVELS)), "info", "minimum level written"),
    "bridge": (
        _choice("none", "to-stdlib", "from-stdlib", "both"),
        "none",
        "bridge Twisted and stdlib logging: none, to-stdlib, from-stdlib, both",
    ),
    "failure_threshold": (_number(int, 1), 5, "consecutive failures that quarantine a sink"),
    "reset_timeout": (_number(float, 0, False), 1.0, "seconds before the first probe"),
    "max_reset_timeout": (_number(float, 0, False), 60.0, "longest wait between probes"),
    "buffer_size": (_number(int, 0), 1000, "events kept for replay while quarantined"),
    "buffer_bytes": (
        _number(int, 1),
        16 * 1024 * 1024,
        "bytes (estimated) kept for replay per sink while quarantined",
    ),
    "repeat_burst": (
        _number(int, 0),
        100,
        "identical events delivered per repeat interval before copies are held back; 0: off",
    ),
    "repeat_interval": (
        _number(float, 0, False),
        1.0,
        "seconds over which repeat_burst is counted, and between summaries",
    ),
    "reports": (
        _reports,
        "auto",
        "where reports go: auto (terminal in the foreground, the log file when "
        "daemonized), stderr, logfile, or a file path",
    ),
    "rotate_length": (_number(int, 0), 1_000_000, "rotate the log file at this size; 0: never"),
    "max_rotated_files": (_number(int, 0), 0, "rotated files to keep; 0: all"),
    "create_directory": (_boolean, False, "create the log file's directory if missing"),
    "nonblocking": (
        _boolean,
        True,
        "deliver to the log file (or stdout) and stdlib from a worker thread",
    ),
    "queue_size": (_number(int, 1), 10_000, "non-blocking queue length"),
    "stall_timeout": (
        _number(float, 0),
        5.0,
        "seconds a delivery may not return before the sink is reported stalled; 0: never",
    ),
    "overflow": (
        _choice("drop-newest", "drop-oldest", "block"),
        "drop-newest",
        "what a full non-blocking queue does: drop-newest, drop-oldest, block",
    ),
    "status_file": (
        _path,
        "",
        "write the sinks' status as JSON to this file (python -m twisted_safelog status PATH)",
    ),
    "status_interval": (_number(float, 0, False), 5.0, "seconds between status file writes"),
    "metrics_port": (
        _port,
        None,
        "serve Prometheus /metrics on this port (needs twisted-safelog[prometheus])",
    ),
    "metrics_interface": (_path, "127.0.0.1", "the address /metrics listens on"),
}


@frozen
class Settings:
    """
    Every setting, parsed and checked.
    """

    format: str = "text"
    level: str = "info"
    bridge: str = "none"
    failure_threshold: int = 5
    reset_timeout: float = 1.0
    max_reset_timeout: float = 60.0
    buffer_size: int = 1000
    buffer_bytes: int = 16 * 1024 * 1024
    repeat_burst: int = 100
    repeat_interval: float = 1.0
    reports: str = "auto"
    rotate_length: int = 1_000_000
    max_rotated_files: int = 0
    create_directory: bool = False
    nonblocking: bool = True
    queue_size: int = 10_000
    overflow: str = "drop-newest"
    status_file: str = ""
    status_interval: float = 5.0
    metrics_port: int | None = None
    metrics_interface: str = "127.0.0.1"
    stall_timeout: float = 5.0

    @property
    def logLevel(self) -> Any:
        return LogLevel.levelWithName(self.level)

    def policy(self) -> Policy:
        """
        The hardening policy these settings give every safe sink.
        """
        return Policy(
            failureThreshold=self.failure_threshold,
            resetTimeout=self.reset_timeout,
            maxResetTimeout=self.max_reset_timeout,
            bufferSize=self.buffer_size,
            stallTimeout=self.stall_timeout,
            bufferBytes=self.buffer_bytes,
            repeatBurst=self.repeat_burst,
            repeatInterval=self.repeat_interval,
        )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """
        Read the TOML file named by C{TWISTED_SAFELOG_CONFIG} (if set), then
        the C{TWISTED_SAFELOG_*} environment variables over it.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = environ.get(ENV_PREFIX + "CONFIG")
        if path:
            values.update(_readToml(path))
        known = {ENV_PREFIX + key.upper(): key for key in SETTINGS}
        for variable, value in environ.items():
            if not variable.startswith(ENV_PREFIX) or variable == ENV_PREFIX + "CONFIG":
                continue
            key = known.get(variable)
            if key is None:
                raise ConfigurationError(
                    f"{variable} is not a twisted-safelog setting; known: "
                    + ", ".join(sorted([*known, ENV_PREFIX + "CONFIG"]))
                )
            values[key] = SETTINGS[key][0](variable, value)
        return evolve(cls(), **values)


#: A settings file larger than this is not one.
_MAX_CONFIG_BYTES = 1024 * 1024

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _readConfigFile(path: str, where: str) -> bytes:
    """
    The bytes of the settings file at C{path}, refused at once (without
    blocking on a FIFO or reading /dev/zero for ever) unless it is a regular
    file of a sensible size.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise ConfigurationError(
            f"{where}: cannot read it ({error.strerror or error}); fix the path"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
            raise ConfigurationError(
                f"{where} is {kind}, not a regular file; give the path of a TOML file"
            )
        if st.st_size > _MAX_CONFIG_BYTES:
            raise ConfigurationError(
                f"{where} is {st.st_size} bytes; a settings file is at most "
                f"{_MAX_CONFIG_BYTES} bytes, give the path of a TOML file"
            )
        chunks = []
        size = 0
        while size <= _MAX_CONFIG_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)[: _MAX_CONFIG_BYTES + 1]
    except OSError as error:
        raise ConfigurationError(
            f"{where}: cannot read it ({error.strerror or error}); fix the path"
        ) from None
    finally:
        os.close(fd)


def _readToml(path: str) -> dict[str, Any]:
    where = f"{ENV_PREFIX}CONFIG={path!r}"
    raw = _readConfigFile(path, where)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{where}: not UTF-8 text; give the path of a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        reason = " ".join(str(error).split())
        raise ConfigurationError(f"{where}: not valid TOML ({reason})") from None
    if "twisted_safelog" in data:
        outside = sorted(key for key in data if key != "twisted_safelog")
        if outside:
            raise ConfigurationError(
                f"{where}: top-level key {outside[0]!r} next to the [twisted_safelog] "
                "table; put every setting in the table"
            )
    table = data.get("twisted_safelog", data)
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: [twisted_safelog] must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        normal = key.replace("-", "_")
        if normal not in SETTINGS:
            raise ConfigurationError(
                f"{where}: unknown setting {key!r}; known: {', '.join(SETTINGS)}"
            )
        if isinstance(value, (dict, list)):
            raise ConfigurationError(
                f"{key} in {path}={value!r} is not valid; "
                f"use a single value ({SETTINGS[normal][2]})"
            )
        values[normal] = SETTINGS[normal][0](f"{key} in {path}", value)
    return values

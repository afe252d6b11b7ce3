# -*- test-case-name: tests.test_settings,tests.test_twistd -*-
"""
twistd's own command line, read the way twistd reads it, for the factory
behind C{twistd --logger=twisted_safelog.observer}: twistd calls it with no
arguments and ignores its own C{--logfile} when C{--logger} is given, so
the factory honours C{--logfile} and C{-n/--nodaemon} from here.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = ["twistdOptions"]


def _serverOptionsClass() -> type:
    from twisted.scripts.twistd import ServerOptions  # type: ignore[attr-defined]

    class TwistdOptions(ServerOptions):
        """
        twistd's own options, parsed without side effects: no subcommand,
        no reactor installation, no post-processing.
        """

        subCommands: ClassVar[list[Any]] = []

        def opt_reactor(self, shortName: str) -> None:
            self["reactor"] = shortName

        opt_r = opt_reactor

        def opt_logger(self, logger: str) -> None:
            self["logger"] = logger

        def parseArgs(self, *args: str) -> None:
            pass

        def postOptions(self) -> None:
            pass

    return TwistdOptions


def _twistdPrefix(argv: Sequence[str], options: Any) -> list[str]:
    """
    The part of a twistd command line before the subcommand (the plugin
    name and its own options, which twistd's options must not see).
    """
    withValue = {name[:-1] for name in options.longOpt if name.endswith("=")}
    shortWithValue = {
        options.shortOpt[i - 1] for i, c in enumerate(options.shortOpt) if c == ":" and i
    }
    prefix: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        prefix.append(arg)
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0].replace("-", "_")
            if "=" not in arg and (name in withValue or name.replace("_", "-") in withValue):
                i += 1
                if i < len(args):
                    prefix.append(args[i])
        else:
            for position, letter in enumerate(arg[1:], start=1):
                if letter in shortWithValue:
                    if position == len(arg) - 1:
                        i += 1
                        if i < len(args):
                            prefix.append(args[i])
                    break
        i += 1
    return prefix


def twistdOptions(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """
    twistd's options from its command line (C{sys.argv} by default), as
    twistd's own parser reads them. A command line it cannot parse gives the
    defaults: twistd itself has parsed it already and reported any error.
    """
    if argv is None:
        argv = sys.argv[1:]
    TwistdOptions = _serverOptionsClass()
    options = TwistdOptions()
    try:
        options.parseOptions(_twistdPrefix(argv, options))
    except Exception:
        options = TwistdOptions()
    return dict(options)

"""
C{python -m twisted_safelog}: the incident demo, and the child side of the
incident runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m twisted_safelog",
        description="twisted-safelog: Twisted logging that cannot wedge.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the incident with plain Twisted and with twisted-safelog, side by side"
    )
    demo.add_argument(
        "--variant",
        action="append",
        help="which loop to show (repeatable; default: the incident); 'all' for every variant",
    )
    demo.add_argument("--events", type=int, default=300, help="application events per run")
    demo.add_argument(
        "--timeout", type=float, default=5.0, help="seconds before the plain run is killed"
    )

    doctor = commands.add_parser(
        "doctor", help="load an application's logging set-up and print its feedback loops"
    )
    source = doctor.add_mutually_exclusive_group(required=True)
    source.add_argument("--tac", help="a .tac file, as twistd -y would load it")
    source.add_argument("--module", help="a module that sets up the application's logging")
    doctor.add_argument("--logger", help="as twistd --logger=NAME, e.g. twisted_safelog.observer")

    child = commands.add_parser("_incident-child", help=argparse.SUPPRESS)
    child.add_argument("variant")
    child.add_argument("--hardened", action="store_true")
    child.add_argument("--events", type=int, required=True)
    child.add_argument("--workdir", type=Path, required=True)
    child.add_argument("--status", type=Path, required=True)

    args = parser.parse_args(argv)
    if args.command == "_incident-child":
        from ._incident import childMain

        return childMain(args.variant, args.hardened, args.events, args.workdir, args.status)
    if args.command == "doctor":
        from ._doctor import runDoctor

        return runDoctor(tac=args.tac, module=args.module, logger=args.logger)
    if args.command == "demo":
        from ._demo import runDemo

        return runDemo(args.variant or ["incident"], args.events, args.timeout)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""
C{python -m twisted_safelog}: the incident demo and the loop doctor.
"""

from __future__ import annotations

import argparse
import math
import sys


def _variantList() -> str:
    from .incident import VARIANTS

    width = max(len(name) for name in VARIANTS)
    lines = [f"  {'all':<{width}}  every variant below, one after the other"]
    lines += [f"  {name:<{width}}  {variant.description}" for name, variant in VARIANTS.items()]
    return "variants (--variant):\n" + "\n".join(lines)


def _seconds(text: str) -> float:
    """
    A duration for C{--max-age}: a finite number of seconds > 0 (C{nan}
    would make every file fresh, a negative one every file stale).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds > 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """
    Run the command line C{argv} (default: C{sys.argv[1:]}) and return the
    exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m twisted_safelog",
        description="twisted-safelog: Twisted logging that cannot wedge.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )

    demo = commands.add_parser(
        "demo",
        help="run the incident with plain Twisted and with twisted-safelog, side by side",
        description="Run the incident with plain Twisted and with twisted-safelog, side by\n"
        "side; exit 0 if twisted-safelog behaved on every variant.",
        epilog=_variantList(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help="which loop to show (repeatable; default: incident; 'all' for every variant)",
    )
    demo.add_argument("--events", type=int, default=300, help="application events per run")
    demo.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds before the plain run is killed (default: 5)",
    )
    demo.add_argument(
        "--stop-at-proof",
        action="store_true",
        help="end the plain run as soon as the loop is proven (a count of failing calls) "
        "instead of at --timeout",
    )

    doctor = commands.add_parser(
        "doctor", help="load an application's logging set-up and print its feedback loops"
    )
    source = doctor.add_mutually_exclusive_group(required=True)
    source.add_argument("--tac", help="a .tac file, as twistd -y would load it")
    source.add_argument("--module", help="a module that sets up the application's logging")
    doctor.add_argument("--logger", help="as twistd --logger=NAME, e.g. twisted_safelog.observer")

    statusCommand = commands.add_parser(
        "status",
        help="print a status file as a table; exit 0 healthy, 1 quarantined or stalled, "
        "2 missing or stale",
        description="Print the status file that TWISTED_SAFELOG_STATUS_FILE names as a table\n"
        "(sink, state, since, delivered, failed, dropped by reason, last error).\n"
        "Exit 0 when every sink is healthy, 1 when any is quarantined or stalled,\n"
        "2 when the file is missing, stale or says the process stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    statusCommand.add_argument("path", help="the file TWISTED_SAFELOG_STATUS_FILE names")
    statusCommand.add_argument("--json", action="store_true", help="print JSON for machines")
    statusCommand.add_argument(
        "--max-age",
        type=_seconds,
        default=None,
        help="seconds after which the file is stale (default: 3 intervals + 5s)",
    )

    args = parser.parse_args(argv)
    if args.command == "status":
        from ._statuscli import runStatus

        return runStatus(args.path, asJSON=args.json, maxAge=args.max_age)
    if args.command == "doctor":
        from ._doctor import runDoctor

        return runDoctor(tac=args.tac, module=args.module, logger=args.logger)
    if args.command == "demo":
        from .incident import runDemo

        return runDemo(
            args.variant or ["incident"], args.events, args.timeout, stopAtProof=args.stop_at_proof
        )
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())

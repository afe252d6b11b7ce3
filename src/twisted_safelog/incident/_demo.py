# -*- test-case-name: tests.test_demo -*-
"""
C{python -m twisted_safelog demo}: the incident, side by side.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from ._harness import IncidentResult, RunningIncident, loopProof, resultsOf, startIncident
from ._variants import VARIANTS

__all__ = ["runDemo"]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _completed(r: IncidentResult) -> str:
    text = f"{r.completed:,} of {r.events:,}"
    if r.timedOut:
        text += f" (killed at {r.elapsed:.0f} s)"
    elif r.proven:
        text += f" (killed at {r.elapsed:.1f} s, loop proven)"
    return text


def _mean(r: IncidentResult) -> str:
    if r.completed == 0 or r.meanEventSeconds is None:
        return "never returned"
    if not r.done:
        return f"{r.meanEventSeconds * 1000:,.2f} ms, then stuck"
    return f"{r.meanEventSeconds * 1000:,.2f} ms"


def _firstReport(r: IncidentResult) -> str:
    for needle in ("quarantined", "failed:", "dropped"):
        for line in r.reports:
            if needle in line:
                text = line.split(" ", 2)[2]
                return text if len(text) <= 110 else text[:107] + "..."
    return "(nothing)"


def table(plain: IncidentResult, safe: IncidentResult) -> str:
    rows = [
        ("", "plain Twisted", "twisted-safelog"),
        ("application events completed", _completed(plain), _completed(safe)),
        ("mean time per event", _mean(plain), _mean(safe)),
        ("failing sink calls", f"{plain.failingCalls:,}", f"{safe.failingCalls:,}"),
        (
            "app events in healthy sinks",
            f"{plain.appEventsInWitness():,}",
            f"{safe.appEventsInWitness():,}",
        ),
        ("bytes written to log files", _size(plain.bytesWritten), _size(safe.bytesWritten)),
        ("CPU time", f"{plain.cpuSeconds:.2f} s", f"{safe.cpuSeconds:.2f} s"),
    ]
    for key in sorted(set(plain.extra) | set(safe.extra)):
        rows.append((key, f"{plain.extra.get(key, 0):,}", f"{safe.extra.get(key, 0):,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"out-of-band report (twisted-safelog): {_firstReport(safe)}")
    return "\n".join(lines)


def _verdict(plain: IncidentResult) -> str:
    if plain.looped:
        return "plain Twisted looped"
    if plain.done and plain.failingCalls > 3 * plain.events:
        perEvent = plain.failingCalls / plain.events
        return f"plain Twisted finished, nesting {perEvent:,.0f} failing calls per event"
    return (
        f"plain Twisted did not loop this time ({plain.failingCalls:,} failing calls, "
        f"{loopProof(plain.events):,} prove the loop)"
    )


def runDemo(
    variants: Sequence[str],
    events: int = 300,
    timeout: float = 5.0,
    out: TextIO | None = None,
    stopAtProof: bool = False,
) -> int:
    """
    Run each variant with plain Twisted and with twisted-safelog (at the
    same time), print a table for each, and say whether every hardened run
    behaved.

    @param variants: Names from L{VARIANTS}, or C{"all"}.
    @param events: Application events per run.
    @param timeout: Seconds after which the plain run is killed (the
        hardened run gets at least 60).
    @param out: Where to print (default: C{sys.stdout}).
    @param stopAtProof: End the plain run as soon as the loop is proven
        (L{loopProof} failing calls) instead of at C{timeout}; the runs of
        every variant are then started at once.
    @return: 0 if every hardened run behaved (L{IncidentResult.problems}
        is empty), 1 if one did not, 2 for an unknown variant.
    """
    write = (out or sys.stdout).write
    names = list(VARIANTS) if "all" in variants else list(variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        write(f"unknown variant {unknown[0]!r}; choose from: all, {', '.join(VARIANTS)}\n")
        return 2

    def start(name: str) -> list[RunningIncident]:
        return [
            startIncident(
                name, hardened=False, events=events, timeout=timeout, stopAtProof=stopAtProof
            ),
            startIncident(name, hardened=True, events=events, timeout=max(timeout, 60.0)),
        ]

    # Ended by their proof, the runs of every variant can share the machine;
    # ended by --timeout, each plain run gets it to itself, to show its scale.
    started = {name: start(name) for name in names} if stopAtProof else {}
    failures = 0
    for name in names:
        write(f"\n== {name}: {VARIANTS[name].description}\n")
        write(
            "   twistd-style logging (stdio redirected), a failing sink, "
            f"{events} application events\n\n"
        )
        plain, safe = resultsOf(started.pop(name) if name in started else start(name))
        write(table(plain, safe) + "\n")
        problems = safe.problems()
        if problems:
            failures += 1
            write("twisted-safelog did NOT behave: " + "; ".join(problems) + "\n")
        else:
            write(f"{_verdict(plain)}; twisted-safelog completed every event.\n")
    return 1 if failures else 0

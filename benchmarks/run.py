"""
The benchmark suite: twisted-safelog side by side with plain Twisted.

    python benchmarks/run.py            # the full run (about ten minutes)
    python benchmarks/run.py --quick    # under a minute, noisier
    python benchmarks/run.py --plot     # also draw the growth case (matplotlib)

Each case runs in a process of its own (benchmarks/cases.py); within it,
rounds alternate between plain Twisted and twisted-safelog, and medians are
reported. Prints one table (plain, hardened, the measure each target applies
to, the target, whether it was met) and writes every raw number as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: The cases, in the order they run and are printed, with what they measure.
CASES = {
    "wrapper-cost": "wrapper's own cost, no-op observer, direct call",
    "text-observer": "healthy textFileLogObserver, wrapped / bare",
    "text-with-raising": "text observer + one always-raising observer, vs text alone",
    "bridge-with-raising": "bridge to a healthy handler + a raising observer, vs bridge alone",
    "seed-incident": "seed incident (failing rotating handler), events/s vs healthy bridge",
    "file-sink": "safeFileLogObserver(path) vs textFileLogObserver(open(path)), real file",
    "slow-sink": "slow sink (10 ms/write): caller cost, NonBlockingObserver vs fast path",
    "growth": "32 observers, 8 always raising: cost per event; growth 8 -> 32",
    "repeat-check": "identical-event suppression's check on the healthy path",
    "repeat-flood": "one line again and again (a retry loop), file: held back / all written",
    "twistd": "incident web app under twistd, healthy: req/s (9 clients)",
}
#: Rows that cases add besides their own.
EXTRA_ROWS = {
    "wrapper-floor": "its floor: a minimal guard (instance call, thread id, set, one count)",
    "seed-incident-bytes": "log bytes per application event, seed incident, 300 events",
    "twistd-healthy-p99": "incident web app under twistd, healthy: p99 latency",
    "twistd-broken": "same app, handler broken: hardened req/s vs plain healthy",
    "twistd-broken-p99": "same app, handler broken: hardened p99 vs plain healthy",
}


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import twisted

    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
    }


def runCase(case: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(HERE / "cases.py"),
        case,
        "--scale",
        str(args.scale),
        "--rounds",
        str(args.rounds),
        "--seconds",
        str(args.seconds),
    ]
    if args.quick:
        command.append("--quick")
    start = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.caseTimeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "error": f"did not finish in {args.caseTimeout:g} s"}
    if done.returncode != 0:
        return {"case": case, "error": done.stderr.strip().splitlines()[-1:] or ["?"]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = time.monotonic() - start
    return result


def _number(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if unit in ("us",):
        return f"{value:.3f} us"
    if unit.startswith("us/event"):
        return f"{value:,.1f} us"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit in ("req/s", "events/s"):
        return f"{value:,.0f} {unit}"
    if unit == "B/event":
        return f"{value:,.0f} B"
    return f"{value:.3g} {unit}"


#: Cases whose measure is a cost added per event, in microseconds.
_ADDED_COST = ("wrapper-cost", "wrapper-floor", "repeat-check")


def _measure(row: dict[str, Any]) -> str:
    unit = row.get("measureUnit", row.get("unit", ""))
    value = row["measure"]
    if row["case"] in _ADDED_COST:
        return f"+{value:.3f} us"
    if unit.startswith("%"):
        return f"{value:.1f}%"
    if unit.startswith("x"):
        return f"{value:.3f}x"
    if unit == "B/event":
        return f"{value:.0f} B"
    return f"{value:.3g}"


def _target(row: dict[str, Any]) -> str:
    sense = row.get("targetSense", "<=")
    unit = row.get("measureUnit", row.get("unit", ""))
    target = row["target"]
    if row["case"] in _ADDED_COST:
        return f"{sense} {target:g} us"
    if unit.startswith("%"):
        return f"{sense} {target:g}%"
    if unit == "B/event":
        return f"{sense} {target:g} B"
    return f"{sense} {target:g}x"


def rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for result in results:
        found.append(result)
        found.extend(result.get("extraRows", []))
    return found


def table(results: list[dict[str, Any]]) -> str:
    header = ("case", "plain Twisted", "twisted-safelog", "measure", "target", "met")
    lines = [header]
    for row in rows(results):
        case = row["case"]
        label = CASES.get(case) or EXTRA_ROWS.get(case, case)
        if "error" in row:
            lines.append((label, "-", "-", f"ERROR: {row['error']}", "-", "no"))
            continue
        unit = row.get("unit", "")
        plain = row.get("plainNote") or _number(row.get("plain"), unit)
        lines.append(
            (
                label,
                plain,
                _number(row.get("hardened"), unit),
                _measure(row),
                _target(row),
                "yes" if row.get("met") else "NO",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def growthTable(result: dict[str, Any]) -> str:
    data = result["table"]
    lines = ["observers  raising  plain us/event   hardened us/event"]
    unfinished = {int(k): v for k, v in data["plain unfinished (budget s)"].items()}
    for i, n in enumerate(data["observers"]):
        plain = data["plain us/event"][i]
        hardened = data["hardened us/event"][i]
        if n in unfinished:
            plainText = f"> {unfinished[n] * 1e6:,.0f}"
        else:
            plainText = f"{plain:,.2f}" if plain else "-"
        lines.append(f"{n:>9}  {data['raising'][i]:>7}  {plainText:>14}   {hardened:>17,.2f}")
    return "\n".join(lines)


def twistdTable(result: dict[str, Any]) -> str:
    lines = ["run               req/s     p50 ms    p99 ms  CPU us/req  switches/req"]
    for which, values in result["table"].items():
        rps, p50, p99 = values["rps"], values["p50"], values["p99"]
        cpu, switches = values.get("cpuPerRequest"), values.get("switchesPerRequest")

        def fmt(v: float | None, spec: str) -> str:
            return "-" if v is None or math.isnan(v) else format(v, spec)

        lines.append(
            f"{which:<16} {fmt(rps, '>6,.0f')}  {fmt(p50, '>8.2f')}  {fmt(p99, '>8.2f')}"
            f"  {fmt(cpu, '>10,.0f')}  {fmt(switches, '>12.2f')}"
        )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "--plot: matplotlib is not installed; no PNG drawn"
    data = result["table"]
    n = data["observers"]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    plainPoints = [(x, y) for x, y in zip(n, data["plain us/event"], strict=False) if y]
    if plainPoints:
        axes.plot(*zip(*plainPoints, strict=False), "o-", label="plain Twisted")
    axes.plot(n, data["hardened us/event"], "s-", label="twisted-safelog")
    axes.set_xlabel("observers (a quarter always raising)")
    axes.set_ylabel("cost per event (us)")
    axes.set_yscale("log")
    axes.set_title("Cost per event as observers grow")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return f"growth plot written to {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--scale", type=float, help="multiply every event count")
    parser.add_argument("--rounds", type=int, help="alternating rounds per case")
    parser.add_argument("--seconds", type=float, help="seconds of load per twistd run")
    parser.add_argument("--only", help="comma-separated cases to run")
    parser.add_argument("--json", type=Path, default=Path("logs/benchmark-results.json"))
    parser.add_argument("--plot", nargs="?", const=Path("logs/benchmark-growth.png"), type=Path)
    args = parser.parse_args(argv)
    if args.scale is None:
        args.scale = 0.1 if args.quick else 1.0
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 5.0
    args.caseTimeout = 120.0 if args.quick else 900.0
    cases = list(CASES) if args.only is None else args.only.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; the cases are: {', '.join(CASES)}")
    before = machine()
    started = time.monotonic()
    results = []
    for case in cases:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        results.append(runCase(case, args))
    after = os.getloadavg()
    elapsed = time.monotonic() - started
    print(
        f"twisted-safelog benchmarks ({'quick' if args.quick else 'full'} run, "
        f"{args.rounds} alternating rounds, medians; {elapsed:.0f} s)"
    )
    print(
        f"machine: {before['cpu']}, {before['cpus']} CPUs; Python {before['python']}, "
        f"Twisted {before['twisted']}; load average {before['loadavg'][0]:.1f} before, "
        f"{after[0]:.1f} after"
    )
    print()
    print(table(results))
    for result in results:
        if result["case"] == "growth" and "error" not in result:
            print()
            print(growthTable(result))
            if args.plot is not None:
                print(plot(result, args.plot))
        if result["case"] == "twistd" and "error" not in result:
            print()
            print(twistdTable(result))
    document = {
        "machine": before,
        "loadavgAfter": after,
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "seconds": elapsed,
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1, default=str))
    print(f"\nraw numbers: {args.json}")
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())

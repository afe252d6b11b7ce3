"""
Scrapy, an application this project did not write, crawling a site served
on 127.0.0.1, plain and with C{twisted_safelog.install()} active: the same
items and the same log lines (each once, the same count of every kind);
and with a root handler whose C{emit} starts raising mid-crawl, plain Scrapy
hangs (bounded here) while the hardened crawl finishes with every item.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import attr
import pytest

from conftest import HERE, ITEMS, requireModule

#: A healthy crawl of the site takes about 3 s here (10 s under heavy
#: load); a plain crawl whose root handler raises has not ended after this
#: long from its start, nor after three times the healthy crawl's time run
#: beside it (it never does).
PLAIN_HANG_BOUND = 20.0
#: Generous, for a loaded CI machine.
FINISH_DEADLINE = 180.0

_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@attr.s(auto_attribs=True, frozen=True)
class Crawl:
    #: The process ended on its own, with status 0, after the crawl.
    finished: bool
    #: The process had not ended by the deadline and was killed.
    timedOut: bool
    items: list[dict[str, str]]
    log: str
    stderr: str

    def logLines(self) -> list[str]:
        """
        Scrapy's log records (the lines that start with a timestamp),
        without the timestamp.
        """
        return [_STAMP.sub("", line) for line in self.log.splitlines() if _STAMP.match(line)]

    def messageKinds(self) -> Counter[str]:
        """
        How many log records of each kind: numbers (timings, ports, stats
        values) and ids blanked out.
        """
        kinds: Counter[str] = Counter()
        for line in self.logLines():
            line = re.sub(r"\b[0-9a-f]{16,}\b", "<id>", line)
            kinds[re.sub(r"\d+", "#", line)] += 1
        return kinds


def startCrawl(
    mode: str, port: int, directory: Path, raiseAfter: int | None = None
) -> subprocess.Popen[str]:
    directory.mkdir()
    args = [sys.executable, str(HERE / "scrapy_crawl.py"), mode, str(port), "crawl.log", "items.jl"]
    if raiseAfter is not None:
        args.append(str(raiseAfter))
    return subprocess.Popen(
        args,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], directory: Path, timeout: float) -> Crawl:
    timedOut = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timedOut = True
        process.kill()
        stdout, stderr = process.communicate(timeout=30)
    items = directory / "items.jl"
    log = directory / "crawl.log"
    return Crawl(
        finished=not timedOut and process.returncode == 0 and "finished" in stdout.splitlines(),
        timedOut=timedOut,
        items=sorted(
            (json.loads(line) for line in items.read_text().splitlines()),
            key=lambda item: item["url"],
        )
        if items.exists()
        else [],
        log=log.read_text(errors="replace") if log.exists() else "",
        stderr=stderr,
    )


@pytest.fixture(autouse=True)
def scrapy() -> None:
    requireModule("scrapy")


def test_sameItemsAndSameLogLinesEachOnce(site: int, tmp_path: Path) -> None:
    plainProcess = startCrawl("plain", site, tmp_path / "plain")
    installedProcess = startCrawl("installed", site, tmp_path / "installed")
    plain = finish(plainProcess, tmp_path / "plain", FINISH_DEADLINE)
    installed = finish(installedProcess, tmp_path / "installed", FINISH_DEADLINE)
    assert plain.finished and installed.finished, (plain.stderr, installed.stderr)
    assert len(plain.items) == ITEMS
    assert installed.items == plain.items
    assert installed.messageKinds() == plain.messageKinds()
    assert len(installed.logLines()) == len(plain.logLines())
    for n in range(ITEMS):
        line = f"[site] INFO: item page http://127.0.0.1:{site}/item/{n}"
        assert plain.logLines().count(line) == installed.logLines().count(line) == 1
    assert "twisted-safelog:" not in installed.stderr + installed.log, "nothing to report"


def test_aRaisingRootHandlerHangsPlainScrapyAndNotTheHardenedCrawl(
    site: int, tmp_path: Path
) -> None:
    started = time.monotonic()
    healthyProcess = startCrawl("plain", site, tmp_path / "healthy")
    plainProcess = startCrawl("plain", site, tmp_path / "plain", raiseAfter=40)
    installedProcess = startCrawl("installed", site, tmp_path / "installed", raiseAfter=40)
    healthy = finish(healthyProcess, tmp_path / "healthy", FINISH_DEADLINE)
    healthyTime = time.monotonic() - started
    installed = finish(installedProcess, tmp_path / "installed", FINISH_DEADLINE)
    bound = max(PLAIN_HANG_BOUND, 3 * healthyTime)
    plain = finish(plainProcess, tmp_path / "plain", max(bound - (time.monotonic() - started), 0.1))

    # Plain Scrapy never ends (the crawl stalls, or its reactor stops and
    # the process hangs on its way out), and writes no item.
    assert plain.timedOut and not plain.finished, "plain Scrapy hangs once its root handler raises"
    assert plain.items == []

    assert installed.finished, installed.stderr
    assert installed.items == healthy.items and len(healthy.items) == ITEMS
    assert installed.messageKinds() == healthy.messageKinds(), "Scrapy's own log unharmed"
    reports = [line for line in installed.stderr.splitlines() if "twisted-safelog:" in line]
    assert any(
        "sink <RaisingAfter (NOTSET)> quarantined after 5 consecutive failures" in line
        for line in reports
    ), installed.stderr
    failures = [
        line for line in reports if "failed: RuntimeError: the root handler is broken" in line
    ]
    # Reported once; a repeat (a failed probe more than 10 s later on a slow
    # machine) comes with the exact count of those suppressed in between.
    assert len([line for line in failures if "suppressed" not in line]) == 1, installed.stderr
    # What the quarantined handler still held at exit: counted, one line.
    atExit = [line for line in reports if line.endswith("(shutdown)")]
    assert len(atExit) == 1
    assert re.search(r"sink <RaisingAfter \(NOTSET\)> dropped \d+ events \(shutdown\)", atExit[0])

"""
A Scrapy crawl of the small site the test serves on 127.0.0.1, plain or with
C{twisted_safelog.install()} active: Scrapy's own log goes to C{LOG_FILE},
the items to a JSON lines feed. Prints C{finished} when the crawl ends.

    python realapps/scrapy_crawl.py plain|installed PORT LOGFILE FEED [RAISE_AFTER]

With C{RAISE_AFTER}, a root handler is attached whose C{emit} raises from
the C{RAISE_AFTER}-th record on (mid-crawl), as a broken handler does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any, ClassVar


class RaisingAfter(logging.Handler):
    """
    A root handler that works for C{after} records, then raises from
    C{emit} (a handler with a bug, or one whose C{emit} does not catch).
    """

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        if self.seen >= self.after:
            raise RuntimeError("the root handler is broken")


def main(mode: str, port: int, logFile: str, feed: str, raiseAfter: int | None) -> None:
    if mode == "installed":
        import twisted_safelog

        twisted_safelog.install()
    elif mode != "plain":
        raise SystemExit(f"mode must be plain or installed, not {mode!r}")

    import scrapy
    from scrapy.crawler import CrawlerProcess

    class SiteSpider(scrapy.Spider):  # type: ignore[misc]
        name = "site"
        start_urls: ClassVar[list[str]] = [f"http://127.0.0.1:{port}/"]

        def parse(self, response: Any) -> Iterator[Any]:
            for href in response.css("a::attr(href)").getall():
                yield response.follow(href, self.parseItem)

        def parseItem(self, response: Any) -> Iterator[dict[str, Any]]:
            self.logger.info("item page %s", response.url)
            yield {
                "url": response.url,
                "title": response.css("h1::text").get(),
                "price": response.css(".price::text").get(),
            }

    process = CrawlerProcess(
        settings={
            "LOG_FILE": logFile,
            "LOG_LEVEL": "DEBUG",
            "FEEDS": {feed: {"format": "jsonlines"}},
            "TELNETCONSOLE_ENABLED": False,
            "ROBOTSTXT_OBEY": False,
            "CONCURRENT_REQUESTS": 4,
        }
    )
    process.crawl(SiteSpider)
    if raiseAfter is not None:
        logging.getLogger().addHandler(RaisingAfter(raiseAfter))
    process.start()
    print("finished", flush=True)


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        int(sys.argv[5]) if len(sys.argv) > 5 else None,
    )

"""
Shared set-up for the real-application tests: the site Scrapy crawls (served
on 127.0.0.1 by a thread of the test process), and requiring the
applications themselves (installed by tox's C{realapps} environment; under
C{CI=true} a missing one fails instead of skipping).
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent

#: How many item pages the site has.
ITEMS = 30


def requireModule(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        message = f"{name} is not installed (tox -e realapps installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def twistdCommand() -> list[str]:
    """
    This interpreter's twistd.
    """
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; run()"]


class _Site(http.server.BaseHTTPRequestHandler):
    """
    An index page linking to C{ITEMS} item pages, each with a title and a
    price.
    """

    def do_GET(self) -> None:
        if self.path == "/":
            links = "".join(f'<a href="/item/{n}">item {n}</a>' for n in range(ITEMS))
            body = f"<html><body>{links}</body></html>"
        elif self.path.startswith("/item/") and self.path[6:].isdigit():
            n = int(self.path[6:])
            body = (
                f'<html><body><h1>Item {n}</h1><span class="price">{n * 3}.50</span></body></html>'
            )
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[int]:
    """
    Serve the site on 127.0.0.1; yields its port.
    """
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

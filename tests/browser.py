"""Driving the dashboard in a real headless Chromium (the helpers of ``test_dashboard``).

Chromium is Debian's ``chromium`` package at ``/usr/bin/chromium``, driven by
Playwright for Python (never ``playwright install``). Without that browser the tests
skip, unless ``TAKHIN_WS_REQUIRE_BROWSER`` is set (CI sets it): then they fail.

- :func:`chromium`: the browser; :class:`ServerProcess`: ``python -m takhin_ws`` on a
  fixed port, which a test can pause, kill and start again (:func:`servers` stops
  every one it started);
- :class:`ConsoleWatch`: every console error and uncaught exception of a page;
- :class:`ScriptedPeer`: the page's WebSocket routed to the test, which plays the
  server (for messages a real server rarely sends on cue, and exact data).

Every wait is a condition with a generous deadline (a hang guard, not a timing
assertion).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    WebSocket,
    WebSocketRoute,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from takhin_ws.wire.codec import encode
from takhin_ws.wire.messages import Envelope, Heartbeat, Limits, Payload, Welcome

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = "TAKHIN_WS_REQUIRE_BROWSER"
DOCS = Path(__file__).resolve().parent.parent / "docs"
#: Set to 1 to refresh the screenshots in docs/; otherwise they go to a temp dir.
UPDATE_SCREENSHOT = "TAKHIN_WS_UPDATE_SCREENSHOT"
WIDE: ViewportSize = {"width": 1400, "height": 1000}
#: A phone held upright.
NARROW: ViewportSize = {"width": 420, "height": 900}

#: Deadlines (ms) of the waits: hang guards, generous for slow CI machines.
SOON = 20_000
RECONNECT = 60_000  # backoff is capped at 30 s

#: What Chromium itself logs when a connection fails (not the page's JavaScript).
NETWORK_ERROR = re.compile(
    r"^(WebSocket connection to 'ws://127\.0\.0\.1:\d+/api/monitoring/ws\?[^']*' failed"
    r"|Failed to load resource: net::ERR_CONNECTION_REFUSED"
    r"|Failed to load resource: net::ERR_CONNECTION_RESET"
    # the page asking the server why its upgrade failed (a plain GET of the same URL)
    r"|Failed to load resource: the server responded with a status of \d{3} )"
)
#: What Chromium logs when the page reads a /readyz that answers 503 (an unready server).
UNREADY_ERROR = (
    "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
)


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """docs/<name> when refreshing the docs' screenshots, else a temp file."""
    return DOCS / name if os.environ.get(UPDATE_SCREENSHOT) == "1" else tmp_path / name


# --- the server subprocess ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``python -m takhin_ws`` on a fixed port; can be killed and started again.

    :meth:`start` returns once ``/readyz`` answers 200, or with *ready* false (a
    server whose source never works) once ``/healthz`` does."""

    def __init__(self, port: int, log_path: Path, *args: str, ready: bool = True) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_path = "/readyz" if ready else "/healthz"

    def start(self) -> None:
        assert self.proc is None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "takhin_ws", "--port", str(self.port), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + SOON / 1000
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the server did not become ready on port {self.port}:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no Close frames, the browser just loses the connection."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGCONT)  # in case a failed test left it paused
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


ServerFactory = Callable[..., ServerProcess]


@contextmanager
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers (``make(*flags)``); every one is stopped at the end."""
    servers: list[ServerProcess] = []

    def make(*args: str, ready: bool = True) -> ServerProcess:
        server = ServerProcess(
            _free_port(), tmp_path / f"server-{len(servers)}.log", *args, ready=ready
        )
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


# --- the browser ---


class ConsoleWatch:
    """Every console error and uncaught exception of the page.

    ``network_down`` is set by the test while it makes connections fail on purpose;
    only then are Chromium's own connection-failure messages expected.
    """

    def __init__(self) -> None:
        self.network_down = False
        #: the page's /readyz answers 503 on purpose (the test's server is unready)
        self.unready = False
        self.problems: list[str] = []
        self.tolerated: list[str] = []

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.network_down and NETWORK_ERROR.match(message.text):
            self.tolerated.append(message.text)
            return
        if self.unready and message.text == UNREADY_ERROR:
            self.tolerated.append(message.text)
            return
        self.problems.append(f"console.{message.type}: {message.text} ({message.location})")

    def _page_error(self, error: PlaywrightError) -> None:
        self.problems.append(f"uncaught: {error.name}: {error.message}\n{error.stack}")

    def assert_clean(self) -> None:
        assert self.problems == [], "the page logged errors:\n" + "\n".join(self.problems)


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = (
        f"{CHROMIUM} not found: install Debian's chromium package "
        "(apt-get install chromium, or run .ci/install-system-deps)"
    )
    if os.environ.get(REQUIRE_BROWSER):
        pytest.fail(f"{reason}; {REQUIRE_BROWSER} is set, so the browser tests must run")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Browser]:
    """The headless browser (skips, or fails under CI, without it)."""
    _require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Frames:
    """The text frames a page's WebSockets sent and received, parsed."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    def attach(self, page: Page) -> None:
        page.on("websocket", self._websocket)

    def _websocket(self, ws: WebSocket) -> None:
        self.urls.append(ws.url)
        ws.on("framesent", lambda payload: self.sent.append(orjson.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(orjson.loads(payload)))

    def received_types(self) -> list[str]:
        return [m["type"] for m in self.received]


def open_page(
    browser: Browser,
    url: str,
    *,
    network_down: bool = False,
    unready: bool = False,
    viewport: ViewportSize = WIDE,
) -> tuple[Page, ConsoleWatch, Frames]:
    page = browser.new_page(viewport=viewport)
    watch = ConsoleWatch()
    watch.network_down = network_down
    watch.unready = unready
    watch.attach(page)
    frames = Frames()
    frames.attach(page)
    page.goto(url)
    return page, watch, frames


# --- a scripted WebSocket peer ---


def wire(payload: Payload, **envelope: Any) -> str:
    return encode(Envelope(payload=payload, timestamp=int(time.time()), **envelope)).decode()


WELCOME = Welcome(
    protocol=1,
    client_id="c9",
    epoch="e1",
    channels=("groups", "metrics:lean", "topics"),
    heartbeat=Heartbeat(interval=54.0, timeout=60.0),
    limits=Limits(queue_size=256, max_message_size=65536),
)


class ScriptedPeer:
    """The page's WebSocket, routed to the test (which plays the server); the page
    itself comes from a real server. ``received`` holds what the page sent."""

    def __init__(self, route: WebSocketRoute) -> None:
        self.route = route
        self.received: list[dict[str, Any]] = []
        route.on_message(self._message)

    def _message(self, message: str | bytes) -> None:
        self.received.append(orjson.loads(message))

    def send(self, frame: str) -> None:
        self.route.send(frame)


def scripted_page(
    browser: Browser, url: str, *, viewport: ViewportSize = WIDE
) -> tuple[Page, ConsoleWatch, ScriptedPeer]:
    page = browser.new_page(viewport=viewport)
    watch = ConsoleWatch()
    watch.attach(page)
    routes: list[WebSocketRoute] = []

    def on_route(route: WebSocketRoute) -> None:  # not connected on: the test is the server
        routes.append(route)

    page.route_web_socket(re.compile(r"/api/monitoring/ws"), on_route)
    page.goto(url)
    deadline = time.monotonic() + SOON / 1000
    while not routes and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert routes, "the page did not open its WebSocket"
    return page, watch, ScriptedPeer(routes[0])

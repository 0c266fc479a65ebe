"""The Takhin console's own dashboard against takhin-ws, end to end: a page that consumes
``/api/monitoring/ws`` exactly as that dashboard does (``console_page.html``: a plain
``new WebSocket(url)``, every frame ``JSON.parse``\\d as a bare MonitoringMetrics object
and read with no check) in a real headless Chromium, against a real
``python -m takhin_ws`` subprocess.

With ``--format bare`` (or ``?format=bare`` on a default server) the page reads live
numbers over several ticks and never throws; with ``?format=envelope`` it gets the 2.9
envelopes, welcome first, and throws exactly as the Takhin dashboard did against 2.9
(the failure the bare format exists to fix). ``GET /api/monitoring/metrics``, the
dashboard's ``getMonitoringMetrics()``, answers the same object as a bare frame. Behind
the nginx and Caddy snippets of docs/operations.md (run as written, ``proxies.py``) the
page, its WebSocket and its REST call share one origin, as the console's build and
takhin-ws do in production. takhin-ws's own page at ``/`` keeps working on a bare
server (it asks for the envelope).

Without a proxy the page runs in a document of the server's own origin, so
``location.host`` is the server's. The proxy tests skip when nginx or Caddy is not
installed. Every wait is a condition with a generous deadline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, WebSocket, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ConsoleWatch,
    ServerProcess,
    _free_port,
    _require_chromium,
    open_page,
)
from proxies import PUBLIC_HOST, Proxy, documented_flags

pytestmark = pytest.mark.slow

PAGE = Path(__file__).resolve().parent / "console_page.html"
#: A document of the server's origin, replaced by the page.
DOCUMENT_PATH = "/healthz"
#: The Takhin dashboard's own route (behind a proxy, any path not a file is the app).
CONSOLE_ROUTE = "/dashboard"
WS_PATH = "/api/monitoring/ws"
INTERVAL = "0.2"
TICKS = 6  # frames read before the page is judged: "several ticks"
SOON = 20_000  # ms: hang guard of every wait in the page
POLL = 50  # ms between two looks at what the page threw
SYNTHETIC_TOPICS = 5
SYNTHETIC_GROUPS = 3

#: The keys of a MonitoringMetrics object, at each level (the Takhin frontend's types).
METRICS_SHAPE: dict[str, set[str]] = {
    "": {"throughput", "latency", "topicStats", "consumerLags", "clusterHealth", "timestamp"},
    "throughput": {"produceRate", "fetchRate", "produceBytes", "fetchBytes"},
    "latency": {f"{op}P{q}" for op in ("produce", "fetch") for q in (50, 95, 99)},
    "clusterHealth": {
        "activeConnections",
        "totalTopics",
        "totalPartitions",
        "totalConsumers",
        "diskUsageBytes",
        "memoryUsageBytes",
        "goroutineCount",
    },
}
#: What the Takhin dashboard showed against the 2.9 envelope (a blank page, this error).
ENVELOPE_ERROR = "TypeError: Cannot read properties of undefined (reading 'produceRate')"


def assert_metrics_shape(metrics: Any) -> None:
    """*metrics* is a MonitoringMetrics object: every key, no other, numbers as numbers."""
    assert isinstance(metrics, dict), metrics
    assert set(metrics) == METRICS_SHAPE[""], sorted(metrics)
    for part, keys in METRICS_SHAPE.items():
        if part:
            assert set(metrics[part]) == keys, (part, sorted(metrics[part]))
            assert all(type(metrics[part][key]) in (int, float) for key in keys), metrics[part]
    assert type(metrics["timestamp"]) is int
    for topic in metrics["topicStats"]:
        assert set(topic) == {
            "name",
            "partitions",
            "totalMessages",
            "totalBytes",
            "produceRate",
            "fetchRate",
        }
    for group in metrics["consumerLags"]:
        # the 2.9 keys, and the lag insight's additive ones (the frontend ignores them)
        assert set(group) == {"groupId", "totalLag", "topicLags"} | {
            "lagSeconds",
            "status",
            "drainSeconds",
        }


@pytest.fixture
def browser() -> Iterator[Browser]:
    _require_chromium()
    with sync_playwright() as playwright:
        args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {PUBLIC_HOST} 127.0.0.1"]
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            browser.close()


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(*flags)``: a synthetic ``python -m takhin_ws`` ticking every
    ``INTERVAL`` s; every one is stopped at the end."""
    servers: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        args = (
            *("--interval", INTERVAL),
            *("--synthetic-topics", str(SYNTHETIC_TOPICS)),
            *("--synthetic-groups", str(SYNTHETIC_GROUPS)),
            *flags,
        )
        server = ServerProcess(_free_port(), tmp_path / f"server-{len(servers)}.log", *args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


class Console:
    """The page in a tab: its WebSocket URLs and everything it logged or threw."""

    def __init__(
        self, browser: Browser, origin: str, query: str = "", *, served: bool = False
    ) -> None:
        """The page at *origin*: put into a document of that origin (a page Playwright
        served itself would be refused loopback connections by Chromium's local network
        access checks), or *served* from there as it is (behind a proxy)."""
        self.page: Page = browser.new_page()
        self.watch = ConsoleWatch()
        self.watch.attach(self.page)
        self.ws_urls: list[str] = []
        self.page.on("websocket", self._on_websocket)
        self.page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        if served:
            self.page.goto(origin + CONSOLE_ROUTE + query)
        else:
            self.page.goto(origin + DOCUMENT_PATH + query)
            self.page.set_content(PAGE.read_text())

    def _on_websocket(self, ws: WebSocket) -> None:
        self.ws_urls.append(ws.url)

    def wait_frames(self, count: int) -> list[Any]:
        """The first *count* frames the page received, parsed."""
        try:
            self.page.wait_for_function("n => window.frames_.length >= n", arg=count, timeout=SOON)
        except PlaywrightTimeoutError:
            got = self.page.evaluate("window.frames_.length")
            pytest.fail(f"{got} of {count} frames; the page logged: {self.watch.problems}")
        raw: list[str] = self.page.evaluate("window.frames_")
        return [orjson.loads(frame) for frame in raw[:count]]

    def readings(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.page.evaluate("window.readings")
        return result

    def wait_uncaught(self, count: int) -> list[str]:
        """The page's uncaught errors once there are *count*, first line each."""
        deadline = time.monotonic() + SOON / 1000
        while len(self.watch.problems) < count and time.monotonic() < deadline:
            self.page.wait_for_timeout(POLL)
        return [p.split("\n")[0].removeprefix("uncaught: ") for p in self.watch.problems]


@pytest.mark.parametrize(
    ("flags", "query"),
    [(("--format", "bare"), ""), ((), "?format=bare")],
    ids=["server-bare", "default-server-query-bare"],
)
def test_the_console_dashboard_reads_live_metrics_from_bare_frames(
    browser: Browser, start_server: StartServer, flags: tuple[str, ...], query: str
) -> None:
    server = start_server(*flags)
    console = Console(browser, server.url, query)
    frames = console.wait_frames(TICKS)
    readings = console.readings()
    console.watch.assert_clean()  # no uncaught error, no console error, over every tick

    # a plain WebSocket: the page's host, the 2.9 path, no parameters of its own
    host = server.url.removeprefix("http://")
    assert console.ws_urls == [f"ws://{host}{WS_PATH}{query}"]
    # every frame is one MonitoringMetrics object: no welcome, no envelope
    for frame in frames:
        assert_metrics_shape(frame)
    # and the page read numbers from each
    assert len(readings) >= TICKS
    for reading in readings[:TICKS]:
        for key in ("produceRate", "fetchRate", "produceP99Ms", "fetchP99Ms"):
            assert type(reading[key]) in (int, float), reading
            assert reading[key] >= 0, reading
        # (the simulated cluster may create or delete a topic or group now and then)
        assert reading["totalTopics"] == len(reading["topics"]) > 0
        assert reading["totalConsumers"] == len(reading["groups"])  # groups, not members
        assert reading["time"] != "Invalid Date"
    # live: a new snapshot each tick (the first is the latest at connect)
    stamps = [frame["timestamp"] for frame in frames]
    assert stamps == sorted(stamps)
    assert len({orjson.dumps(frame["throughput"]) for frame in frames}) > 1
    assert console.page.inner_text("#total-topics") == str(console.readings()[-1]["totalTopics"])

    # getMonitoringMetrics(): the same object over HTTP, never cached
    answer: dict[str, Any] = console.page.evaluate("window.fetchMetrics()")
    console.watch.assert_clean()
    assert answer["status"] == 200, answer
    assert answer["cacheControl"] == "no-store"
    body = answer["body"]
    assert_metrics_shape(body)
    assert body["timestamp"] >= frames[-1]["timestamp"]
    assert [t["name"] for t in body["topicStats"]] == [t["name"] for t in frames[-1]["topicStats"]]
    assert [g["groupId"] for g in body["consumerLags"]] == readings[-1]["groups"]


def test_the_same_page_asking_for_envelopes_gets_the_2_9_protocol(
    browser: Browser, start_server: StartServer
) -> None:
    server = start_server("--format", "bare")
    console = Console(browser, server.url, "?format=envelope")
    frames = console.wait_frames(3)

    welcome, *rest = frames
    assert welcome["type"] == "welcome"
    for frame in frames:
        assert {"type", "data", "timestamp"} <= set(frame), frame
    metrics = [frame for frame in rest if frame["type"] == "metrics"]
    assert metrics, rest
    for frame in metrics:
        assert_metrics_shape(frame["data"])
    # the page cannot read an envelope: it throws on every frame, as the Takhin
    # dashboard did against 2.9 (what --format bare fixes)
    errors = console.wait_uncaught(len(frames))
    assert set(errors) == {ENVELOPE_ERROR}, errors
    assert console.readings() == []


def test_takhin_ws_own_dashboard_still_speaks_envelopes_on_a_bare_server(
    browser: Browser, start_server: StartServer
) -> None:
    """One server for both front ends: ``--format bare`` for the console's page, while
    takhin-ws's own page at ``/`` asks for the envelope and goes live."""
    server = start_server("--format", "bare")
    page, watch, frames = open_page(browser, server.url + "/")
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=SOON)
    expect(page.locator("#topics tbody tr[data-topic]").first).to_be_visible(timeout=SOON)
    watch.assert_clean()
    assert frames.urls
    assert all(parse_qs(urlsplit(url).query)["format"] == ["envelope"] for url in frames.urls)
    assert frames.received_types()[0] == "welcome"
    assert "metrics" in frames.received_types()


@pytest.fixture
def console_api(tmp_path: Path) -> Iterator[int]:
    """A stand-in for the console's API: answers 404 to everything (an empty directory
    served by ``python -m http.server``); its port."""
    port = _free_port()
    empty = tmp_path / "console-api"
    empty.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(empty),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("name", ["nginx", "caddy"])
def test_the_docs_proxy_serves_the_dashboard_and_takhin_ws_from_one_origin(
    browser: Browser,
    start_server: StartServer,
    console_api: int,
    tmp_path: Path,
    name: str,
) -> None:
    """The proxy snippet of docs/operations.md, as written: the page (as the console's
    build, ``index.html``) at its own route, its WebSocket and REST call to takhin-ws
    (``--format bare``, no Origin flag: the proxy keeps Host), other ``/api`` paths to
    the console, from one public origin with a name that is not localhost."""
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(PAGE, dist / "index.html")
    server = start_server(*documented_flags())
    proxy = Proxy(name, _free_port(), server.port, console_api, dist)
    try:
        proxy.start()
        origin = f"http://{proxy.host}"
        console = Console(browser, origin, served=True)
        frames = console.wait_frames(TICKS)
        answer: dict[str, Any] = console.page.evaluate("window.fetchMetrics()")
        other = httpx.get(proxy.url("/api/topics"), headers={"Host": proxy.host}, timeout=10.0)
    finally:
        proxy.stop()
    console.watch.assert_clean()
    assert console.ws_urls == [f"ws://{proxy.host}{WS_PATH}"]
    for frame in frames:
        assert_metrics_shape(frame)
    assert console.readings()[0]["totalTopics"] > 0
    assert answer["status"] == 200, answer
    assert answer["cacheControl"] == "no-store"
    assert_metrics_shape(answer["body"])
    # the console's other routes go to the console (here: its stand-in)
    assert other.status_code == 404
    assert "File not found" in other.text, other.text  # http.server's page, not the proxy's

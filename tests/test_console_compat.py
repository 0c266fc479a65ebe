"""The Takhin console's own dashboard against takhin-ws, end to end: a page that consumes
``/api/monitoring/ws`` exactly as that dashboard does (``console_page.html``: a plain
``new WebSocket(url)``, every frame ``JSON.parse``\\d as a bare MonitoringMetrics object
and read with no check) in a real headless Chromium, against a real
``python -m takhin_ws`` subprocess.

With ``--format bare`` (or ``?format=bare`` on a default server) the page reads live
numbers over several ticks and never throws; with ``?format=envelope`` it gets the 2.9
envelopes, welcome first, and throws exactly as the Takhin dashboard did against 2.9
(the failure the bare format exists to fix).

The page runs in a document of the server's origin, so ``location.host`` is the
server's, as when the console serves its dashboard beside takhin-ws. Every wait is a
condition with a generous deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, WebSocket, sync_playwright

from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ConsoleWatch,
    ServerProcess,
    _free_port,
    _require_chromium,
)

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
        assert set(group) == {"groupId", "totalLag", "topicLags"}


@pytest.fixture
def browser() -> Iterator[Browser]:
    _require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
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
        self.page.wait_for_function("n => window.frames_.length >= n", arg=count, timeout=SOON)
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

"""The dashboard (``GET /``) end to end: a real headless Chromium against a real
``python -m takhin_ws`` subprocess (synthetic source).

Chromium is Debian's ``chromium`` package at ``/usr/bin/chromium``, driven by
Playwright for Python (never ``playwright install``). Without that browser the tests
skip, unless ``TAKHIN_WS_REQUIRE_BROWSER`` is set (CI sets it): then they fail.

Three tests: the live page against a server that is paused, killed and restarted;
the API key prompt against a server started with ``--api-key``; and, with the page's
WebSocket routed to the test itself, the messages a real server rarely sends on cue
(``stale: true``, ``gap``, a repeated offset).

Every wait is a condition with a generous deadline (a hang guard, not a timing
assertion). The page must not log a JavaScript error or throw at any point; the only
console errors tolerated are the browser's own network errors while the test has the
server down (or refusing the upgrade) on purpose.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    WebSocket,
    WebSocketRoute,
    expect,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

from takhin_ws._codec import encode
from takhin_ws._messages import (
    Envelope,
    EpochChanged,
    Gap,
    Heartbeat,
    Latency,
    Limits,
    MonitoringMetrics,
    Payload,
    Subscribed,
    Throughput,
    TopicCreated,
    TopicStats,
    Welcome,
)

pytestmark = pytest.mark.slow

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
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
#: Set to 1 to refresh docs/dashboard.png; otherwise the screenshot goes to a temp dir.
UPDATE_SCREENSHOT = "TAKHIN_WS_UPDATE_SCREENSHOT"
PUBLISH_KEY = "k"
INTERVAL = "0.5"

#: Deadlines (ms) of the waits: hang guards, generous for slow CI machines.
SOON = 20_000
RECONNECT = 60_000  # backoff is capped at 30 s

#: What Chromium itself logs when a connection fails (not the page's JavaScript).
NETWORK_ERROR = re.compile(
    r"^(WebSocket connection to 'ws://127\.0\.0\.1:\d+/api/monitoring/ws\?[^']*' failed"
    r"|Failed to load resource: net::ERR_CONNECTION_REFUSED"
    r"|Failed to load resource: net::ERR_CONNECTION_RESET)"
)


# --- the server subprocess ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``python -m takhin_ws`` on a fixed port; can be killed and started again."""

    def __init__(self, port: int, log_path: Path, *args: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

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
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
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


# --- the browser ---


class ConsoleWatch:
    """Every console error and uncaught exception of the page.

    ``network_down`` is set by the test while it makes connections fail on purpose;
    only then are Chromium's own connection-failure messages expected.
    """

    def __init__(self) -> None:
        self.network_down = False
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


@pytest.fixture
def browser() -> Iterator[Browser]:
    _require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers (``make(*flags)``); every one is stopped at the end."""
    servers: list[ServerProcess] = []

    def make(*args: str) -> ServerProcess:
        server = ServerProcess(_free_port(), tmp_path / f"server-{len(servers)}.log", *args)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


def _open(
    browser: Browser, url: str, *, network_down: bool = False
) -> tuple[Page, ConsoleWatch, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = ConsoleWatch()
    watch.network_down = network_down
    watch.attach(page)
    ws_urls: list[str] = []

    def on_websocket(ws: WebSocket) -> None:
        ws_urls.append(ws.url)

    page.on("websocket", on_websocket)
    page.goto(url)
    return page, watch, ws_urls


def _readings(page: Page) -> dict[str, str]:
    """The numbers the page shows for throughput and latency right now."""
    ids = [
        "tp-produce-rate",
        "tp-fetch-rate",
        "tp-produce-bytes",
        "tp-fetch-bytes",
        *(f"lat-{op}-p{q}" for op in ("produce", "fetch") for q in (50, 95, 99)),
    ]
    result: dict[str, str] = page.evaluate(
        "ids => Object.fromEntries(ids.map(id => [id, document.getElementById(id).textContent]))",
        ids,
    )
    return result


def _samples(page: Page) -> int:
    return int(page.get_attribute("#chart-msgs", "data-samples") or 0)


def _wait_for_samples(page: Page, more_than: int, timeout: float = SOON) -> None:
    page.wait_for_function(
        "n => Number(document.getElementById('chart-msgs').dataset.samples) > n",
        arg=more_than,
        timeout=timeout,
    )


def _publish(server: ServerProcess, *events: dict[str, object]) -> list[dict[str, Any]]:
    """POST one event (as a JSON object) or several (as a list); the 202's items."""
    response = httpx.post(
        server.url + "/api/events",
        headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
        json=events[0] if len(events) == 1 else list(events),
        timeout=10.0,
    )
    assert response.status_code == 202, response.text
    accepted: list[dict[str, Any]] = response.json()["accepted"]
    assert len(accepted) == len(events)
    return accepted


def _event(kind: str, **data: object) -> dict[str, object]:
    return {"type": kind, "data": data, "timestamp": int(time.time())}


# --- the tests ---


def test_dashboard_live_events_stale_and_reconnect(
    browser: Browser, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--interval", INTERVAL, "--publish-key", PUBLISH_KEY)
    page, watch, ws_urls = _open(browser, server.url + "/")
    state = page.locator("#conn-state")

    # live, and the topic table fills from the synthetic source
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    rows = page.locator("#topics tbody tr[data-topic]")
    expect(rows.first).to_be_visible(timeout=SOON)
    assert rows.count() >= 3
    for row in rows.all():
        name, partitions, messages = (row.locator("td").nth(i).inner_text() for i in range(3))
        assert name
        assert int(partitions) > 0
        assert int(messages.replace(",", "")) > 0
    expect(page.locator("#groups tbody tr[data-group]").first).to_be_visible(timeout=SOON)

    # the chart and the numbers keep moving
    before, samples, image = _readings(page), _samples(page), page.locator("#chart-msgs")
    pixels = image.evaluate("c => c.toDataURL()")
    _wait_for_samples(page, samples + 3)
    page.wait_for_function(
        """before => ["produce", "fetch"].some(op => [50, 95, 99].some(q =>
             document.getElementById(`lat-${op}-p${q}`).textContent !== before[`lat-${op}-p${q}`]))
           && ["tp-produce-rate", "tp-fetch-rate", "tp-produce-bytes", "tp-fetch-bytes"].some(
             id => document.getElementById(id).textContent !== before[id])""",
        arg=before,
        timeout=SOON,
    )
    after = _readings(page)
    assert after != before
    assert all(re.fullmatch(r"[0-9.]+", after[f"lat-{op}-p50"]) for op in ("produce", "fetch"))
    assert image.evaluate("c => c.toDataURL()") != pixels

    # events published over HTTP appear in the log with their offsets
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    group = f"e2e-group-{uuid.uuid4().hex[:6]}"
    (created,) = _publish(server, _event("topic_created", name=topic, partitions=3))
    entry = page.locator(
        f'#event-log li[data-type="topic_created"][data-offset="{created["offset"]}"]'
    )
    expect(entry).to_contain_text(topic, timeout=SOON)
    expect(entry).to_contain_text(f"topics #{created['offset']}")
    batch = _publish(
        server,
        _event("group_created", groupId=group, state="PreparingRebalance", members=0),
        _event("group_updated", groupId=group, state="Stable", members=3),
    )
    for item in batch:
        expect(
            page.locator(f'#event-log li[data-stream="groups"][data-offset="{item["offset"]}"]')
        ).to_contain_text(group, timeout=SOON)

    # the screenshot docs/ uses: some chart, the events in the log
    _wait_for_samples(page, 36, timeout=RECONNECT)
    shot = DOCS_SCREENSHOT if os.environ.get(UPDATE_SCREENSHOT) == "1" else tmp_path / "dash.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # no metrics for more than three intervals: stale data, then live again
    server.pause()
    try:
        expect(state).to_have_attribute("data-state", "stale", timeout=SOON)
        expect(page.locator("#conn-label")).to_have_text("stale data")
    finally:
        server.resume()
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)

    # the server dies: reconnecting with a countdown, retrying on its own (attempt 3
    # is only shown after two refused attempts)...
    epoch = page.get_attribute("#session-meta", "data-epoch")
    assert epoch
    expect(page.locator("#log-notice")).to_be_hidden()
    watch.network_down = True
    server.kill()
    expect(state).to_have_attribute("data-state", "reconnecting", timeout=SOON)
    expect(page.locator("#conn-detail")).to_contain_text(
        re.compile(r"attempt ([3-9]|\d\d+)"), timeout=RECONNECT
    )
    # ...and back to live when the server is back on the same port
    server.start()
    expect(state).to_have_attribute("data-state", "live", timeout=RECONNECT)

    # it asked to resume after what it had seen, in the old epoch
    query = parse_qs(urlsplit(ws_urls[-1]).query)
    assert query.get("epoch") == [epoch], ws_urls[-1]
    assert "since" in query, ws_urls[-1]
    since = dict(part.split(":") for part in query["since"][0].split(","))
    assert int(since["topics"]) >= created["offset"]
    assert int(since["groups"]) >= batch[-1]["offset"]
    # a new server run cannot replay: the log says events were missed
    expect(page.locator("#log-notice")).to_be_visible(timeout=SOON)
    expect(page.locator("#event-log li.marker").first).to_contain_text("missing")
    watch.network_down = False
    expect(entry).to_be_visible()  # what was seen stays
    assert page.get_attribute("#session-meta", "data-epoch") != epoch

    # and the data flows again
    _wait_for_samples(page, _samples(page) + 2)
    expect(rows.first).to_be_visible()
    watch.assert_clean()
    assert watch.tolerated, "expected the browser to report the refused connections"


def test_dashboard_asks_for_the_api_key_once(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--interval", INTERVAL, "--api-key", "s3cret")
    # the upgrade is refused (401) until the key is entered
    page, watch, ws_urls = _open(browser, server.url + "/", network_down=True)
    state = page.locator("#conn-state")

    banner = page.locator("#auth-banner")
    expect(banner).to_be_visible(timeout=SOON)
    expect(banner).to_contain_text("API key")
    expect(state).to_have_attribute("data-state", "reconnecting")
    page.fill("#api-key", "s3cret")
    page.click("#key-form button[type=submit]")
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    assert parse_qs(urlsplit(ws_urls[-1]).query)["token"] == ["s3cret"]
    watch.network_down = False
    expect(page.locator("#topics tbody tr[data-topic]").first).to_be_visible(timeout=SOON)

    # entered once: the tab remembers it
    assert page.evaluate("sessionStorage.getItem('takhin-ws.apiKey')") == "s3cret"
    page.reload()
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    watch.assert_clean()


def _wire(payload: Payload, **envelope: Any) -> str:
    return encode(Envelope(payload=payload, timestamp=int(time.time()), **envelope)).decode()


def _metrics(offset: int, produce_rate: float, *, stale: bool = False) -> str:
    payload = MonitoringMetrics(
        throughput=Throughput(produce_rate=produce_rate, fetch_rate=produce_rate / 2),
        latency=Latency(produce_p50=0.002, produce_p95=0.008, produce_p99=0.030),
        topic_stats=(
            TopicStats(
                name="scripted",
                partitions=4,
                total_messages=1000 + offset,
                total_bytes=10_000,
                produce_rate=produce_rate,
                fetch_rate=0.0,
            ),
        ),
    )
    return _wire(payload, channel="metrics", offset=offset, epoch="e1", stale=stale)


def _topic_created(name: str, offset: int) -> str:
    return _wire(TopicCreated(name=name, partitions=1), channel="topics", offset=offset, epoch="e1")


def test_dashboard_handles_stale_flag_gap_and_duplicates(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """Messages a real server rarely sends on cue, from a scripted WebSocket peer (the
    page still comes from a real server; its WebSocket is routed to the test)."""
    server = server_factory("--interval", INTERVAL)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = ConsoleWatch()
    watch.attach(page)
    routes: list[WebSocketRoute] = []

    def on_route(route: WebSocketRoute) -> None:  # not connected on: the test is the server
        routes.append(route)

    page.route_web_socket(re.compile(r"/api/monitoring/ws"), on_route)
    page.goto(server.url + "/")
    deadline = time.monotonic() + SOON / 1000
    while not routes and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert routes, "the page did not open its WebSocket"
    peer = routes[0]
    state = page.locator("#conn-state")
    log = page.locator("#event-log")

    welcome = Welcome(
        protocol=1,
        client_id="c9",
        epoch="e1",
        channels=("groups", "metrics", "topics"),
        heartbeat=Heartbeat(interval=54.0, timeout=60.0),
        limits=Limits(queue_size=256, max_message_size=65536),
    )
    peer.send(_wire(welcome))
    peer.send(_metrics(1, 100.0))
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(page.locator('#topics tr[data-topic="scripted"]')).to_contain_text("1,001")
    expect(page.locator("#lat-produce-p99")).to_have_text("30.0")

    # the server marks a snapshot stale (its source is failing): stale at once
    peer.send(_metrics(2, 100.0, stale=True))
    expect(state).to_have_attribute("data-state", "stale", timeout=SOON)
    expect(page.locator("#conn-detail")).to_contain_text("source failing")
    peer.send(_metrics(3, 250.0))
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(page.locator("#tp-produce-rate")).to_have_text("250")

    # events in order; a repeated offset is shown once
    peer.send(_topic_created("first", 1))
    peer.send(_topic_created("first", 1))
    expect(log.locator('li[data-offset="1"]')).to_contain_text("first", timeout=SOON)
    # a gap on an event stream: the log says events were missed
    expect(page.locator("#log-notice")).to_be_hidden()
    peer.send(_wire(Gap(channel="topics", first_offset=2, last_offset=4, count=3)))
    expect(page.locator("#log-notice")).to_be_visible(timeout=SOON)
    expect(page.locator("#log-notice")).to_contain_text("3 topics event(s) dropped")
    expect(log.locator("li.marker")).to_contain_text("topics #2\N{EN DASH}4")
    peer.send(_topic_created("after-gap", 5))
    expect(log.locator('li[data-offset="5"]')).to_contain_text("after-gap", timeout=SOON)
    assert log.locator('li[data-offset="1"]').count() == 1
    # a gap on metrics loses nothing the page keeps: no notice for it
    page.click("#log-notice-dismiss")
    peer.send(_wire(Gap(channel="metrics", first_offset=4, last_offset=9, count=6)))
    peer.send(_wire(Subscribed(channels=("metrics",), recovered={"topics": True})))
    peer.send(_metrics(10, 300.0))
    expect(page.locator("#tp-produce-rate")).to_have_text("300", timeout=SOON)
    expect(page.locator("#log-notice")).to_be_hidden()
    # the offsets restart under a new epoch (Redis lost them): adopted, and said
    lost = {"topics": False, "groups": False}
    peer.send(_wire(EpochChanged(epoch="e2", previous="e1", recovered=lost)))
    expect(page.locator("#log-notice")).to_be_visible(timeout=SOON)
    expect(page.locator("#log-notice")).to_contain_text("new epoch e2")
    expect(page.locator("#session-meta")).to_have_attribute("data-epoch", "e2")
    reborn = TopicCreated(name="new-epoch", partitions=1)
    peer.send(_wire(reborn, channel="topics", offset=1, epoch="e2"))
    expect(log.locator('li[data-offset="1"]', has_text="new-epoch")).to_have_count(1, timeout=SOON)
    watch.assert_clean()

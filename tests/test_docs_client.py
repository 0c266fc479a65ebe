"""The browser code of docs/websocket-api.md, run as written in a real headless
Chromium: the sample reconnecting client against a real cluster node
(``python -m takhin_ws --redis-url``) on a real ``redis-server`` that restarts empty
under it, against a server defaulting to ``--format bare``, and against a scripted peer
sending a burst of gaps; the refusal probe against a real server that refuses.

The page only supplies what the sample leaves to its reader (``refetch``, ``apply``,
``render``); they record their calls. Every wait is a condition with a generous
deadline (a hang guard, not a timing assertion).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets.sync.client
from playwright.sync_api import Browser, Page, WebSocketRoute, sync_playwright

from browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    WELCOME,
    ServerFactory,
    _require_chromium,
    chromium,
    servers,
    wire,
)
from redis_server import Node, RedisServer
from takhin_ws.protocol import Gap

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parent.parent / "docs" / "websocket-api.md"
SECTION = "### A client that reconnects with backoff and jitter"
SOON = 20_000  # ms: hang guard of every wait in the page

#: What the sample leaves to the application: each call is recorded in ``calls``.
HARNESS = """
window.calls = [];
function refetch(stream) { calls.push({ refetch: stream }); }
function apply(msg) { calls.push({ apply: msg.data.name, offset: msg.offset, epoch: msg.epoch }); }
function render(data, stale) { calls.push({ render: stale }); }
"""


def sample_client() -> str:
    """The JavaScript block of the docs' sample client section."""
    return js_block_under(SECTION)


def js_block_under(heading: str) -> str:
    text = DOC.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```js\n(.*?)```", section, re.S)
    assert match, f"no js block under {heading!r}"
    return match.group(1)


@pytest.fixture
def node(redis: RedisServer, tmp_path: Path) -> Iterator[Node]:
    if not redis.ping():
        redis.start()
    redis.command("FLUSHALL")
    node = Node("A", redis.url, tmp_path / "node.log")
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def calls(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate("window.calls")
    return result


def wait_applied(page: Page, name: str) -> None:
    page.wait_for_function(
        "name => window.calls.some(c => c.apply === name)", arg=name, timeout=SOON
    )


def test_the_docs_client_follows_a_new_epoch(node: Node, redis: RedisServer) -> None:
    _require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
            page.goto(node.url + "/healthz")  # a document of the node's origin
            page.add_script_tag(content=HARNESS + sample_client())
            page.wait_for_function("state.epoch !== null", timeout=SOON)
            old_epoch = page.evaluate("state.epoch")

            before = node.publish_topic("before")
            wait_applied(page, "before")
            redis.restart()  # empty: persistence is off
            node.wait_ready()
            after = node.publish_topic("after")
            wait_applied(page, "after")
            new_epoch = page.evaluate("state.epoch")
            last = page.evaluate("state.last")
            seen = calls(page)
        finally:
            browser.close()
    assert errors == []  # the sample never threw
    assert new_epoch != old_epoch
    # (the node's synthetic source may add events of its own: only ours are looked at)
    ours = [c for c in seen if "refetch" in c or c.get("apply") in ("before", "after")]
    assert ours == [
        {"apply": "before", "offset": before, "epoch": old_epoch},
        {"refetch": "topics"},
        {"refetch": "groups"},
        {"apply": "after", "offset": after, "epoch": new_epoch},
    ]
    assert last["topics"] >= after  # a reconnect resumes from the new epoch's offsets


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def make(tmp_path: Path) -> Iterator[ServerFactory]:
    with servers(tmp_path) as factory:
        yield factory


def test_the_docs_client_asks_for_envelopes_from_a_bare_server(
    browser: Browser, make: ServerFactory
) -> None:
    """operations.md runs the server with --format bare for the Takhin console; the
    sample still gets its welcome and envelopes, because it asks for them."""
    server = make("--format", "bare", "--interval", "0.5")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    page.goto(server.url + "/healthz")
    page.add_script_tag(content=HARNESS + sample_client())
    page.wait_for_function("state.epoch !== null", timeout=SOON)
    page.wait_for_function("window.calls.some(c => c.render === false)", timeout=SOON)
    assert errors == []


def test_the_docs_client_refetches_once_per_burst_of_gaps(
    browser: Browser, make: ServerFactory
) -> None:
    """A client that fell behind gets a gap per overflow (33 in a burst): the sample
    refetches each stream once for the burst, and again for a later gap."""
    server = make("--interval", "3600")
    page = browser.new_page()
    routes: list[WebSocketRoute] = []
    page.route_web_socket(re.compile(r"/api/monitoring/ws"), lambda r: routes.append(r))
    page.goto(server.url + "/healthz")
    page.add_script_tag(content=HARNESS + sample_client())
    deadline = time.monotonic() + SOON / 1000
    while not routes and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    (peer,) = routes
    peer.send(wire(WELCOME))
    page.wait_for_function("state.epoch === 'e1'", timeout=SOON)
    for n in range(33):
        stream = "topics" if n % 3 else "groups"
        peer.send(wire(Gap(channel=stream, first_offset=n + 1, last_offset=n + 1, count=1)))
    page.wait_for_function(
        "['topics', 'groups'].every(s => calls.some(c => c.refetch === s))"
        " && Object.keys(state.refetching).length === 0",
        timeout=SOON,
    )
    assert sorted(c["refetch"] for c in calls(page) if "refetch" in c) == ["groups", "topics"]
    assert page.evaluate("state.last") == {"topics": 33, "groups": 31}
    peer.send(wire(Gap(channel="topics", first_offset=40, last_offset=41, count=2)))
    page.wait_for_function("calls.filter(c => c.refetch === 'topics').length === 2", timeout=SOON)


#: The probe of "Telling refusals apart in a browser", and a way to run it.
PROBE = "Telling refusals apart in a browser"


def test_the_docs_probe_tells_refusals_apart(browser: Browser, make: ServerFactory) -> None:
    server = make("--interval", "3600", "--api-key", "k", "--max-clients", "1")
    page = browser.new_page()
    page.goto(server.url + "/healthz")
    page.add_script_tag(content=js_block_under(PROBE) + "\nwindow.whyRefused = whyRefused;")
    ws = server.url.replace("http://", "ws://") + "/api/monitoring/ws"

    def why(url: str, key: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = page.evaluate("([u, k]) => whyRefused(u, k)", [url, key])
        return answer

    assert why(ws, None) == {"status": 401, "reason": "missing or wrong API key"}
    assert why(ws + "?token=wrong", "k") == {"status": 426, "reason": "would be admitted: retry"}
    assert why(ws + "?channels=no-such:thing", "k")["status"] == 400
    with websockets.sync.client.connect(ws + "?token=k", open_timeout=10) as occupant:
        occupant.recv(timeout=10)  # welcome: the one place is taken
        full = why(ws, "k")
    assert full == {"status": 503, "reason": "connection limit reached (1 clients)"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    assert why(f"ws://127.0.0.1:{dead}/api/monitoring/ws", "k") == {
        "status": 0,
        "reason": "unreachable",
    }

"""The sample reconnecting client of docs/websocket-api.md, run as written in a real
headless Chromium, against a real cluster node (``python -m takhin_ws --redis-url``)
on a real ``redis-server`` that restarts empty under it.

The page only supplies what the sample leaves to its reader (``refetch``, ``apply``,
``render``); they record their calls. Every wait is a condition with a generous
deadline (a hang guard, not a timing assertion).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from browser import CHROMIUM, CHROMIUM_ARGS, _require_chromium
from redis_server import Node, RedisServer

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parent.parent / "docs" / "websocket-api.md"
SECTION = "### A client that reconnects with backoff and jitter"
SOON = 20_000  # ms: hang guard of every wait in the page

#: What the sample leaves to the application: each call is recorded in ``calls``.
HARNESS = """
window.calls = [];
function refetch(stream) { calls.push({ refetch: stream }); }
function apply(msg) { calls.push({ apply: msg.data.name, offset: msg.offset, epoch: msg.epoch }); }
function render(data, stale) {}
"""


def sample_client() -> str:
    """The JavaScript block of the docs' sample client section."""
    text = DOC.read_text()
    section = text[text.index(SECTION) :]
    match = re.search(r"```js\n(.*?)```", section, re.S)
    assert match, f"no js block under {SECTION!r}"
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

"""The dashboard with signed tokens, in a real headless Chromium against a real
``python -m takhin_ws --token-secret ...`` subprocess: a token that expires during the
test and is refreshed in place (fetched from ``--token-url``), and one that is not
refreshed, so the server closes with 4001, and the page resumes with a new token
(entered by the user) without losing an event published meanwhile.

Every wait is a condition with a generous deadline (a hang guard, not a timing
assertion)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from browser import SOON, ConsoleWatch, Frames, ServerFactory, ServerProcess, chromium, servers
from tokens import SECRET, mint

pytestmark = pytest.mark.slow

PUBLISH_KEY = "publish-key-1"
TOKEN_PATH = "/auth/ws-token"
#: The page's claim: every channel it asks for, but only the topics named orders*.
CLAIM = ["metrics", "topic:orders*", "groups"]
#: Seconds a first token lives, and how long before its end the server warns.
FIRST_TTL = 8
NOTICE = "4"
#: Fast heartbeat sweeps (every 0.1 s), so the notice and the close come on time.
FLAGS = ("--interval", "0.5", "--ping-interval", "2", "--ping-timeout", "4")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    with servers(tmp_path) as make:
        yield make


def _page(browser: Browser, url: str, route: Any = None) -> tuple[Page, ConsoleWatch, Frames]:
    page = browser.new_page()
    watch = ConsoleWatch()
    watch.attach(page)
    frames = Frames()
    frames.attach(page)
    if route is not None:
        page.route(f"**{TOKEN_PATH}", route)
    page.goto(url)
    return page, watch, frames


def _publish(server: ServerProcess, *names: str) -> list[dict[str, Any]]:
    body = [{"type": "topic_created", "data": {"name": n, "partitions": 1}} for n in names]
    response = httpx.post(
        server.url + "/api/events",
        headers={"Authorization": f"Bearer {PUBLISH_KEY}"},
        json=body,
        timeout=10.0,
    )
    assert response.status_code == 202, response.text
    accepted: list[dict[str, Any]] = response.json()["accepted"]
    return accepted


def _logged(page: Page, offset: int) -> None:
    entry = page.locator(f'#event-log li[data-stream="topics"][data-offset="{offset}"]')
    expect(entry).to_have_count(1, timeout=SOON)


def _wait_past(page: Page, unix_seconds: int) -> None:
    page.wait_for_function("t => Date.now() / 1000 > t", arg=unix_seconds, timeout=SOON)


def test_an_expiring_token_is_refreshed_in_place(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory(
        *FLAGS,
        "--token-secret",
        SECRET,
        "--token-url",
        TOKEN_PATH,
        "--token-expiry-notice",
        NOTICE,
        "--publish-key",
        PUBLISH_KEY,
    )
    fetched: list[str] = []

    def issue(route: Route) -> None:
        token = mint(CLAIM, ttl=300)
        fetched.append(token)
        route.fulfill(json={"token": token})

    first = mint(CLAIM, ttl=FIRST_TTL)
    expires = int(time.time()) + FIRST_TTL
    page, watch, frames = _page(browser, f"{server.url}/?token={first}", issue)
    state = page.locator("#conn-state")
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)

    # the notice comes, the page fetches a token and refreshes: same connection
    page.wait_for_function(
        "() => !!document.getElementById('conn-state').dataset.tokenExpires", timeout=SOON
    )
    assert len(fetched) == 1
    refresh = [m for m in frames.sent if m["type"] == "refresh"]
    assert [m["data"]["token"] for m in refresh] == fetched
    refreshed = [m for m in frames.received if m["type"] == "refreshed"]
    assert len(refreshed) == 1
    assert refreshed[0]["data"]["expiresAt"] > expires
    assert page.evaluate("sessionStorage.getItem('takhin-ws.apiKey')") == fetched[0]

    # past the first token's expiry: still the one connection, still live, and events
    # of the claim's topics arrive while the others never do
    _wait_past(page, expires + 1)
    hidden, shown = _publish(server, "payments", "orders.eu")
    _logged(page, shown["offset"])
    hidden_entry = f'#event-log li[data-stream="topics"][data-offset="{hidden["offset"]}"]'
    expect(page.locator(hidden_entry)).to_have_count(0)  # (groups has offsets of its own)
    expect(state).to_have_attribute("data-state", "live")
    assert len(frames.urls) == 1
    assert not any(m["type"] == "welcome" for m in frames.received[1:])
    watch.assert_clean()


def test_an_expired_token_reconnects_with_a_new_one_and_loses_nothing(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory(
        *FLAGS,
        "--token-secret",
        SECRET,
        "--token-expiry-notice",
        NOTICE,
        "--publish-key",
        PUBLISH_KEY,
    )
    first = mint(CLAIM, ttl=FIRST_TTL)
    page, watch, frames = _page(browser, f"{server.url}/?token={first}")
    state = page.locator("#conn-state")
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    before = _publish(server, "orders.before")[0]
    _logged(page, before["offset"])

    # no --token-url: the notice asks the user; nobody answers, the server closes (4001)
    banner = page.locator("#auth-banner")
    expect(banner).to_be_visible(timeout=SOON)
    expect(banner).to_contain_text("token")
    expired = page.locator("#event-log li.system", has_text="the access token expired")
    expect(expired).to_have_count(1, timeout=SOON)
    expect(state).not_to_have_attribute("data-state", "live")

    assert len(frames.urls) == 1  # no attempt with the expired token
    # events while the page is disconnected
    missed = _publish(server, "orders.missed-1", "orders.missed-2")

    # a new token: the page reconnects, resuming after the last offset it saw
    page.fill("#api-key", mint(CLAIM, ttl=300))
    page.click("#key-form button[type=submit]")
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    for item in missed:
        _logged(page, item["offset"])
    query = parse_qs(urlsplit(frames.urls[1]).query)
    since = dict(part.split(":") for part in query["since"][0].split(","))
    assert before["offset"] <= int(since["topics"]) < missed[0]["offset"]
    after = _publish(server, "orders.after")[0]
    _logged(page, after["offset"])
    watch.assert_clean()

"""The dashboard (``GET /``) end to end: a real headless Chromium against a real
``python -m takhin_ws`` subprocess (synthetic source). Helpers: ``browser.py``.

The live page against a server that is paused, killed and restarted (stale view,
reconnect, resume); the API key prompt; a consumer group's drill-down with its
partition lags (the page receives partition detail only for what is open); a
1,000-topic, 300-group cluster; and a reload that shows the charts' history at once.
The scripted-peer tests (exact data, rare messages, a phone's screen) are in
``test_dashboard_scripted.py``.

The page must not log a JavaScript error or throw at any point; the only console
errors tolerated are the browser's own network errors while the test has the server
down (or refusing the upgrade) on purpose.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets.sync.client
from playwright.sync_api import Browser, Page, expect

from browser import (
    NARROW,
    RECONNECT,
    SOON,
    ConsoleWatch,
    ServerFactory,
    ServerProcess,
    chromium,
    open_page,
    screenshot_path,
    servers,
)

pytestmark = pytest.mark.slow

PUBLISH_KEY = "k"
INTERVAL = "0.5"
#: Samples that fill the charts' narrowest window (30 s) at INTERVAL.
FULL_CHART = 62
#: What the page asks for: the lean metrics view and both event streams, as envelopes.
PAGE_CHANNELS = "metrics:lean,topics,groups"


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    with servers(tmp_path) as make:
        yield make


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


def _no_page_overflow(page: Page) -> None:
    width, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width <= client, f"the page scrolls sideways: {width} px wide in {client} px"


# --- the tests ---
def test_dashboard_live_events_stale_and_reconnect(
    browser: Browser, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--interval", INTERVAL, "--publish-key", PUBLISH_KEY)
    page, watch, frames = open_page(browser, server.url + "/")
    ws_urls = frames.urls
    state = page.locator("#conn-state")

    # live, and the topic table fills from the synthetic source, marked as simulated
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    badge = page.locator("#source-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("simulated data")
    expect(badge).to_have_attribute("data-kind", "synthetic")
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
    _wait_for_samples(page, FULL_CHART, timeout=RECONNECT)
    shot = screenshot_path("dashboard.png", tmp_path)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # the footer links to the server's own pages, and they answer
    for name in ("healthz", "readyz", "metrics"):
        href = page.get_attribute(f"#link-{name}", "href")
        assert href == f"{server.url}/{name}"
        assert httpx.get(href, timeout=10.0).status_code == 200

    # no metrics for more than three intervals: stale data, greyed out, said since when
    banner = page.locator("#stale-banner")
    expect(banner).to_be_hidden()
    server.pause()
    try:
        expect(state).to_have_attribute("data-state", "stale", timeout=SOON)
        expect(page.locator("#conn-label")).to_have_text("stale data")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text(re.compile(r"values below are from \d\d:\d\d:\d\d"))
        expect(page.locator("body")).to_have_class(re.compile(r"\bis-stale\b"))
        grey = page.locator("#tp-produce-rate").evaluate("e => getComputedStyle(e).color")
        live = page.locator("#throughput .legend").evaluate("e => getComputedStyle(e).color")
        assert grey != live  # the value is drawn in the faint colour
    finally:
        server.resume()
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bis-stale\b"))

    # the server dies: reconnecting with a countdown, retrying on its own (attempt 3
    # is only shown after two refused attempts)...
    epoch = page.get_attribute("#session-meta", "data-epoch")
    assert epoch
    expect(page.locator("#log-notice")).to_be_hidden()
    watch.network_down = True
    server.kill()
    expect(state).to_have_attribute("data-state", "reconnecting", timeout=SOON)
    expect(banner).to_contain_text("disconnected since", timeout=SOON)
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


def test_dashboard_says_why_a_source_that_never_worked_shows_nothing(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """`--source kafka` at a port where nothing listens: not "live" but "no data yet",
    with what the server's /readyz says (the source, since when, its error), and the
    source named in the header. Nothing simulated about it."""
    pytest.importorskip("confluent_kafka")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    bootstrap = f"127.0.0.1:{dead}"
    server = server_factory(
        "--source", "kafka", "--kafka-bootstrap", bootstrap, "--interval", INTERVAL, ready=False
    )
    page, watch, _frames = open_page(browser, server.url + "/", unready=True)
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "nodata", timeout=SOON)
    expect(page.locator("#conn-label")).to_have_text("no data yet")
    banner = page.locator("#nodata-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(
        "No metrics yet: the server's kafka source has never produced a snapshot; it has "
        "been failing since ",
        timeout=SOON,
    )
    expect(banner).to_contain_text(f"failed collects): kafka {bootstrap}: ", timeout=SOON)
    expect(page.locator("#conn-detail")).to_contain_text("kafka source failing since")
    expect(page.locator("#source-badge")).to_have_text("source: kafka")
    expect(page.locator("#stale-banner")).to_be_hidden()
    readyz = httpx.get(server.url + "/readyz", timeout=10)
    assert readyz.status_code == 503
    since = readyz.json()["metrics"]["failingSince"]
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    expect(banner).to_contain_text(f"failing since {clock} (")  # the server's own time
    watch.assert_clean()


def test_dashboard_asks_for_the_api_key_once(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--interval", INTERVAL, "--api-key", "s3cret")
    # the upgrade is refused (401) until the key is entered
    page, watch, frames = open_page(browser, server.url + "/", network_down=True)
    ws_urls = frames.urls
    state = page.locator("#conn-state")

    banner = page.locator("#auth-banner")
    expect(banner).to_be_visible(timeout=SOON)
    expect(banner).to_contain_text("API key")
    expect(state).to_have_attribute("data-state", "reconnecting")
    page.fill("#api-key", "s3cret")
    page.click("#key-form button[type=submit]")
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    # the key went as the subprotocol pair websocket-api.md advises, not in the URL
    assert "token" not in parse_qs(urlsplit(ws_urls[-1]).query)
    watch.network_down = False
    expect(page.locator("#topics tbody tr[data-topic]").first).to_be_visible(timeout=SOON)

    # entered once: the tab remembers it
    assert page.evaluate("sessionStorage.getItem('takhin-ws.apiKey')") == "s3cret"
    page.reload()
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    watch.assert_clean()


def test_dashboard_says_why_the_server_refuses_it(
    browser: Browser, server_factory: ServerFactory
) -> None:
    """A full server (503) looks like any failed connection to the browser; the page
    asks the same URL over plain HTTP, says why in its log (once), and connects when a
    place frees up."""
    server = server_factory("--interval", INTERVAL, "--max-clients", "1")
    ws_url = server.url.replace("http://", "ws://") + "/api/monitoring/ws"
    with websockets.sync.client.connect(ws_url, open_timeout=10) as occupant:
        occupant.recv(timeout=10)  # welcome: the only place is taken
        page, watch, _frames = open_page(browser, server.url + "/", network_down=True)
        said = page.locator("#event-log li.system", has_text="the server is full")
        expect(said).to_have_count(1, timeout=RECONNECT)
        expect(said).to_contain_text(
            "the server is full or shutting down; retrying: connection limit reached (1 clients)"
        )
        expect(page.locator("#auth-banner")).to_be_hidden()  # not a key problem
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=RECONNECT)
    watch.assert_clean()


def _partition_rows(page: Page, selector: str) -> list[dict[str, int]]:
    rows: list[dict[str, int]] = page.locator(selector).evaluate_all(
        """rows => rows.map(r => ({
             partition: Number(r.dataset.partition),
             current: Number(r.dataset.currentOffset),
             end: Number(r.dataset.logEndOffset),
             lag: Number(r.dataset.lag),
             shown: Number(r.cells[3].textContent.replaceAll(",", "")),
           }))"""
    )
    return rows


def test_dashboard_drill_down_into_a_group_and_a_topic(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--interval", INTERVAL, "--publish-key", PUBLISH_KEY)
    page, watch, frames = open_page(browser, server.url + "/")
    rows = page.locator("#groups tbody tr[data-group]")
    expect(rows.first).to_be_visible(timeout=SOON)
    query = parse_qs(urlsplit(frames.urls[0]).query)
    assert query["format"] == ["envelope"]
    assert query["channels"] == [PAGE_CHANNELS]
    group = rows.first.get_attribute("data-group")
    assert group
    # a status badge per group, the worst first (the server's lag insight)
    badges = page.locator("#groups tbody tr[data-group] .badge").evaluate_all(
        "bs => bs.map(b => b.dataset.status)"
    )
    rank = ["UNKNOWN", "OK", "LAGGING", "STALLED", "STOPPED", "REWOUND"]
    assert badges
    assert set(badges) <= set(rank)
    assert [rank.index(b) for b in badges] == sorted((rank.index(b) for b in badges), reverse=True)

    # open the group: its partitions, their offsets and lags, from the server
    rows.first.click()
    drawer = page.locator("#detail")
    expect(drawer).to_be_visible()
    expect(drawer).to_have_attribute("data-loaded", "true", timeout=SOON)
    expect(page.locator("#detail-title")).to_contain_text(group)
    assert {"type": "subscribe", "data": [f"metrics:group:{group}"]} in frames.sent
    # its lag chart is full at once: the group's history, asked for on opening
    assert {"type": "history", "data": {"channel": f"group:{group}"}} in frames.sent
    page.wait_for_function(
        "() => Number(document.getElementById('detail-lag-msgs')?.dataset.history) > 0",
        timeout=SOON,
    )
    (answer,) = [m for m in frames.received if m["type"] == "history" and "channel" in m["data"]]
    assert answer["data"]["channel"] == f"group:{group}"
    assert answer["data"]["lags"]
    expect(page.locator("#detail-status .badge")).to_be_visible()
    partitions = _partition_rows(page, "#detail tr[data-partition]")
    assert partitions
    for p in partitions:
        assert p["lag"] == p["end"] - p["current"] == p["shown"]
        assert p["end"] > 0
    details = [m for m in frames.received if m["type"] == "group_detail"]
    assert details
    assert details[-1]["data"]["groupId"] == group
    topics_read = {tl["topic"] for tl in details[-1]["data"]["topicLags"]}
    shown_topics = set(
        page.locator("#detail tr[data-partition]").evaluate_all(
            "rows => [...new Set(rows.map(r => r.dataset.topic))]"
        )
    )
    assert shown_topics == topics_read
    # the lean view never carries partition detail: only the open group does
    lean = [m for m in frames.received if m["type"] == "metrics"]
    assert lean
    assert all(
        tl["partitionLags"] == []
        for m in lean
        for c in m["data"]["consumerLags"]
        for tl in c["topicLags"]
    )

    # its state history comes from the group events
    (event,) = _publish(server, _event("group_updated", groupId=group, state="Stable", members=77))
    assert event["offset"] > 0
    states = page.locator('#detail-states li[data-type="group_updated"]')
    expect(states.filter(has_text="Stable · 77 members")).to_have_count(1, timeout=SOON)

    # from the group to one of its topics: the partitions, and the groups reading it
    topic = sorted(topics_read)[0]
    page.locator("#detail h3 button.link", has_text=f"topic {topic}").click()
    expect(page.locator("#detail-title")).to_contain_text(topic)
    expect(drawer).to_have_attribute("data-loaded", "true", timeout=SOON)
    assert {"type": "unsubscribe", "data": [f"metrics:group:{group}"]} in frames.sent
    assert {"type": "subscribe", "data": [f"metrics:topic:{topic}"]} in frames.sent
    expect(page.locator(f'#detail tr[data-group="{group}"]')).to_be_visible()
    expect(page.locator("#detail tr[data-partition]").first).to_be_visible()

    # closing unsubscribes: no more detail frames after the server confirmed it
    page.click("#detail-close")
    expect(drawer).to_be_hidden()
    assert frames.sent[-1] == {"type": "unsubscribe", "data": [f"metrics:topic:{topic}"]}
    page.wait_for_function(
        "n => Number(document.getElementById('chart-msgs').dataset.samples) > n",
        arg=_samples(page) + 2,
        timeout=SOON,
    )
    types = frames.received_types()
    confirmed = max(i for i, t in enumerate(types) if t == "subscribed")
    assert "topic_detail" not in types[confirmed + 1 :]
    assert "metrics" in types[confirmed + 1 :]
    watch.assert_clean()


def test_dashboard_with_1000_topics_and_300_groups(
    browser: Browser, server_factory: ServerFactory
) -> None:
    server = server_factory("--synthetic-topics", "1000", "--synthetic-groups", "300")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    watch = ConsoleWatch()
    watch.attach(page)
    page.goto(server.url + "/")
    page.wait_for_function(
        "document.getElementById('topics').dataset.rows === '1000'"
        " && document.getElementById('groups').dataset.rows === '300'",
        timeout=RECONNECT,
    )
    # only the visible rows are in the DOM: what keeps a big cluster responsive (main-thread
    # task lengths are a speed figure, measured outside the suite, not asserted here)
    assert page.locator("#topics tbody tr.row").count() < 60
    assert page.locator("#groups tbody tr.row").count() < 60
    expect(page.locator("#topic-count")).to_have_text("1,000 topics")

    # sort by name, scroll to the end: the last name is there
    page.click('#topics th[data-key="name"]')
    page.locator("#topics-scroll").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_function(
        """() => { const rows = [...document.querySelectorAll('#topics tbody tr.row')];
                   const s = document.getElementById('topics-scroll');
                   const r = rows[rows.length - 1].getBoundingClientRect();
                   return r.bottom <= s.getBoundingClientRect().bottom + 1 && r.bottom > 0; }""",
        timeout=SOON,
    )
    names = page.locator("#topics tbody tr.row").evaluate_all(
        "rows => rows.map(r => r.dataset.topic)"
    )
    assert names == sorted(names, key=_natural)

    # filter, then open the group with the most lag
    page.fill("#topic-filter", "orders")
    expect(page.locator("#topic-count")).to_contain_text(" of 1,000 topics")
    page.fill("#topic-filter", "")
    page.locator("#groups tbody tr.row").first.click()
    expect(page.locator("#detail")).to_have_attribute("data-loaded", "true", timeout=SOON)
    page.click("#detail-close")
    _wait_for_samples(page, _samples(page) + 2, timeout=RECONNECT)

    watch.assert_clean()


def _natural(name: str) -> list[Any]:
    """The page's order of names: digits compare as numbers, case aside."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def test_dashboard_reload_shows_the_chart_history_at_once(
    browser: Browser, server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory("--interval", INTERVAL, "--publish-key", PUBLISH_KEY)
    page, watch, frames = open_page(browser, server.url + "/")
    _wait_for_samples(page, FULL_CHART, timeout=RECONNECT)

    received_before = len(frames.received)
    page.reload()
    page.wait_for_function(
        "Number(document.getElementById('chart-msgs').dataset.history) > 0", timeout=SOON
    )
    samples = _samples(page)
    snapshots = frames.received_types()[received_before:].count("metrics")
    # the charts are full at once: far more points than snapshots received since
    assert samples >= FULL_CHART
    assert samples > snapshots + FULL_CHART // 2
    assert {"type": "history"} in frames.sent
    (history,) = [m for m in frames.received[received_before:] if m["type"] == "history"]
    assert history["data"]["interval"] == float(INTERVAL)
    assert len(history["data"]["points"]) >= FULL_CHART
    ticks = page.get_attribute("#chart-msgs", "data-ticks")
    assert ticks
    assert ticks.split("|")[0] == "0"

    # the phone-sized page, with its history and some events, for the README
    published = _publish(
        server,
        _event("topic_created", name="invoices", partitions=6),
        _event("group_updated", groupId="billing-service", state="PreparingRebalance", members=2),
        _event("group_updated", groupId="billing-service", state="Stable", members=3),
    )
    for item in published:
        expect(
            page.locator(
                f'#event-log li[data-stream="{item["channel"]}"][data-offset="{item["offset"]}"]'
            )
        ).to_be_visible(timeout=SOON)
    page.set_viewport_size(NARROW)
    _wait_for_samples(page, _samples(page) + 1)
    _no_page_overflow(page)
    shot = screenshot_path("dashboard-narrow.png", tmp_path)
    page.screenshot(path=str(shot))  # what a phone shows first
    assert shot.stat().st_size > 10_000
    watch.assert_clean()

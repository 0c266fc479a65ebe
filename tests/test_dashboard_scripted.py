"""The dashboard against a scripted WebSocket peer: the page comes from a real
``python -m takhin_ws``, but its WebSocket is routed to the test, which plays the
server. For exact data (sorting, filtering, axis ticks, a phone's screen with long
names) and for messages a real server rarely sends on cue (``stale: true``, ``gap``,
a repeated offset, a new epoch). Helpers: ``browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from playwright.sync_api import Browser, Page, expect

from browser import (
    NARROW,
    SOON,
    WELCOME,
    ScriptedPeer,
    ServerProcess,
    chromium,
    screenshot_path,
    scripted_page,
    servers,
    wire,
)
from takhin_ws.wire.messages import (
    ConsumerLag,
    EpochChanged,
    Gap,
    GroupDetail,
    GroupStatus,
    GroupUpdated,
    History,
    LagPoint,
    LagStatus,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Subscribed,
    Throughput,
    TopicCreated,
    TopicLag,
    TopicStats,
)

pytestmark = pytest.mark.slow

#: A name as long as a channel allows a group id to be.
LONG = "x" * 40 + "-very-long-consumer-group-name-that-never-ends-" + "y" * 40


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server the page is loaded from (its WebSocket never reaches it)."""
    with servers(tmp_path_factory.mktemp("dashboard")) as make:
        yield make("--interval", "3600")


def topic(name: str, messages: int, produce: float, partitions: int = 4) -> TopicStats:
    return TopicStats(
        name=name,
        partitions=partitions,
        total_messages=messages,
        total_bytes=messages * 10,
        produce_rate=produce,
        fetch_rate=produce / 2,
    )


def group(group_id: str, lag: int, *topics: str) -> ConsumerLag:
    """A lean group: totals per topic, no partition detail."""
    per = tuple(TopicLag(topic=t, total_lag=lag // max(1, len(topics))) for t in topics)
    return ConsumerLag(group_id=group_id, total_lag=lag, topic_lags=per)


def metrics(
    offset: int,
    *,
    topics: tuple[TopicStats, ...] = (),
    groups: tuple[ConsumerLag, ...] = (),
    produce: float = 100.0,
    produce_bytes: float = 0.0,
    stale: bool = False,
) -> str:
    payload = MonitoringMetrics(
        throughput=Throughput(
            produce_rate=produce, fetch_rate=produce / 2, produce_bytes=produce_bytes
        ),
        latency=Latency(produce_p50=0.002, produce_p95=0.008, produce_p99=0.030),
        topic_stats=topics,
        consumer_lags=groups,
    )
    return wire(payload, channel="metrics", offset=offset, epoch="e1", stale=stale)


def column(page: Page, table: str, index: int) -> list[str]:
    texts: list[str] = page.locator(f"#{table} tbody tr.row").evaluate_all(
        "(rows, i) => rows.map(r => r.cells[i].textContent)", index
    )
    return texts


def keys(page: Page, table: str) -> list[str]:
    names: list[str] = page.locator(f"#{table} tbody tr.row").evaluate_all(
        "rows => rows.map(r => r.dataset.key)"
    )
    return names


def expect_keys(page: Page, table: str, expected: list[str]) -> None:
    """Wait until the table's rows are ``expected``, in order. The page sorts and
    renders in its next animation frame, after a click has returned: a row that is
    first both before and after a click says nothing about the new order."""
    rows = page.locator(f"#{table} tbody tr.row")
    expect(rows).to_have_count(len(expected))
    for index, key in enumerate(expected):
        expect(rows.nth(index)).to_have_attribute("data-key", key)
    assert keys(page, table) == expected


def live(page: Page, peer: ScriptedPeer, frame: str) -> None:
    peer.send(wire(WELCOME))
    peer.send(frame)
    expect(page.locator("#conn-state")).to_have_attribute("data-state", "live", timeout=SOON)


TOPICS = (
    topic("payments", 5_000, 10.0),
    topic("orders-10", 20_000, 300.0),
    topic("orders-9", 1_000, 50.0),
    topic("audit", 700, 0.5),
    topic("Page-Views", 90_000, 120.0),
)
GROUPS = (group("billing", 40, "orders-10"), group("audit-sink", 900, "audit"), group("etl", 7))


def test_dashboard_sorts_and_filters(browser: Browser, server: ServerProcess) -> None:
    page, watch, peer = scripted_page(browser, server.url + "/")
    live(page, peer, metrics(1, topics=TOPICS, groups=GROUPS))
    # by default the busiest topics and the groups in the worst state, furthest behind, first
    expect(page.locator("#topics tbody tr.row")).to_have_count(5)
    assert keys(page, "topics") == ["orders-10", "Page-Views", "orders-9", "payments", "audit"]
    assert page.get_attribute('#topics th[data-key="produceRate"]', "aria-sort") == "descending"
    assert keys(page, "groups") == ["audit-sink", "billing", "etl"]
    assert page.get_attribute('#groups th[data-key="status"]', "aria-sort") == "descending"
    assert column(page, "groups", 2) == ["900", "40", "7"]

    # any column, twice for the other way; names in natural order, case aside
    page.click('#topics th[data-key="totalMessages"]')
    expect(page.locator("#topics tbody tr.row").first).to_have_attribute("data-key", "Page-Views")
    assert column(page, "topics", 2) == ["90,000", "20,000", "5,000", "1,000", "700"]
    page.click('#topics th[data-key="totalMessages"]')
    expect(page.locator("#topics tbody tr.row").first).to_have_attribute("data-key", "audit")
    assert page.get_attribute('#topics th[data-key="totalMessages"]', "aria-sort") == "ascending"
    page.click('#topics th[data-key="name"]')
    expect_keys(page, "topics", ["audit", "orders-9", "orders-10", "Page-Views", "payments"])
    page.click('#groups th[data-key="totalLag"]')
    expect_keys(page, "groups", ["audit-sink", "billing", "etl"])
    assert page.get_attribute('#groups th[data-key="totalLag"]', "aria-sort") == "descending"
    page.click('#groups th[data-key="totalLag"]')
    expect(page.locator("#groups tbody tr.row").first).to_have_attribute("data-key", "etl")

    # the order holds across snapshots: a new one is sorted the same way
    peer.send(metrics(2, topics=(*TOPICS, topic("aardvark", 1, 0.0)), groups=GROUPS))
    expect(page.locator("#topics tbody tr.row").first).to_have_attribute("data-key", "aardvark")

    # filter by name, case aside; the count says how many of how many
    page.fill("#topic-filter", "ORDERS")
    expect(page.locator("#topics tbody tr.row")).to_have_count(2)
    assert keys(page, "topics") == ["orders-9", "orders-10"]
    expect(page.locator("#topic-count")).to_have_text("2 of 6 topics")
    page.fill("#topic-filter", "nothing-like-it")
    expect(page.locator("#topics tbody tr.empty")).to_contain_text("no topic matches")
    page.fill("#topic-filter", "")
    expect(page.locator("#topics tbody tr.row")).to_have_count(6)
    page.fill("#group-filter", "bill")
    expect(page.locator("#groups tbody tr.row")).to_have_count(1)
    expect(page.locator("#group-count")).to_have_text("1 of 3 groups")
    # the keyboard sorts too
    page.focus('#groups th[data-key="groupId"]')
    page.keyboard.press("Enter")
    assert page.get_attribute('#groups th[data-key="groupId"]', "aria-sort") == "ascending"
    watch.assert_clean()


def test_dashboard_axes_have_nice_ticks_and_an_empty_chart_is_empty(
    browser: Browser, server: ServerProcess
) -> None:
    page, watch, peer = scripted_page(browser, server.url + "/")
    chart = page.locator("#chart-msgs")
    # before any data: no scale at all, and the chart says so
    expect(page.locator("#chart-window")).to_have_text("waiting for data")
    assert chart.get_attribute("data-ticks") == ""
    assert page.get_attribute("#chart-bytes", "data-ticks") == ""

    # 1-2-2.5-5 x 10^n for rates; powers of two of 1024^n for bytes
    live(page, peer, metrics(1, produce=100.0, produce_bytes=900 * 1024))
    expect(chart).to_have_attribute("data-ticks", "0|25|50|75|100", timeout=SOON)
    expect(page.locator("#chart-bytes")).to_have_attribute(
        "data-ticks", "0|256 KiB|512 KiB|768 KiB|1 MiB"
    )
    # the scale covers the whole window: the larger of the samples
    peer.send(metrics(2, produce=1234.0, produce_bytes=5 * 1024 * 1024))
    expect(chart).to_have_attribute("data-ticks", "0|500|1k|1.5k", timeout=SOON)
    expect(page.locator("#chart-bytes")).to_have_attribute("data-ticks", "0|2 MiB|4 MiB|6 MiB")
    watch.assert_clean()

    # a quiet cluster (all zero) keeps a scale of its own, never repeated labels
    quiet, watch, peer = scripted_page(browser, server.url + "/")
    live(quiet, peer, metrics(1, produce=0.0))
    expect(quiet.locator("#chart-msgs")).to_have_attribute(
        "data-ticks", "0|0.25|0.5|0.75|1", timeout=SOON
    )
    expect(quiet.locator("#chart-bytes")).to_have_attribute("data-ticks", "0|1 B|2 B|3 B|4 B")
    watch.assert_clean()


def test_dashboard_on_a_phone_has_no_page_overflow(browser: Browser, server: ServerProcess) -> None:
    page, watch, peer = scripted_page(browser, server.url + "/", viewport=NARROW)
    long_topic = "t" * 60 + ".with.a.name.as.long.as.kafka.lets.it.be." + "z" * 60
    topics = (*TOPICS, topic(long_topic, 123_456_789, 98_765.4, partitions=1_200))
    live(page, peer, metrics(1, topics=topics, groups=(*GROUPS, group(LONG, 10**12, "audit"))))
    peer.send(wire(TopicCreated(name=long_topic, partitions=12), channel="topics", offset=1))
    peer.send(
        wire(
            GroupUpdated(group_id=LONG, state="PreparingRebalance", members=3),
            channel="groups",
            offset=1,
        )
    )
    expect(page.locator("#event-log li[data-offset]")).to_have_count(2, timeout=SOON)
    _no_page_overflow(page)
    # the event log wraps by words, not one letter per line
    for width in page.locator("#event-log li.ev .txt").evaluate_all(
        "spans => spans.map(s => s.getBoundingClientRect().width)"
    ):
        assert width > 300
    # tables scroll inside their card; minor columns are left out
    expect(page.locator('#topics th[data-key="totalMessages"]')).to_be_hidden()
    scroller = page.locator("#topics-scroll").bounding_box()
    card = page.locator("#topics-card").bounding_box()
    assert scroller is not None
    assert card is not None
    assert scroller["x"] + scroller["width"] <= card["x"] + card["width"]

    # the drill-down covers the screen, and overflows no more than the page
    page.locator(f'#groups tbody tr[data-key="{LONG}"]').click()
    assert peer.received[-2:] == [
        {"type": "subscribe", "data": [f"metrics:group:{LONG}"]},
        {"type": "history", "data": {"channel": f"group:{LONG}"}},  # its lag chart's
    ]
    detail = GroupDetail(
        group_id=LONG,
        state="Stable",
        members=3,
        total_lag=10**12,
        topic_lags=(
            TopicLag(
                topic=long_topic,
                total_lag=10**12,
                partition_lags=tuple(
                    PartitionLag(
                        partition=p,
                        current_offset=10**12,
                        log_end_offset=2 * 10**12,
                        lag=10**12,
                    )
                    for p in range(12)
                ),
            ),
        ),
    )
    peer.send(wire(detail, channel="metrics", offset=1, epoch="e1"))
    expect(page.locator("#detail")).to_have_attribute("data-loaded", "true", timeout=SOON)
    expect(page.locator("#detail tr[data-partition]")).to_have_count(12)
    box = page.locator("#detail").bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["width"] <= NARROW["width"]
    _no_page_overflow(page)
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()
    assert peer.received[-1] == {"type": "unsubscribe", "data": [f"metrics:group:{LONG}"]}
    watch.assert_clean()


def _no_page_overflow(page: Page) -> None:
    width, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width <= client, f"the page scrolls sideways: {width} px wide in {client} px"


def test_dashboard_handles_stale_flag_gap_and_duplicates(
    browser: Browser, server: ServerProcess
) -> None:
    page, watch, peer = scripted_page(browser, server.url + "/")
    state = page.locator("#conn-state")
    log = page.locator("#event-log")
    scripted = (topic("scripted", 1001, 100.0),)
    live(page, peer, metrics(1, topics=scripted))
    expect(page.locator('#topics tr[data-topic="scripted"]')).to_contain_text("1,001")
    expect(page.locator("#lat-produce-p99")).to_have_text("30.0")
    assert peer.received[0] == {"type": "history"}  # asked once welcomed

    # the server marks a snapshot stale (its source is failing): stale at once
    peer.send(metrics(2, topics=scripted, stale=True))
    expect(state).to_have_attribute("data-state", "stale", timeout=SOON)
    expect(page.locator("#conn-detail")).to_contain_text("source failing")
    expect(page.locator("#stale-banner")).to_contain_text("metrics source has been failing")
    peer.send(metrics(3, topics=scripted, produce=250.0))
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(page.locator("#tp-produce-rate")).to_have_text("250")
    expect(page.locator("#stale-banner")).to_be_hidden()

    # events in order; a repeated offset is shown once
    peer.send(_topic_created("first", 1))
    peer.send(_topic_created("first", 1))
    expect(log.locator('li[data-offset="1"]')).to_contain_text("first", timeout=SOON)
    # a gap on an event stream: the log says events were missed
    expect(page.locator("#log-notice")).to_be_hidden()
    peer.send(wire(Gap(channel="topics", first_offset=2, last_offset=4, count=3)))
    expect(page.locator("#log-notice")).to_be_visible(timeout=SOON)
    expect(page.locator("#log-notice")).to_contain_text("3 topics event(s) dropped")
    expect(log.locator("li.marker")).to_contain_text("topics #2\N{EN DASH}4")
    peer.send(_topic_created("after-gap", 5))
    expect(log.locator('li[data-offset="5"]')).to_contain_text("after-gap", timeout=SOON)
    assert log.locator('li[data-offset="1"]').count() == 1
    # a gap on metrics loses nothing the page keeps: no notice for it
    page.click("#log-notice-dismiss")
    peer.send(wire(Gap(channel="metrics", first_offset=4, last_offset=9, count=6)))
    peer.send(wire(Subscribed(channels=("metrics",), recovered={"topics": True})))
    peer.send(metrics(10, topics=scripted, produce=300.0))
    expect(page.locator("#tp-produce-rate")).to_have_text("300", timeout=SOON)
    expect(page.locator("#log-notice")).to_be_hidden()
    # the offsets restart under a new epoch (Redis lost them): adopted, and said
    lost = {"topics": False, "groups": False}
    peer.send(wire(EpochChanged(epoch="e2", previous="e1", recovered=lost)))
    expect(page.locator("#log-notice")).to_be_visible(timeout=SOON)
    expect(page.locator("#log-notice")).to_contain_text("new epoch e2")
    expect(page.locator("#session-meta")).to_have_attribute("data-epoch", "e2")
    reborn = TopicCreated(name="new-epoch", partitions=1)
    peer.send(wire(reborn, channel="topics", offset=1, epoch="e2"))
    expect(log.locator('li[data-offset="1"]', has_text="new-epoch")).to_have_count(1, timeout=SOON)
    watch.assert_clean()


def _topic_created(name: str, offset: int) -> str:
    return wire(TopicCreated(name=name, partitions=1), channel="topics", offset=offset, epoch="e1")


def test_dashboard_without_a_snapshot_says_what_readyz_says(
    browser: Browser, server: ServerProcess
) -> None:
    """A welcome that no snapshot follows: "no data yet", never "live"; the banner
    words what /readyz says (here played by the test: a cluster node whose peer holds
    the lease, then a /readyz the page cannot read). A welcome without ``source`` (an
    older server) shows no source badge; ``synthetic`` shows "simulated data"."""
    follower = {
        "source": "synthetic",
        "collecting": False,
        "snapshot": False,
        "stale": False,
        "lastSuccess": None,
        "failingSince": None,
        "failures": 0,
        "error": None,
    }
    body = {"status": "ready", "reasons": [], "metrics": follower}
    page, watch, peer = scripted_page(browser, server.url + "/")
    page.route("**/readyz", lambda route: route.fulfill(status=200, json=body))
    peer.send(wire(WELCOME))
    state = page.locator("#conn-state")
    expect(state).to_have_attribute("data-state", "nodata", timeout=SOON)
    expect(page.locator("#source-badge")).to_be_hidden()
    banner = page.locator("#nodata-banner")
    expect(banner).to_contain_text(
        "No metrics yet: another node of the cluster collects them (it holds the metrics "
        "lease), and none has arrived from it.",
        timeout=SOON,
    )
    expect(page.locator("#conn-detail")).to_have_text("· another node collects")

    # an older server's page, or /readyz of another origin: the page says less, not wrong
    page.unroute("**/readyz")
    page.route("**/readyz", lambda route: route.abort())
    welcome = attrs.evolve(WELCOME, source="synthetic")
    peer.send(wire(welcome))
    expect(page.locator("#source-badge")).to_have_text("simulated data", timeout=SOON)
    expect(banner).to_contain_text("its /readyz says why.", timeout=SOON)
    expect(state).to_have_attribute("data-state", "nodata")

    # the first snapshot ends it
    peer.send(metrics(1))
    expect(state).to_have_attribute("data-state", "live", timeout=SOON)
    expect(banner).to_be_hidden()
    # the aborted /readyz is the only failed request, and it threw nothing
    aborted = "console.error: Failed to load resource: net::ERR_FAILED"
    assert [p for p in watch.problems if not p.startswith(aborted)] == []


def sent(page: Page, peer: ScriptedPeer, message: dict[str, object]) -> None:
    """Wait until the page has sent *message* to the peer."""
    deadline = time.monotonic() + SOON / 1000
    while message not in peer.received:
        assert time.monotonic() < deadline, f"the page never sent {message}"
        page.wait_for_timeout(50)


def lagging(
    group_id: str, lag: int, status: LagStatus, seconds: float | None, drain: float | None
) -> ConsumerLag:
    return attrs.evolve(
        group(group_id, lag, "orders-10"),
        status=status,
        lag_seconds=seconds,
        drain_seconds=drain,
    )


def test_dashboard_group_status_badges_and_the_lag_chart_of_a_group(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    page, watch, peer = scripted_page(browser, server.url + "/")
    groups = (
        lagging("apps", 900, "OK", 2.0, 0.0),
        lagging("billing", 40, "STALLED", 95.0, None),
        lagging("crm", 7, "REWOUND", None, None),
        lagging("dwh", 5000, "LAGGING", 30.4, 120.0),
        lagging("etl", 0, "UNKNOWN", None, None),
    )
    live(page, peer, metrics(1, topics=TOPICS, groups=groups))
    expect(page.locator("#groups tbody tr.row")).to_have_count(5)
    # a badge per group, the ones to act on first
    assert keys(page, "groups") == ["crm", "billing", "dwh", "apps", "etl"]
    statuses = page.locator("#groups tbody tr.row .badge").evaluate_all(
        "bs => bs.map(b => b.dataset.status + ':' + b.textContent)"
    )
    assert statuses == [
        "REWOUND:REWOUND",
        "STALLED:STALLED",
        "LAGGING:LAGGING",
        "OK:OK",
        "UNKNOWN:UNKNOWN",
    ]
    # lag in seconds beside the messages, the drain estimate under the badge
    assert column(page, "groups", 2) == ["7", "40", "5,000", "900", "0"]
    unknown = "\u2013"  # the page's dash: not known
    assert column(page, "groups", 3) == [unknown, "1 min 35 s", "30 s", "2 s", unknown]
    dwh = page.locator('#groups tbody tr[data-key="dwh"] .sub')
    expect(dwh).to_have_text("drains in 2 min 0 s")
    page.click('#groups th[data-key="status"]')  # the other way: the healthy first
    expect(page.locator("#groups tbody tr.row").first).to_have_attribute("data-key", "etl")
    page.click('#groups th[data-key="lagSeconds"]')
    expect(page.locator("#groups tbody tr.row").first).to_have_attribute("data-key", "billing")

    # a status change: in the log, and in the group's history once it is open
    change = GroupStatus(
        group_id="billing", status="STALLED", previous="OK", reason="orders-10[0]: stuck"
    )
    peer.send(wire(change, channel="groups", offset=3, epoch="e1"))
    logged = page.locator('#event-log li[data-type="group_status"]')
    expect(logged).to_contain_text("group billing OK → STALLED · orders-10[0]: stuck")

    # the drill-down asks for the group's history and charts it at once
    page.locator('#groups tbody tr[data-key="billing"]').click()
    expect(page.locator("#detail")).to_be_visible()
    sent(page, peer, {"type": "history", "data": {"channel": "group:billing"}})
    start = time.time() - 60  # the last minute: inside the chart's window
    points = tuple(
        LagPoint(
            timestamp=start + 2 * k,
            total_lag=40 * k // 29,
            lag_seconds=None if k < 5 else 3.2 * k,
        )
        for k in range(30)
    )
    peer.send(wire(History(interval=2.0, channel="group:billing", lags=points)))
    detail = GroupDetail(
        group_id="billing",
        state="Stable",
        members=2,
        total_lag=40,
        lag_seconds=95.0,
        status="STALLED",
        topic_lags=(
            TopicLag(
                topic="orders-10",
                total_lag=40,
                partition_lags=(
                    PartitionLag(
                        partition=0, current_offset=60, log_end_offset=100, lag=40, lag_seconds=95.0
                    ),
                ),
            ),
        ),
    )
    peer.send(wire(detail, channel="metrics", offset=2, epoch="e1"))
    expect(page.locator("#detail")).to_have_attribute("data-loaded", "true", timeout=SOON)
    messages, seconds = page.locator("#detail-lag-msgs"), page.locator("#detail-lag-secs")
    expect(messages).to_have_attribute("data-samples", "31", timeout=SOON)  # 30 + the live one
    expect(seconds).to_have_attribute("data-samples", "26")  # the nulls are left out
    assert (seconds.get_attribute("data-ticks") or "").endswith(" s")
    expect(page.locator("#detail-status .badge")).to_have_attribute("data-status", "STALLED")
    expect(page.locator('#detail tr[data-partition="0"] td').nth(4)).to_have_text("1 min 35 s")
    expect(page.locator('#detail-states li[data-type="group_status"]')).to_contain_text(
        "STALLED (was OK) · orders-10[0]: stuck"
    )
    shot = screenshot_path("dashboard-group.png", tmp_path)  # README's drill-down picture
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    # a history for another group (a late answer) changes nothing
    peer.send(wire(History(interval=2.0, channel="group:apps", lags=points[:3])))
    peer.send(wire(detail, channel="metrics", offset=3, epoch="e1"))
    expect(messages).to_have_attribute("data-samples", "32", timeout=SOON)
    watch.assert_clean()

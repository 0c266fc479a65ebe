"""Channel permissions without sockets: the hub and the session core with restricted
clients (forbidden subscribes, filtered live events, replay and resume, filtered
metrics built once per permission set), refresh in place and expiry."""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import HUB_WALL_CLOCK
from takhin_ws import (
    ConsumerLag,
    GroupCreated,
    Hub,
    MonitoringMetrics,
    Settings,
    TopicCreated,
    TopicLag,
    TopicStats,
)
from takhin_ws.core.access.auth import Authenticator
from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.access.renewal import TokenSession
from takhin_ws.core.access.tokens import TokenVerifier
from takhin_ws.core.series import Series
from takhin_ws.core.session import SessionCore
from takhin_ws.lowlevel import QueueSubscriber
from takhin_ws.wire.auth import CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED
from takhin_ws.wire.messages import ClusterHealth
from tokens import SECRET, mint

TOPICS = ("orders.eu", "orders.us", "payments", "audit")
GROUPS = ("billing-1", "billing-2", "ops")


def snapshot() -> MonitoringMetrics:
    """Every topic, and every group reading every topic (lag 1 each)."""
    lags = tuple(
        ConsumerLag(
            group_id=g,
            total_lag=len(TOPICS),
            topic_lags=tuple(TopicLag(topic=t, total_lag=1) for t in TOPICS),
        )
        for g in GROUPS
    )
    stats = tuple(
        TopicStats(
            name=t, partitions=2, total_messages=1, total_bytes=1, produce_rate=0, fetch_rate=0
        )
        for t in TOPICS
    )
    health = ClusterHealth(
        total_topics=len(TOPICS), total_partitions=2 * len(TOPICS), total_consumers=len(GROUPS)
    )
    return MonitoringMetrics(topic_stats=stats, consumer_lags=lags, cluster_health=health)


class Wall:
    def __init__(self) -> None:
        self.now = HUB_WALL_CLOCK

    def __call__(self) -> float:
        return self.now


AUTHENTICATOR = Authenticator([], TokenVerifier(secret=SECRET))


def connect(
    hub: Hub, patterns: list[str] | None, channels: list[str] | None = None, **extra: Any
) -> tuple[SessionCore, QueueSubscriber]:
    """A client of *hub* holding a token for *patterns* (``None``: an API key)."""
    peer = QueueSubscriber()
    token = None
    permissions = None
    if patterns is not None:
        grant = AUTHENTICATOR.authenticate([mint(patterns, **extra)]).grant
        assert grant is not None
        token = TokenSession(grant, AUTHENTICATOR, notice=30.0)
        permissions = None if grant.permissions.everything else grant.permissions
    client = hub.add_client(peer, channels, permissions=permissions)
    core = SessionCore(hub, Settings(), client, clock=lambda: 0.0, token=token)
    return core, peer


def drain(peer: QueueSubscriber) -> list[dict[str, Any]]:
    out = []
    while peer.queue:
        out.append(orjson.loads(peer.queue.get_nowait().payload))
    return out


def send(core: SessionCore, obj: object) -> list[dict[str, Any]]:
    reply = core.receive(orjson.dumps(obj).decode())
    return [orjson.loads(f.payload) for f in reply.frames]


def names(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"].get("name") or m["data"].get("groupId") for m in messages]


def publish_all(hub: Hub) -> None:
    for topic in TOPICS:
        hub.publish_event(TopicCreated(name=topic, partitions=1))
    for group in GROUPS:
        hub.publish_event(GroupCreated(group_id=group, state="Stable", members=1))


CLAIM = ["metrics", "topic:orders.*", "group:billing-*"]


def test_default_subscription_is_what_the_claim_allows(hub: Hub) -> None:
    core, _ = connect(hub, ["topic:orders.*"])
    assert core.client.channels == {"topics"}
    core, _ = connect(hub, CLAIM)
    assert core.client.channels == {"metrics", "topics", "groups"}


def test_subscribing_outside_the_claim_is_forbidden_and_changes_nothing(hub: Hub) -> None:
    core, _ = connect(hub, ["topic:orders.*"], ["topic:orders.eu"])
    refused = AUTHENTICATOR.refusals["forbidden"]  # (shared by the tests: counted from here)
    for _ in range(3 * Settings().bad_message_limit):  # not counted as abuse
        reply = core.receive(orjson.dumps({"type": "subscribe", "data": ["groups"]}).decode())
        assert reply.close is None
        (error,) = [orjson.loads(f.payload) for f in reply.frames]
        assert error["data"]["code"] == "forbidden"
        assert "groups" in error["data"]["message"]
    assert AUTHENTICATOR.refusals["forbidden"] == refused + 3 * Settings().bad_message_limit
    request = {"type": "subscribe", "data": ["topic:orders.us", "topic:payments"]}
    (error,) = send(core, request)
    assert error["data"]["code"] == "forbidden"
    assert core.client.channels == {"topic:orders.eu"}  # not even the allowed one was added
    assert [m["type"] for m in send(core, {"type": "subscribe", "data": "topic:orders.us"})] == [
        "subscribed"
    ]


def test_live_events_outside_the_claim_never_arrive(hub: Hub) -> None:
    _restricted, mine = connect(hub, CLAIM, ["topics", "groups"])
    _keyed, theirs = connect(hub, None, ["topics", "groups"])
    publish_all(hub)
    assert names(drain(mine)) == ["orders.eu", "orders.us", "billing-1", "billing-2"]
    assert len(drain(theirs)) == len(TOPICS) + len(GROUPS)


def test_replay_and_resume_skip_what_the_claim_hides(hub: Hub) -> None:
    publish_all(hub)
    core, _ = connect(hub, CLAIM, ["topics", "groups"])
    got = [orjson.loads(f.payload) for f in core.start({"topics": 0, "groups": 0}).frames]
    assert [m["type"] for m in got[:2]] == ["welcome", "subscribed"]
    assert names(got[2:]) == ["orders.eu", "orders.us", "billing-1", "billing-2"]
    later, _ = connect(hub, CLAIM, [])
    request = {"channels": ["topics"], "since": {"topics": 0}, "epoch": hub.epoch}
    got = send(later, {"type": "subscribe", "data": request})
    assert names(got[1:]) == ["orders.eu", "orders.us"]


def test_filtered_metrics_are_built_once_per_permission_set(hub: Hub) -> None:
    peers = [connect(hub, CLAIM, ["metrics"])[1] for _ in range(5)]
    peers += [connect(hub, ["metrics", "topic:audit"], ["metrics"])[1] for _ in range(5)]
    keyed = connect(hub, None, ["metrics"])[1]
    hub.publish("metrics", snapshot())
    first = [p.queue.get_nowait() for p in peers]
    assert len({id(item) for item in first[:5]}) == 1  # one frame per set, shared
    assert len({id(item) for item in first[5:]}) == 1
    assert first[0] is not first[5]
    data = orjson.loads(first[0].payload)["data"]
    assert [t["name"] for t in data["topicStats"]] == ["orders.eu", "orders.us"]
    assert [c["groupId"] for c in data["consumerLags"]] == ["billing-1", "billing-2"]
    lag = data["consumerLags"][0]
    assert [tl["topic"] for tl in lag["topicLags"]] == ["orders.eu", "orders.us"]
    assert lag["totalLag"] == 2
    health = data["clusterHealth"]
    assert (health["totalTopics"], health["totalPartitions"], health["totalConsumers"]) == (2, 4, 2)
    other = orjson.loads(first[5].payload)["data"]
    assert [t["name"] for t in other["topicStats"]] == ["audit"]
    assert other["consumerLags"] == []
    full = orjson.loads(keyed.queue.get_nowait().payload)["data"]
    assert len(full["topicStats"]) == len(TOPICS)


def test_views_and_the_snapshot_on_subscribe_are_filtered(hub: Hub) -> None:
    hub.publish("metrics", snapshot())
    core, _peer = connect(hub, CLAIM, [])
    got = send(core, {"type": "subscribe", "data": ["metrics", "metrics:lean"]})
    lean = [m for m in got if m["type"] == "metrics"]
    assert len(lean) == 2
    for message in lean:
        assert [t["name"] for t in message["data"]["topicStats"]] == ["orders.eu", "orders.us"]
    got = send(core, {"type": "subscribe", "data": "metrics:group:billing-1"})
    detail = got[-1]["data"]
    assert detail["groupId"] == "billing-1"
    assert [tl["topic"] for tl in detail["topicLags"]] == ["orders.eu", "orders.us"]
    assert send(core, {"type": "subscribe", "data": "metrics:group:ops"})[0]["data"]["code"] == (
        "forbidden"
    )


def test_history_shows_only_visible_groups(hub: Hub) -> None:
    series = Series(60.0, 2.0)
    series.add(snapshot(), HUB_WALL_CLOCK)
    core, _ = connect(hub, CLAIM, [])
    core.series = series
    (history,) = send(core, {"type": "history"})
    assert set(history["data"]["points"][0]["groupLags"]) == {"billing-1", "billing-2"}


# --- refresh in place ---


def test_refresh_narrows_at_once_and_names_what_it_unsubscribed(hub: Hub) -> None:
    core, peer = connect(hub, CLAIM, ["topics", "groups", "topic:orders.eu"])
    (refreshed,) = send(core, {"type": "refresh", "data": {"token": mint(["topic:orders.us"])}})
    assert refreshed["type"] == "refreshed"
    assert refreshed["data"]["unsubscribed"] == ["groups", "topic:orders.eu"]
    assert refreshed["data"]["count"] == 1
    assert refreshed["data"]["expiresAt"] == core.token.grant.expires_at  # type: ignore[union-attr]
    publish_all(hub)
    assert names(drain(peer)) == ["orders.us"]
    # broader again: the same subscription carries more
    send(core, {"type": "refresh", "data": {"token": mint(["topics"])}})
    publish_all(hub)
    assert names(drain(peer)) == list(TOPICS)


def test_a_refresh_for_another_subject_or_a_bad_token_is_refused(hub: Hub) -> None:
    core, _ = connect(hub, CLAIM)
    before = core.token.grant  # type: ignore[union-attr]
    for token in (mint(["*"], sub="bob"), mint(["*"], ttl=-60), "junk"):
        (error,) = send(core, {"type": "refresh", "data": {"token": token}})
        assert error["data"]["code"] == "invalid_token"
    assert core.token.grant is before  # type: ignore[union-attr]
    keyed, _ = connect(hub, None)
    (error,) = send(keyed, {"type": "refresh", "data": {"token": mint(["*"])}})
    assert error["data"]["code"] == "invalid_token"


def test_expiry_notice_once_then_close_4001(hub: Hub) -> None:
    core, _ = connect(hub, CLAIM, ttl=100)
    assert core.token is not None
    expires = core.token.grant.expires_at
    assert core.expiry(expires - 31) is None
    reply = core.expiry(expires - 29)
    assert reply is not None
    (notice,) = [orjson.loads(f.payload) for f in reply.frames]
    assert notice == {
        "type": "token_expiring",
        "data": {"expiresAt": expires},
        "timestamp": int(HUB_WALL_CLOCK),
    }
    assert core.expiry(expires - 1) is None  # once
    # a refresh re-arms it for the new expiry
    send(core, {"type": "refresh", "data": {"token": mint(CLAIM, ttl=200)}})
    renewed = core.token.grant.expires_at
    assert renewed > expires
    assert core.expiry(expires) is None
    assert core.expiry(renewed - 1) is not None
    reply = core.expiry(renewed)
    assert reply is not None
    assert reply.close is not None
    assert (reply.close.code, reply.close.reason) == (CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED)
    keyed, _ = connect(hub, None)
    assert keyed.expiry(renewed + 10_000) is None


# --- the invariant ---

PATTERNS = (
    "*",
    "metrics",
    "topics",
    "groups",
    "topic:orders.*",
    "topic:*s",
    "topic:audit",
    "group:billing-*",
    "group:ops",
)
claims = st.lists(st.sampled_from(PATTERNS), max_size=4, unique=True)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("topic"), st.sampled_from(TOPICS)),
        st.tuples(st.just("group"), st.sampled_from(GROUPS)),
        st.tuples(st.just("snapshot"), st.none()),
        st.tuples(st.just("refresh"), claims),
    ),
    max_size=12,
)


def _matches(patterns: list[str], channel: str) -> bool:
    return any(fnmatch.fnmatchcase(channel, p) for p in patterns)  # no ? or [ in PATTERNS


def _visible(patterns: list[str], kind: str, name: str) -> bool:
    return _matches(patterns, kind + "s") or _matches(patterns, f"{kind}:{name}")


@settings(max_examples=150, deadline=None)
@given(claims, steps)
def test_a_client_receives_exactly_what_its_patterns_allow(
    initial: list[str], script: list[tuple[str, Any]]
) -> None:
    hub = Hub(wall_clock=lambda: HUB_WALL_CLOCK)
    hub.publish("metrics", snapshot())
    core, peer = connect(hub, initial)
    got = [orjson.loads(f.payload) for f in core.start().frames][1:]  # the snapshot, if any
    patterns = list(initial)
    expected: list[tuple[str, Any]] = []
    if "metrics" in core.client.channels:
        expected.append(("metrics", _expected_metrics(patterns)))
    for kind, value in script:
        got += drain(peer)  # a client that keeps up (a pending snapshot is replaced)
        if kind == "topic":
            hub.publish_event(TopicCreated(name=value, partitions=1))
            if "topics" in core.client.channels and _visible(patterns, "topic", value):
                expected.append(("topic_created", value))
        elif kind == "group":
            hub.publish_event(GroupCreated(group_id=value, state="Stable", members=1))
            if "groups" in core.client.channels and _visible(patterns, "group", value):
                expected.append(("group_created", value))
        elif kind == "snapshot":
            hub.publish("metrics", snapshot())
            if "metrics" in core.client.channels:
                expected.append(("metrics", _expected_metrics(patterns)))
        else:
            (answer,) = send(core, {"type": "refresh", "data": {"token": mint(value)}})
            assert answer["type"] == "refreshed"
            patterns = list(value)
            got += drain(peer)
    got += drain(peer)
    received = [
        (m["type"], _shown(m) if m["type"] == "metrics" else names([m])[0])
        for m in got
        if m["type"] != "refreshed"
    ]
    assert received == expected


def _expected_metrics(patterns: list[str]) -> tuple[list[str], list[str]]:
    topics = [t for t in TOPICS if _visible(patterns, "topic", t)]
    groups = [g for g in GROUPS if _visible(patterns, "group", g)]
    return topics, groups


def _shown(message: dict[str, Any]) -> tuple[list[str], list[str]]:
    data = message["data"]
    topics = [t["name"] for t in data["topicStats"]]
    groups = [c["groupId"] for c in data["consumerLags"]]
    for lag in data["consumerLags"]:  # a group's lags name only visible topics
        assert {tl["topic"] for tl in lag["topicLags"]} <= set(topics)
    return topics, groups


def test_permissions_compare_by_their_patterns() -> None:
    assert Permissions(["metrics", "topics"]) == Permissions(["topics", "metrics"])
    assert len({Permissions(["metrics"]), Permissions(["metrics", "metrics"])}) == 1


def test_a_bus_snapshot_is_filtered_and_shared_per_set(hub: Hub) -> None:
    """A snapshot that came through a bus (``deliver``) is filtered too, one message
    (and one of each view) for every client of the set."""
    source = Hub(wall_clock=lambda: HUB_WALL_CLOCK)
    item = source.publish("metrics", snapshot())
    peers = [connect(hub, CLAIM, ["metrics", "metrics:lean"])[1] for _ in range(3)]
    hub.deliver("metrics", item)
    got = [[p.queue.get_nowait() for _ in range(2)] for p in peers]
    assert len({id(g[0]) for g in got}) == 1  # the filtered snapshot, shared
    assert len({id(g[1]) for g in got}) == 1  # its lean view, shared
    data = orjson.loads(got[0][0].payload)["data"]
    assert [t["name"] for t in data["topicStats"]] == ["orders.eu", "orders.us"]


def test_live_views_reach_a_restricted_client_filtered(hub: Hub) -> None:
    """Each tick's views go to a restricted client as its set sees them, whether the
    snapshot was published here or delivered from a bus."""
    source = Hub(wall_clock=lambda: HUB_WALL_CLOCK)
    _core, mine = connect(hub, CLAIM, ["metrics:lean", "metrics:topic:orders.eu"])
    _keyed, theirs = connect(hub, None, ["metrics:lean", "metrics:topic:orders.eu"])
    hub.publish("metrics", snapshot())
    restricted, keyed = drain(mine), drain(theirs)
    hub.deliver("metrics", source.publish("metrics", snapshot()))
    restricted += drain(mine)
    keyed += drain(theirs)
    for got, topics, groups in (
        (restricted, ["orders.eu", "orders.us"], ["billing-1", "billing-2"]),
        (keyed, list(TOPICS), list(GROUPS)),
    ):
        leans = [m["data"] for m in got if m["type"] == "metrics"]
        details = [m["data"] for m in got if m["type"] == "topic_detail"]
        assert len(leans) == len(details) == 2  # one of each a tick
        for lean in leans:
            assert [t["name"] for t in lean["topicStats"]] == topics
        for detail in details:
            assert [c["groupId"] for c in detail["consumers"]] == groups


def test_a_narrow_channel_is_filtered_however_it_was_subscribed(hub: Hub) -> None:
    """The hub checks what reaches a restricted client on delivery too: a narrow
    channel its claim hides, subscribed through ``Hub.subscribe`` (an embedder's
    call, past the session core's check), carries nothing to it."""
    core, mine = connect(hub, CLAIM, [])
    hub.subscribe(core.client, ["topic:payments", "topic:orders.eu", "group:ops"])
    publish_all(hub)
    assert names(drain(mine)) == ["orders.eu"]


def test_a_restricted_snapshot_is_filtered_without_parsing_it(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot published here is filtered from the dicts it was encoded from:
    the restricted set's message costs no parse of the JSON."""
    parses: list[bytes] = []
    real = orjson.loads

    def counting(data: bytes) -> Any:
        parses.append(data)
        return real(data)

    _core, mine = connect(hub, CLAIM, ["metrics", "metrics:lean"])
    monkeypatch.setattr("takhin_ws.core.access.filtered.orjson.loads", counting)
    hub.publish("metrics", snapshot())
    monkeypatch.undo()  # (the patch is orjson's own: the test's parses below count not)
    assert parses == []
    got = drain(mine)
    assert [m["type"] for m in got] == ["metrics", "metrics"]
    assert [t["name"] for t in got[0]["data"]["topicStats"]] == ["orders.eu", "orders.us"]

"""The session core without sockets: inputs in, frames and close decisions out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from conftest import sample_metrics
from takhin_ws import GroupCreated, Hub, Settings, TopicCreated, TopicDeleted
from takhin_ws.core.series import Series
from takhin_ws.core.session import CLOSE_POLICY, Close, Reply, SessionCore
from takhin_ws.lowlevel import QueueSubscriber
from takhin_ws.wire.websocket.frames import BARE, PLAIN


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def core_for(
    hub: Hub, channels: list[str] | None = None, clock: Clock | None = None, **settings: Any
) -> tuple[SessionCore, QueueSubscriber]:
    peer = QueueSubscriber()
    client = hub.add_client(peer, channels)
    return SessionCore(hub, Settings(**settings), client, clock=clock or Clock()), peer


def messages(reply: Reply) -> list[dict[str, Any]]:
    return [orjson.loads(frame.payload) for frame in reply.frames]


def types(reply: Reply) -> list[str]:
    return [m["type"] for m in messages(reply)]


def send(core: SessionCore, obj: object) -> Reply:
    return core.receive(orjson.dumps(obj).decode())


def test_start_is_welcome_then_the_latest_snapshot(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics(3))
    core, _ = core_for(hub)
    reply = core.start()
    assert reply.close is None
    welcome, snapshot = messages(reply)
    assert welcome["type"] == "welcome"
    assert welcome["data"]["clientId"] == core.id
    assert welcome["data"]["channels"] == ["groups", "metrics", "topics"]
    assert snapshot["type"] == "metrics"
    assert snapshot["data"]["clusterHealth"]["totalTopics"] == 3


def test_start_without_metrics_or_before_any_snapshot_sends_only_welcome(hub: Hub) -> None:
    core, _ = core_for(hub)
    assert types(core.start()) == ["welcome"]
    hub.publish("metrics", sample_metrics())
    topics_only, _ = core_for(hub, ["topics"])
    assert types(topics_only.start()) == ["welcome"]


def test_start_with_since_announces_the_resume_and_replays(hub: Hub) -> None:
    for name in "abcd":
        hub.publish_event(TopicCreated(name=name, partitions=1))
    core, _ = core_for(hub, ["topics"])
    got = messages(core.start({"topics": 2}, hub.epoch))
    assert [m["type"] for m in got] == ["welcome", "subscribed", "topic_created", "topic_created"]
    assert got[1]["data"]["recovered"] == {"topics": True}
    assert [m["offset"] for m in got[2:]] == [3, 4]
    # another epoch cannot be resumed exactly
    other, _ = core_for(hub, ["topics"])
    got = messages(other.start({"topics": 2}, "another-epoch"))
    assert [m["type"] for m in got] == ["welcome", "subscribed"]
    assert got[1]["data"]["recovered"] == {"topics": False}


def test_ping_is_answered_with_pong(hub: Hub) -> None:
    core, _ = core_for(hub)
    reply = send(core, {"type": "ping", "timestamp": 1})
    assert types(reply) == ["pong"]
    assert reply.close is None


def test_subscribe_replays_only_what_did_not_arrive_live(hub: Hub) -> None:
    core, _ = core_for(hub, [])
    core.start()
    for name in "abc":
        hub.publish_event(TopicCreated(name=name, partitions=1))
    request = {"channels": ["topics"], "since": {"topics": 1}, "epoch": hub.epoch}
    got = messages(send(core, {"type": "subscribe", "data": request}))
    assert [m["type"] for m in got] == ["subscribed", "topic_created", "topic_created"]
    assert [m["offset"] for m in got[1:]] == [2, 3]
    # now live: a second resume of the same range replays nothing it received live
    hub.publish_event(TopicCreated(name="d", partitions=1))
    got = messages(send(core, {"type": "subscribe", "data": request}))
    assert [m["offset"] for m in got[1:]] == [2, 3]  # not 4: that one arrived live


def test_subscribing_to_metrics_sends_the_snapshot_once(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics())
    core, _ = core_for(hub, ["topics"])
    core.start()
    assert types(send(core, {"type": "subscribe", "data": "metrics"})) == ["subscribed", "metrics"]
    assert types(send(core, {"type": "subscribe", "data": ["metrics"]})) == ["subscribed"]


def test_unsubscribe_answers_what_it_removed_and_the_count(hub: Hub) -> None:
    core, _ = core_for(hub, ["topics", "group:g1"])
    core.start()
    (msg,) = messages(send(core, {"type": "unsubscribe", "data": ["topics", "group:g2"]}))
    assert msg["data"]["channels"] == ["topics"]  # what the request removed
    assert msg["data"]["count"] == 1
    assert hub.subscribers("topics") == 0


def test_too_many_invalid_messages_decide_a_close(hub: Hub) -> None:
    clock = Clock()
    core, _ = core_for(hub, clock=clock, bad_message_limit=3, bad_message_window=10.0)
    core.start()
    for _ in range(3):
        reply = core.receive("nope")
        assert types(reply) == ["error"]
        assert reply.close is None
    reply = core.receive("nope")
    assert types(reply) == ["error"]  # the error still goes first
    assert reply.close == Close(CLOSE_POLICY, "too many invalid messages")


def test_invalid_messages_outside_the_window_are_forgotten(hub: Hub) -> None:
    clock = Clock()
    core, _ = core_for(hub, clock=clock, bad_message_limit=3, bad_message_window=10.0)
    for _ in range(20):
        assert core.receive("nope").close is None
        clock.now += 4.0  # never more than three in ten seconds


@pytest.mark.parametrize("stream", ["metrics", "bogus"])
def test_bad_since_counts_as_an_invalid_message(hub: Hub, stream: str) -> None:
    """Regression: the abuse counter's verdict on a bad ``since`` was discarded, so
    twenty of them with a limit of three left the connection open."""
    core, _ = core_for(hub, bad_message_limit=3)
    core.start()
    request = {"type": "subscribe", "data": {"channels": ["topics"], "since": {stream: 1}}}
    closes = [send(core, request).close for _ in range(20)]
    assert closes[:3] == [None] * 3
    assert closes[3] == Close(CLOSE_POLICY, "too many invalid messages")


def test_history_is_answered_with_the_series(hub: Hub) -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(sample_metrics(2), 1000.0)
    series.add(sample_metrics(3), 1002.0)
    peer = QueueSubscriber()
    client = hub.add_client(peer, ["topics"])  # needs no metrics subscription
    core = SessionCore(hub, Settings(), client, clock=Clock(), series=series)
    reply = send(core, {"type": "history"})
    assert reply.close is None
    (history,) = messages(reply)
    assert history["type"] == "history"
    assert "offset" not in history  # a reply, not a published message
    assert history["data"]["interval"] == 2.0
    assert [p["timestamp"] for p in history["data"]["points"]] == [1000.0, 1002.0]
    assert len(peer.queue) == 0  # nothing went through the client's queue


def test_history_without_a_series_is_empty(hub: Hub) -> None:
    core, _ = core_for(hub, interval=0.5)
    (history,) = messages(send(core, {"type": "history"}))
    assert history["data"] == {"interval": 0.5, "points": []}


# --- metrics views and format=bare ---


def test_subscribing_to_views_sends_their_latest_at_once(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics(2))
    core, _ = core_for(hub, [])
    core.start()
    got = messages(send(core, {"type": "subscribe", "data": ["metrics:topic:orders", "metrics"]}))
    assert [m["type"] for m in got] == ["subscribed", "metrics", "topic_detail"]
    assert got[2]["data"]["name"] == "orders"
    assert got[1]["offset"] == got[2]["offset"]
    # already subscribed: nothing again
    assert types(send(core, {"type": "subscribe", "data": "metrics:topic:orders"})) == [
        "subscribed"
    ]
    lean, _ = core_for(hub, ["metrics:lean"])
    assert types(lean.start()) == ["welcome", "metrics"]


def test_a_bare_core_says_nothing_and_hears_nothing(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics(4))
    peer = QueueSubscriber()
    client = hub.add_client(peer, ["metrics"], variant=BARE)
    core = SessionCore(hub, Settings(), client, clock=Clock())
    started = core.start({"topics": 0}, hub.epoch)
    assert [f.route for f in started.frames] == ["metrics"]  # the snapshot, no welcome
    bare = started.frames[0].variant(BARE)
    assert bare is not None
    assert orjson.loads(bare.payload)["clusterHealth"]["totalTopics"] == 4
    for message in ("{}", "not json", '{"type":"ping"}', '{"type":"subscribe","data":"topics"}'):
        for _ in range(Settings().bad_message_limit + 1):
            assert core.receive(message) == Reply()
    assert client.channels == {"metrics"}


def test_history_is_encoded_once_per_tick_and_never_sent_bare(hub: Hub) -> None:
    series = Series(window=60.0, interval=2.0)
    series.add(sample_metrics(2), 1000.0)
    cores = []
    for variant in (PLAIN, PLAIN, BARE):
        client = hub.add_client(QueueSubscriber(), ["metrics"], variant=variant)
        cores.append(SessionCore(hub, Settings(), client, clock=Clock(), series=series))
    first, second, bare = (send(core, {"type": "history"}).frames for core in cores)
    assert first[0] is second[0]  # one encoding shared by the clients of a tick
    assert bare == ()
    series.add(sample_metrics(3), 1002.0)
    (later,) = send(cores[0], {"type": "history"}).frames
    assert len(orjson.loads(later.payload)["data"]["points"]) == 2


# --- what mutation testing found unasserted (make mutation) ---


def error_of(reply: Reply) -> dict[str, Any]:
    (msg,) = messages(reply)
    assert msg["type"] == "error"
    data: dict[str, Any] = msg["data"]
    return data


def test_welcome_carries_the_connection_settings(hub: Hub) -> None:
    hub.publish_event(TopicCreated(name="a", partitions=1))
    core, _ = core_for(
        hub,
        ping_interval=7.0,
        ping_timeout=9.0,
        queue_size=32,
        max_message_size=4096,
        max_channels=12,
    )
    (welcome,) = messages(core.start())
    assert welcome["data"]["protocol"] == 1
    assert welcome["data"]["epoch"] == hub.epoch
    assert welcome["data"]["heartbeat"] == {"interval": 7.0, "timeout": 9.0}
    assert welcome["data"]["limits"] == {"queueSize": 32, "maxMessageSize": 4096, "maxChannels": 12}
    assert welcome["data"]["offsets"] == {"topics": 1, "groups": 0}
    assert welcome["data"]["source"] is None  # a caller that does not say
    (welcome,) = messages(core_for(hub)[0].start(source="synthetic"))
    assert welcome["data"]["source"] == "synthetic"


def test_start_resumes_each_stream_it_can(hub: Hub) -> None:
    for name in "ab":
        hub.publish_event(TopicCreated(name=name, partitions=1))
    hub.publish_event(GroupCreated(group_id="g", state="Empty", members=0))
    core, _ = core_for(hub, ["topics", "groups"])
    # metrics keeps no history (skipped); topics has nothing newer; groups is replayed
    got = messages(core.start({"metrics": 1, "topics": 2, "groups": 0}, hub.epoch))
    assert [m["type"] for m in got] == ["welcome", "subscribed", "group_created"]
    assert got[1]["data"]["recovered"] == {"topics": True, "groups": True}
    assert got[1]["data"]["count"] == 2


def test_an_invalid_message_at_the_window_edge_still_counts(hub: Hub) -> None:
    clock = Clock()
    core, _ = core_for(hub, clock=clock, bad_message_limit=1, bad_message_window=10.0)
    assert core.receive("nope").close is None
    clock.now = 10.0  # exactly one window later: the first is still inside it
    assert core.receive("nope").close == Close(CLOSE_POLICY, "too many invalid messages")


def test_a_bad_since_error_names_the_stream(hub: Hub) -> None:
    core, _ = core_for(hub)
    core.start()
    request = {"channels": ["topics"], "since": {"metrics": 1}}
    assert error_of(send(core, {"type": "subscribe", "data": request})) == {
        "code": "invalid_field",
        "message": "cannot resume 'metrics': only topics and groups keep history",
        "path": "$.data.since.metrics",
    }


@pytest.mark.parametrize("offset", [-1, 2**63])
def test_a_since_offset_out_of_range_is_refused(hub: Hub, offset: int) -> None:
    """The same range as ``?since=`` at connect (0 to 2**63 - 1): nothing is subscribed."""
    core, _ = core_for(hub, [])
    core.start()
    request = {"channels": ["topics"], "since": {"topics": offset}}
    assert error_of(send(core, {"type": "subscribe", "data": request})) == {
        "code": "invalid_field",
        "message": f"data.since.topics: an offset is 0 to {2**63 - 1}",
        "path": "$.data.since.topics",
    }
    assert core.client.channels == frozenset()


@pytest.mark.parametrize("offset", [0, 2**63 - 1])
def test_a_since_offset_at_either_end_of_the_range_is_taken(hub: Hub, offset: int) -> None:
    core, _ = core_for(hub, [])
    core.start()
    request = {"channels": ["topics"], "since": {"topics": offset}, "epoch": hub.epoch}
    (msg,) = messages(send(core, {"type": "subscribe", "data": request}))
    assert msg["type"] == "subscribed"
    assert core.client.channels == {"topics"}


def test_max_channels_is_a_limit_on_the_total(hub: Hub) -> None:
    core, _ = core_for(hub, ["topics"], max_channels=3)
    core.start()
    too_many = {"type": "subscribe", "data": ["groups", "metrics", "topic:a"]}
    assert error_of(send(core, too_many)) == {
        "code": "too_many_channels",
        "message": "a connection may subscribe to at most 3 channels (1 now, 3 more asked)",
        "path": "$.data",
    }
    assert core.client.channels == {"topics"}
    (msg,) = messages(send(core, {"type": "subscribe", "data": ["groups", "topic:a"]}))
    assert msg["data"]["count"] == 3  # exactly the limit is allowed


@pytest.mark.parametrize(
    ("held", "asked", "limits"),
    [
        (["topics"], ["groups", "metrics"], {"max_channels": 2}),
        (["metrics:lean"], ["metrics:topic:orders"], {"max_views": 1}),
    ],
)
def test_going_over_a_connection_limit_counts_as_an_invalid_message(
    hub: Hub, held: list[str], asked: list[str], limits: dict[str, Any]
) -> None:
    """A client's own excess (too many channels, too many views) is abuse like a bad
    message: past ``bad_message_limit`` of them the connection is closed (1008)."""
    hub.publish("metrics", sample_metrics())  # topic orders, for its view
    core, _ = core_for(hub, held, bad_message_limit=2, **limits)
    core.start()
    request = {"type": "subscribe", "data": asked}
    closes = [send(core, request).close for _ in range(3)]
    assert closes == [None, None, Close(CLOSE_POLICY, "too many invalid messages")]
    assert core.client.channels == set(held)


def test_a_view_of_a_group_or_topic_the_cluster_does_not_have_is_refused(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics())  # topic orders, no group
    core, _ = core_for(hub, ["topics"])
    core.start()
    ask = {"type": "subscribe", "data": ["metrics:topic:orders", "metrics:group:nope"]}
    assert error_of(send(core, ask)) == {
        "code": "unknown_view",
        "message": "no such group or topic in the cluster: metrics:group:nope",
        "path": "$.data",
    }
    assert core.client.channels == {"topics"}  # nothing of it applied
    got = messages(send(core, {"type": "subscribe", "data": "metrics:topic:orders"}))
    assert [m["type"] for m in got] == ["subscribed", "topic_detail"]
    for _ in range(20):  # an unknown view is not an invalid message: no close
        assert send(core, ask).close is None


def test_views_are_limited_per_connection(hub: Hub) -> None:
    hub.publish("metrics", sample_metrics())
    core, _ = core_for(hub, ["metrics:lean"], max_views=2)
    core.start()
    two_more = {"type": "subscribe", "data": ["metrics:topic:orders", "metrics:lean", "topics"]}
    assert messages(send(core, two_more))[0]["type"] == "subscribed"
    assert error_of(send(core, {"type": "subscribe", "data": "metrics:group:g"})) == {
        "code": "too_many_views",
        "message": "a connection may subscribe to at most 2 metrics views (2 now, 1 more asked)",
        "path": "$.data",
    }
    assert core.client.channels == {"metrics:lean", "metrics:topic:orders", "topics"}


def test_distinct_views_are_limited_per_server() -> None:
    hub = Hub(max_views=1)
    hub.publish("metrics", sample_metrics())
    first, _ = core_for(hub, [])
    second, _ = core_for(hub, [])
    for core in (first, second):
        core.start()
        got = messages(send(core, {"type": "subscribe", "data": "metrics:topic:orders"}))
        assert got[0]["type"] == "subscribed"  # the same view: no new one to build
    assert error_of(send(second, {"type": "subscribe", "data": "metrics:lean"})) == {
        "code": "views_unavailable",
        "message": "the server builds at most 1 distinct views per tick and has no room "
        "for more now",
        "path": "$.data",
    }


def test_subscribe_resumes_only_in_the_epoch_asked(hub: Hub) -> None:
    for name in "ab":
        hub.publish_event(TopicCreated(name=name, partitions=1))
    core, _ = core_for(hub, [])
    core.start()
    request = {"channels": ["topics"], "since": {"topics": 0}, "epoch": "another-epoch"}
    got = messages(send(core, {"type": "subscribe", "data": request}))
    assert [m["type"] for m in got] == ["subscribed"]
    assert got[0]["data"] == {"channels": ["topics"], "recovered": {"topics": False}, "count": 1}


def test_a_resume_replays_only_the_channels_subscribed(hub: Hub) -> None:
    for name in "aba":
        hub.publish_event(TopicDeleted(name=name))
    core, _ = core_for(hub, [])
    core.start()
    request = {"channels": ["topic:a"], "since": {"topics": 0}, "epoch": hub.epoch}
    got = messages(send(core, {"type": "subscribe", "data": request}))
    assert [(m["type"], m.get("offset")) for m in got] == [
        ("subscribed", None),
        ("topic_deleted", 1),
        ("topic_deleted", 3),
    ]


def test_what_arrived_live_is_not_replayed_while_the_stream_is_still_subscribed(
    hub: Hub,
) -> None:
    core, _ = core_for(hub, ["topics", "topic:a"])
    core.start()
    for name in "ab":
        hub.publish_event(TopicCreated(name=name, partitions=1))  # both arrive live
    send(core, {"type": "unsubscribe", "data": "topic:a"})  # topics still subscribed
    request = {"channels": ["topics"], "since": {"topics": 0}, "epoch": hub.epoch}
    assert types(send(core, {"type": "subscribe", "data": request})) == ["subscribed"]


def test_after_leaving_a_stream_a_resume_replays_what_was_missed(hub: Hub) -> None:
    core, _ = core_for(hub, ["topics"])
    core.start()
    hub.publish_event(TopicCreated(name="a", partitions=1))  # live
    send(core, {"type": "unsubscribe", "data": "topics"})
    hub.publish_event(TopicCreated(name="b", partitions=1))  # missed
    request = {"channels": ["topics"], "since": {"topics": 1}, "epoch": hub.epoch}
    got = messages(send(core, {"type": "subscribe", "data": request}))
    assert [(m["type"], m.get("offset")) for m in got] == [
        ("subscribed", None),
        ("topic_created", 2),
    ]


def test_unsubscribing_a_stream_without_history(hub: Hub) -> None:
    core, _ = core_for(hub, ["metrics", "topics"])
    core.start()
    (msg,) = messages(send(core, {"type": "unsubscribe", "data": "metrics"}))
    assert (msg["data"]["channels"], msg["data"]["count"]) == (["metrics"], 1)


def test_messages_are_decoded_as_client_messages_within_the_size_limit(hub: Hub) -> None:
    core, _ = core_for(hub, max_message_size=64)
    core.start()
    assert error_of(core.receive('{"type":"ping","timestamp":1}' + " " * 64))["code"] == (
        "too_large"
    )
    assert error_of(send(core, {"type": "pong"}))["code"] == "unknown_type"
    assert error_of(send(core, {"type": "subscribe", "data": 5})) == {
        "code": "invalid_field",
        "message": "expected a channel, an array of channels or an object, got a number",
        "path": "$.data",
    }


def test_a_binary_message_closes_with_1003(hub: Hub) -> None:
    core, _ = core_for(hub)
    core.start()
    assert core.receive(b'{"type":"ping"}') == Reply(
        close=Close(1003, "binary frames are not supported: send JSON text")
    )


def test_command_delay_is_a_token_bucket(hub: Hub) -> None:
    clock = Clock()
    core, _ = core_for(hub, clock=clock, command_rate=2.0, command_burst=3)
    assert [core.command_delay() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]  # burst, then wait
    clock.now = 1.25  # 2.5 tokens back: -1 + 2.5 = 1.5
    assert [core.command_delay() for _ in range(3)] == [0.0, 0.25, 0.75]
    clock.now = 100.0  # refilled, but never beyond the burst
    assert [core.command_delay() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_a_subscribe_outside_the_permitted_channels_is_forbidden_and_changes_nothing(
    hub: Hub,
) -> None:
    """With ``permits`` (an embedding app's authorization), a subscribe naming any
    channel it refuses gets ``forbidden`` and applies none of it, is not counted as
    abuse, and a permitted one is applied as always."""
    core, _ = core_for(hub, ["topic:orders"], bad_message_limit=1)
    core.permits = lambda channel: channel.startswith("topic:")
    before = core.client.channels
    for _ in range(3):  # over the invalid-message limit, were it counted
        reply = send(core, {"type": "subscribe", "data": ["topic:billing", "groups", "metrics"]})
        assert reply.close is None
        (error,) = messages(reply)
        assert error["data"] == {
            "code": "forbidden",
            "message": "not allowed on this connection: groups, metrics",
            "path": "$.data.channels",
        }
    assert core.client.channels == before
    assert hub.subscribers("groups") == 0
    assert types(send(core, {"type": "subscribe", "data": ["topic:billing"]})) == ["subscribed"]
    assert core.client.channels == {"topic:orders", "topic:billing"}


def test_the_permitted_channels_are_given_to_the_core_at_its_start(hub: Hub) -> None:
    """``permits`` passed to the constructor rules from the first message on."""
    peer = QueueSubscriber()
    client = hub.add_client(peer, [])
    core = SessionCore(
        hub, Settings(), client, clock=Clock(), permits=lambda channel: channel == "topics"
    )
    core.start()
    (error,) = messages(send(core, {"type": "subscribe", "data": ["topics", "groups"]}))
    assert error["data"]["code"] == "forbidden"
    assert types(send(core, {"type": "subscribe", "data": "topics"})) == ["subscribed"]
    assert core.client.channels == {"topics"}

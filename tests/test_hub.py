"""The sans-IO hub: registry, subscriptions, publish (encode once), offsets, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws._exceptions import HubClosedError, HubFullError
from takhin_ws.config.settings import DEFAULT_QUEUE_SIZE
from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.hub import (
    ALL_CHANNELS,
    DEFAULT_HISTORY_SIZE,
    DEFAULT_MAX_CLIENTS,
    Hub,
    QueueSubscriber,
    channel_of,
)
from takhin_ws.core.metrics import views as views_module
from takhin_ws.core.metrics.snapshot import GroupInfo
from takhin_ws.core.queue import Drop
from takhin_ws.wire.codec import decode, encode, payload_to_data
from takhin_ws.wire.messages import (
    Envelope,
    Error,
    GroupDeleted,
    GroupDetail,
    GroupUpdated,
    MonitoringMetrics,
    Payload,
    Ping,
    TopicCreated,
    TopicDeleted,
    TopicDetail,
    TopicStats,
)
from takhin_ws.wire.websocket.frames import BARE, Outbound, Variant, text_frame

EVERYTHING = frozenset({"metrics", "topics", "groups"})


#: A snapshot with one topic, for its view (a view of a topic the cluster does not
#: have is not built).
ORDERS = MonitoringMetrics(
    topic_stats=(
        TopicStats(
            name="orders",
            partitions=1,
            total_messages=0,
            total_bytes=0,
            produce_rate=0.0,
            fetch_rate=0.0,
        ),
    )
)


def drain(sub: QueueSubscriber) -> list[Outbound]:
    if sub.queue.closed and not sub.queue:
        return []
    return sub.queue.get_batch_nowait()


def topic(name: str) -> TopicCreated:
    return TopicCreated(name=name, partitions=1)


def group(group_id: str) -> GroupUpdated:
    return GroupUpdated(group_id=group_id, state="Stable", members=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- registry and limits ---


def test_max_clients_refusal() -> None:
    hub = Hub(max_clients=2)
    first = hub.add_client(QueueSubscriber())
    hub.add_client(QueueSubscriber())
    with pytest.raises(HubFullError):
        hub.add_client(QueueSubscriber())
    assert len(hub) == 2
    hub.remove_client(first)
    third = hub.add_client(QueueSubscriber())  # room again
    assert third in hub
    assert first not in hub
    assert len(hub) == 2


def test_zero_and_negative_limits() -> None:
    with pytest.raises(HubFullError):
        Hub(max_clients=0).add_client(QueueSubscriber())
    with pytest.raises(ValueError, match="max_clients"):
        Hub(max_clients=-1)
    with pytest.raises(ValueError, match="history_size"):
        Hub(history_size=-1)


def test_client_ids() -> None:
    hub = Hub()
    a = hub.add_client(QueueSubscriber())
    b = hub.add_client(QueueSubscriber())
    named = hub.add_client(QueueSubscriber(), client_id="dash-1")
    assert len({a.id, b.id, named.id}) == 3
    assert named.id == "dash-1"
    with pytest.raises(ValueError, match="already registered"):
        hub.add_client(QueueSubscriber(), client_id="dash-1")
    assert hub.clients() == (a, b, named)


def test_bad_channel_at_add_registers_nothing() -> None:
    hub = Hub()
    with pytest.raises(ValueError, match="unknown channel"):
        hub.add_client(QueueSubscriber(), ["metrics", "nope"])
    assert len(hub) == 0
    assert hub.statistics().subscribers == {}


def test_remove_client_is_idempotent_and_stops_delivery() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub)
    hub.remove_client(client)
    hub.remove_client(client)
    assert len(hub) == 0
    hub.publish_event(topic("orders"))
    assert drain(sub) == []
    assert hub.statistics().subscribers == {}
    with pytest.raises(ValueError, match="not registered"):
        hub.subscribe(client, ["metrics"])


def test_closed_hub_refuses_clients_and_messages() -> None:
    hub = Hub()
    hub.close()
    assert hub.closed
    with pytest.raises(HubClosedError):
        hub.add_client(QueueSubscriber())
    with pytest.raises(HubClosedError):
        hub.publish("metrics", MonitoringMetrics())


# --- subscriptions ---


def test_default_subscription_is_everything() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub)
    assert client.channels == EVERYTHING
    published = [
        hub.publish("metrics", MonitoringMetrics()),
        hub.publish_event(topic("orders")),
        hub.publish_event(group("billing")),
        hub.publish_event(TopicDeleted(name="payments")),
    ]
    assert drain(sub) == published


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (["metrics"], ["m"]),
        (["topics"], ["t-orders", "t-payments"]),
        (["groups"], ["g-billing", "g-audit"]),
        (["topic:orders"], ["t-orders"]),
        (["group:billing"], ["g-billing"]),
        (["topic:orders", "group:audit"], ["t-orders", "g-audit"]),
        (["topics", "topic:orders"], ["t-orders", "t-payments"]),
        (["metrics", "groups", "group:billing"], ["m", "g-billing", "g-audit"]),
        ([], []),
    ],
)
def test_subscriptions_filter(channels: list[str], expected: list[str]) -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, channels)
    messages = {
        "m": hub.publish("metrics", MonitoringMetrics()),
        "t-orders": hub.publish_event(topic("orders")),
        "g-billing": hub.publish_event(group("billing")),
        "t-payments": hub.publish_event(TopicDeleted(name="payments")),
        "g-audit": hub.publish_event(GroupDeleted(group_id="audit", state="Dead", members=0)),
    }
    got = drain(sub)
    assert got == [messages[name] for name in messages if name in expected]


def test_stream_and_narrow_channel_deliver_exactly_once() -> None:
    hub = Hub()
    both = QueueSubscriber()
    hub.add_client(both, ["topics", "topic:orders"])
    item = hub.publish_event(topic("orders"))
    assert drain(both) == [item]
    assert hub.statistics().delivered == 1


def test_subscribe_and_unsubscribe_change_delivery() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub, [])
    assert hub.subscribe(client, ["topic:orders", "metrics"]) == {"topic:orders", "metrics"}
    first = hub.publish_event(topic("orders"))
    hub.publish_event(topic("payments"))
    assert hub.unsubscribe(client, ["topic:orders", "groups"]) == {"metrics"}
    hub.publish_event(topic("orders"))
    metrics = hub.publish("metrics", MonitoringMetrics())
    assert drain(sub) == [first, metrics]
    with pytest.raises(ValueError, match="unknown channel"):
        hub.subscribe(client, ["topics", "bad channel"])
    assert client.channels == {"metrics"}  # unchanged by the failed call


def test_narrow_subscriber_does_not_get_stream_wide_publish() -> None:
    # A message published on the stream itself names no topic: only stream subscribers.
    hub = Hub()
    narrow, wide = QueueSubscriber(), QueueSubscriber()
    hub.add_client(narrow, ["topic:orders"])
    hub.add_client(wide, ["topics"])
    item = hub.publish("topics", topic("orders"))
    assert drain(narrow) == []
    assert drain(wide) == [item]


def test_publish_encodes_once_and_shares_the_object(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Envelope] = []
    real_encode: Callable[[Envelope], bytes] = encode

    def counting_encode(env: Envelope) -> bytes:
        calls.append(env)
        return real_encode(env)

    monkeypatch.setattr("takhin_ws.core.encoding.encode", counting_encode)
    hub = Hub()
    subs = [QueueSubscriber() for _ in range(5)]
    hub.add_client(subs[0])
    hub.add_client(subs[1], ["topics"])
    hub.add_client(subs[2], ["topic:orders"])
    hub.add_client(subs[3], ["topics", "topic:orders"])
    hub.add_client(subs[4], ["groups"])
    item = hub.publish_event(topic("orders"))
    assert len(calls) == 1
    for sub in subs[:4]:
        (got,) = drain(sub)
        assert got is item
    assert drain(subs[4]) == []
    assert hub.statistics().delivered == 4


def test_published_item_contents() -> None:
    hub = Hub(epoch="e1", wall_clock=lambda: 1700000000.9)
    item = hub.publish_event(topic("orders"))
    assert item.frame == text_frame(item.payload)
    assert (item.channel, item.offset, item.route) == ("topics", 1, "topic:orders")
    env = decode(item.payload)
    assert env == Envelope(
        payload=topic("orders"), timestamp=1700000000, channel="topics", offset=1, epoch="e1"
    )
    obj = orjson.loads(item.payload)
    assert list(obj) == ["type", "data", "timestamp", "channel", "offset", "epoch"]
    stale = orjson.loads(hub.publish("metrics", MonitoringMetrics(), stale=True).payload)
    assert stale["stale"] is True
    assert stale["channel"] == "metrics"


def test_stale_is_sent_as_given_with_any_message() -> None:
    """The hub does not judge ``stale``: an event published with it carries it, as a
    snapshot does (the producer only ever marks snapshots)."""
    hub = Hub()
    for stale in (True, False):
        obj = orjson.loads(hub.publish("topics", topic("orders"), stale=stale).payload)
        assert obj["stale"] is stale
    assert "stale" not in orjson.loads(hub.publish("topics", topic("orders")).payload)


def test_a_client_shows_its_id_and_channels() -> None:
    hub = Hub()
    client = hub.add_client(QueueSubscriber(), ["topics", "groups"], client_id="abc")
    assert repr(client) == "<Client abc channels=['groups', 'topics']>"


def test_reply_has_no_offset() -> None:
    hub = Hub(wall_clock=lambda: 42.0)
    item = hub.reply(Error(code="invalid_field", message="bad"))
    assert (item.channel, item.offset, item.route) == (None, None, None)
    assert decode(item.payload) == Envelope(
        payload=Error(code="invalid_field", message="bad"), timestamp=42
    )
    assert hub.statistics().published == 0
    assert hub.offset("topics") == 0


def test_channel_of() -> None:
    assert channel_of(topic("orders")) == "topic:orders"
    assert channel_of(TopicDeleted(name="x")) == "topic:x"
    assert channel_of(group("billing")) == "group:billing"
    assert channel_of(MonitoringMetrics()) == "metrics"
    with pytest.raises(TypeError):
        channel_of(Ping())


def test_publish_to_invalid_channel() -> None:
    hub = Hub()
    for bad in ("nope", "metrics\n", "topic:", "topic:a b"):
        with pytest.raises(ValueError, match="unknown channel"):
            hub.publish(bad, MonitoringMetrics())
    assert hub.statistics().published == 0


def test_closed_subscriber_queue_does_not_break_publish() -> None:
    hub = Hub()
    gone, alive = QueueSubscriber(), QueueSubscriber()
    hub.add_client(gone)
    hub.add_client(alive)
    gone.queue.close()  # its session ended before it was removed from the hub
    item = hub.publish_event(topic("orders"))
    assert drain(alive) == [item]
    with pytest.raises(trio.EndOfChannel):
        gone.queue.get_nowait()


# --- offsets and epoch ---


def test_offsets_increase_by_one_per_stream() -> None:
    hub = Hub()
    got = [
        (i.channel, i.offset)
        for i in [
            hub.publish_event(topic("a")),
            hub.publish_event(group("g")),
            hub.publish_event(topic("b")),
            hub.publish("topics", topic("c")),
            hub.publish("metrics", MonitoringMetrics()),
            hub.publish_event(GroupDeleted(group_id="h", state="Dead", members=0)),
            hub.publish("metrics", MonitoringMetrics()),
            hub.publish_event(topic("a")),
        ]
    ]
    assert got == [
        ("topics", 1),
        ("groups", 1),
        ("topics", 2),
        ("topics", 3),
        ("metrics", 1),
        ("groups", 2),
        ("metrics", 2),
        ("topics", 4),
    ]
    assert {s: hub.offset(s) for s in ("metrics", "topics", "groups")} == {
        "metrics": 2,
        "topics": 4,
        "groups": 2,
    }
    assert hub.statistics().offsets == {"metrics": 2, "topics": 4, "groups": 2}


def test_epoch() -> None:
    assert Hub(epoch="abc").epoch == "abc"
    a, b = Hub(), Hub()
    assert a.epoch
    assert a.epoch != b.epoch  # a restarted process starts a new epoch
    assert decode(a.publish_event(topic("x")).payload).epoch == a.epoch
    assert a.statistics().epoch == a.epoch


def test_deliver_keeps_offsets_and_history() -> None:
    source = Hub(epoch="shared")
    node = Hub(epoch="shared")
    sub = QueueSubscriber()
    node.add_client(sub, ["topic:orders"])
    items = [source.publish_event(topic(name)) for name in ("orders", "payments", "orders")]
    for item in items:
        assert item.route is not None
        node.deliver(item.route, item)
    assert drain(sub) == [items[0], items[2]]
    assert node.offset("topics") == 3
    assert node.replay("topics", 1, "shared") == items[1:]


# --- history and replay ---


def test_replay_exact_range_and_limits() -> None:
    hub = Hub(history_size=5, epoch="e")
    items = [hub.publish_event(topic(f"t{n}")) for n in range(1, 9)]  # offsets 1..8
    assert [i.offset for i in items] == list(range(1, 9))
    replayed = hub.replay("topics", 5, "e")
    assert replayed == items[5:]
    assert replayed is not None
    assert all(a is b for a, b in zip(replayed, items[5:], strict=True))
    assert hub.replay("topics", 3, "e") == items[3:]  # the oldest kept is 4 = 3 + 1
    assert hub.replay("topics", 7, None) == items[7:]  # no epoch: this one
    assert hub.replay("topics", 8, "e") == []  # up to date
    assert hub.replay("topics", 2, "e") is None  # 3 is no longer kept
    assert hub.replay("topics", 0, "e") is None
    assert hub.replay("topics", 9, "e") is None  # an offset from the future
    assert hub.replay("topics", -1, "e") is None
    assert hub.replay("topics", 5, "other") is None  # another epoch
    assert hub.replay("topics", 8, "other") is None
    assert hub.latest("topics") is items[-1]
    assert hub.replay("groups", 0, "e") == []  # nothing published yet
    assert hub.replay("groups", 1, "e") is None


def test_replay_on_each_stream_is_independent() -> None:
    hub = Hub(history_size=10)
    t = [hub.publish_event(topic("a")) for _ in range(3)]
    g = [hub.publish_event(group("g")) for _ in range(2)]
    assert hub.replay("topics", 1, hub.epoch) == t[1:]
    assert hub.replay("groups", 0, hub.epoch) == g


def test_metrics_history_keeps_only_the_latest() -> None:
    hub = Hub(history_size=10)
    snapshots = [hub.publish("metrics", MonitoringMetrics(timestamp=n)) for n in range(3)]
    assert hub.latest("metrics") is snapshots[-1]
    assert hub.replay("metrics", 2, None) == snapshots[2:]
    assert hub.replay("metrics", 1, None) is None
    assert hub.latest("groups") is None


def test_history_size_zero_keeps_no_events() -> None:
    hub = Hub(history_size=0)
    hub.publish_event(topic("a"))
    assert hub.replay("topics", 0, None) is None
    assert hub.replay("topics", 1, None) == []
    assert hub.latest("topics") is None
    snapshot = hub.publish("metrics", MonitoringMetrics())
    assert hub.latest("metrics") is snapshot  # the latest snapshot is always kept


def test_replay_ttl_expiry() -> None:
    clock = FakeClock()
    hub = Hub(history_size=100, history_ttl=10.0, clock=clock)
    first = [hub.publish_event(topic("a")) for _ in range(2)]  # t=0, offsets 1-2
    clock.now = 5.0
    third = hub.publish_event(topic("a"))  # t=5, offset 3
    clock.now = 10.0
    assert hub.replay("topics", 0, None) == [*first, third]  # exactly ttl old: still kept
    clock.now = 12.0
    assert hub.replay("topics", 0, None) is None  # 1 and 2 expired
    assert hub.replay("topics", 1, None) is None
    assert hub.replay("topics", 2, None) == [third]
    clock.now = 16.0
    assert hub.replay("topics", 2, None) is None
    assert hub.replay("topics", 3, None) == []  # up to date needs no history
    clock.now = 17.0
    fourth = hub.publish_event(topic("a"))
    assert hub.replay("topics", 3, None) == [fourth]


# --- statistics ---


def test_a_slow_client_holds_one_snapshot_and_every_event() -> None:
    hub = Hub(epoch="e")
    slow = QueueSubscriber(capacity=2)
    client = hub.add_client(slow)
    for _ in range(3):
        hub.publish("metrics", MonitoringMetrics())
        hub.publish_event(topic("orders"))
    hub.publish("metrics", MonitoringMetrics())
    pending = slow.queue.get_batch_nowait()
    # the first snapshot's place, the latest snapshot; the two newest events
    assert [(i.channel, i.offset) for i in pending] == [
        ("metrics", 4),
        ("topics", 2),
        ("topics", 3),
    ]
    assert slow.queue.take_drops() == [Drop("topics", 1, 1, 1)]
    stats = hub.statistics()
    assert (stats.conflated, stats.dropped) == (3, 1)
    hub.remove_client(client)
    assert hub.statistics().conflated == 3  # a removed client's still count


def test_statistics() -> None:
    hub = Hub(max_clients=10, epoch="e")
    small = QueueSubscriber(capacity=2)
    big = QueueSubscriber(capacity=100)
    narrow = QueueSubscriber(capacity=100)
    c_small = hub.add_client(small)
    hub.add_client(big, ["topics", "metrics"])
    hub.add_client(narrow, ["topic:orders", "groups"])
    stats = hub.statistics()
    assert stats.clients == 3
    assert stats.max_clients == 10
    assert stats.subscribers == {"groups": 2, "metrics": 2, "topic:orders": 1, "topics": 2}
    assert (stats.published, stats.delivered, stats.dropped, stats.peak_queue_depth) == (
        0,
        0,
        0,
        0,
    )
    for _ in range(5):
        hub.publish_event(topic("orders"))  # small, big, narrow
    hub.publish_event(topic("other"))  # small, big
    hub.publish("metrics", MonitoringMetrics())  # small, big
    stats = hub.statistics()
    assert stats.published == 7
    assert stats.delivered == 5 * 3 + 2 + 2
    # only the 2-slot queue overflowed, by its events: the snapshot is state, held besides
    assert stats.dropped == 6 - 2
    assert stats.peak_queue_depth == 7  # big holds 7
    assert stats.offsets == {"metrics": 1, "topics": 6, "groups": 0}
    assert hub.subscribers("topics") == 2
    assert hub.subscribers("topic:nothing") == 0

    drain(big)
    hub.remove_client(c_small)
    stats = hub.statistics()
    assert stats.clients == 2
    assert stats.subscribers == {"groups": 1, "metrics": 1, "topic:orders": 1, "topics": 1}
    assert stats.dropped == 4  # drops of a removed client still count
    assert stats.peak_queue_depth == 7  # so does the peak of a drained queue
    assert stats.delivered == 19


def test_statistics_peak_survives_removal() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub, ["topics"])
    for _ in range(4):
        hub.publish_event(topic("a"))
    hub.remove_client(client)
    stats = hub.statistics()
    assert (stats.clients, stats.peak_queue_depth, stats.dropped) == (0, 4, 0)
    assert stats.subscribers == {}


def test_conflated_snapshots_add_up_over_clients_present_and_gone() -> None:
    hub = Hub()
    clients = [hub.add_client(QueueSubscriber(), ["metrics"]) for _ in range(3)]
    for _ in range(3):  # nobody reads: each queue keeps the latest, 2 conflated each
        hub.publish("metrics", MonitoringMetrics())
    assert hub.statistics().conflated == 6
    hub.remove_client(clients[0])
    assert hub.statistics().conflated == 6
    hub.remove_client(clients[1])
    hub.remove_client(clients[2])
    assert hub.statistics().conflated == 6


def test_a_stale_snapshot_says_so() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics"])
    hub.publish("metrics", MonitoringMetrics(), stale=True)
    hub.publish("metrics", MonitoringMetrics())
    (latest,) = drain(sub)  # conflated: the fresh one replaced the stale one
    assert "stale" not in orjson.loads(latest.payload)
    hub.publish("metrics", MonitoringMetrics(), stale=True)
    (stale,) = drain(sub)
    assert orjson.loads(stale.payload)["stale"] is True


# --- property: what each client gets is exactly what it was subscribed to ---

CHANNELS = ["metrics", "topics", "groups", "topic:a", "topic:b", "group:x", "group:y"]
STREAM_OF_PREFIX = {"topic": "topics", "group": "groups"}


def model_stream(channel: str) -> str:
    prefix, sep, _ = channel.partition(":")
    return STREAM_OF_PREFIX[prefix] if sep else channel


def payload_for(channel: str) -> Payload:
    if channel == "metrics":
        return MonitoringMetrics()
    if model_stream(channel) == "topics":
        return topic(channel.partition(":")[2] or "any")
    return group(channel.partition(":")[2] or "any")


channel_sets = st.frozensets(st.sampled_from(CHANNELS), max_size=4)
operations = st.one_of(
    st.tuples(st.just("add"), st.none() | channel_sets),
    st.tuples(st.just("remove"), st.integers(0, 20)),
    st.tuples(st.just("subscribe"), st.integers(0, 20), channel_sets),
    st.tuples(st.just("unsubscribe"), st.integers(0, 20), channel_sets),
    st.tuples(st.just("publish"), st.sampled_from(CHANNELS)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, max_size=60))
def test_delivery_matches_subscriptions_at_publish_time(ops: list[tuple[Any, ...]]) -> None:
    hub = Hub(max_clients=8)
    subs: list[QueueSubscriber] = []  # every subscriber ever added, removed ones too
    clients: list[Any] = []
    live: dict[int, set[str]] = {}  # index in subs -> subscribed channels (the model)
    expected: list[list[tuple[str, int, str]]] = []
    offsets = {"metrics": 0, "topics": 0, "groups": 0}
    published: dict[tuple[str, int], Outbound] = {}
    offered = 0

    for op in ops:
        kind = op[0]
        if kind == "add":
            sub = QueueSubscriber(capacity=1000)
            if len(live) >= 8:
                with pytest.raises(HubFullError):
                    hub.add_client(sub, op[1])
                continue
            clients.append(hub.add_client(sub, op[1]))
            subs.append(sub)
            expected.append([])
            live[len(subs) - 1] = set(EVERYTHING if op[1] is None else op[1])
        elif kind == "publish":
            channel = op[1]
            stream = model_stream(channel)
            offsets[stream] += 1
            item = hub.publish(channel, payload_for(channel))
            published[stream, offsets[stream]] = item
            for index, channels in live.items():
                if channel in channels or stream in channels:
                    offered += 1
                    entry = (stream, offsets[stream], channel)
                    mine = expected[index]
                    # a snapshot is state: it replaces the one still pending, in place
                    pending = [n for n, e in enumerate(mine) if e[0] == "metrics" == stream]
                    if pending:
                        mine[pending[0]] = entry
                    else:
                        mine.append(entry)
        elif live:
            index = sorted(live)[op[1] % len(live)]
            if kind == "remove":
                hub.remove_client(clients[index])
                del live[index]
            elif kind == "subscribe":
                hub.subscribe(clients[index], op[2])
                live[index] |= op[2]
            else:
                hub.unsubscribe(clients[index], op[2])
                live[index] -= op[2]
        for index, channels in live.items():
            assert clients[index].channels == channels

    for index, sub in enumerate(subs):
        got = drain(sub)
        assert [(i.channel, i.offset, i.route) for i in got] == expected[index]
        for i in got:
            assert i.channel is not None
            assert i.offset is not None
            assert i is published[i.channel, i.offset]  # the shared object
    stats = hub.statistics()
    assert stats.clients == len(live)
    assert stats.delivered == offered
    assert stats.published == len(published)
    assert stats.dropped == 0
    assert stats.subscribers == {
        ch: n for ch in sorted(CHANNELS) if (n := sum(ch in channels for channels in live.values()))
    }


# --- wire variants: one object per variant and publish, shared by its clients ---


def test_clients_of_one_variant_share_one_object_per_publish() -> None:
    hub = Hub()
    compressing = Variant(window_bits=15, min_size=0)
    plain = [QueueSubscriber() for _ in range(2)]
    deflating = [QueueSubscriber() for _ in range(3)]
    bare = [QueueSubscriber() for _ in range(2)]
    for sub in plain:
        hub.add_client(sub)
    for sub in deflating:
        hub.add_client(sub, variant=compressing)
    for sub in bare:
        hub.add_client(sub, ["metrics"], variant=BARE)
    item = hub.publish("metrics", MonitoringMetrics())
    assert [drain(s) for s in plain] == [[item]] * 2
    got = {id(drain(s)[0]) for s in deflating}
    assert len(got) == 1
    assert item.variant(compressing) is not item
    bare_items = [drain(s) for s in bare]
    assert bare_items[0][0] is bare_items[1][0] is item.variant(BARE)
    assert bare_items[0][0].payload == orjson.dumps(payload_to_data(MonitoringMetrics()))
    assert hub.statistics().delivered == 7


def test_bare_clients_get_nothing_but_metrics() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub, variant=BARE)  # even subscribed to everything
    metrics = hub.publish("metrics", MonitoringMetrics())
    hub.publish_event(topic("orders"))
    hub.publish_event(group("billing"))
    assert [i.payload for i in drain(sub)] == [metrics.variant(BARE).payload]  # type: ignore[union-attr]
    client.offer(hub.reply(Error(code="x", message="y")))  # replies: nothing either
    client.offer(metrics)
    assert drain(sub) == [metrics.variant(BARE)]
    assert hub.statistics().delivered == 1  # what bare clients do not get is not counted


def test_narrow_subscribers_get_their_variant_exactly_once() -> None:
    hub = Hub()
    variant = Variant(window_bits=12, min_size=0)
    both, narrow = QueueSubscriber(), QueueSubscriber()
    hub.add_client(both, ["topics", "topic:orders"], variant=variant)
    hub.add_client(narrow, ["topic:orders"], variant=variant)
    item = hub.publish_event(topic("orders"))
    assert drain(both) == drain(narrow) == [item.variant(variant)]
    assert hub.statistics().delivered == 2


# --- metrics views: built once per tick, only while someone subscribes ---


def count_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The channel of every view built from now on (ahead of a publish or on demand)."""
    built: list[str] = []
    real = views_module._view

    def counting(item: Outbound, envelope: Any, channel: str, kind: str, data: Any) -> Outbound:
        built.append(channel)
        return real(item, envelope, channel, kind, data)

    monkeypatch.setattr(views_module, "_view", counting)
    return built


def test_views_reach_their_subscribers_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_builds(monkeypatch)
    hub = Hub()
    lean = [QueueSubscriber() for _ in range(3)]
    detail = QueueSubscriber()
    full = QueueSubscriber()
    for sub in lean:
        hub.add_client(sub, ["metrics:lean"])
    hub.add_client(detail, ["metrics:group:billing", "groups"])
    hub.add_client(full, ["metrics"])
    hub.note_groups({"billing": GroupInfo(state="Stable", members=2)})
    subs = [full, *lean, detail]
    # each tick read before the next (a pending snapshot would be superseded)
    first = hub.publish("metrics", MonitoringMetrics())
    ticks = [drain(sub) for sub in subs]
    second = hub.publish("metrics", MonitoringMetrics(timestamp=2))
    got = [a + b for a, b in zip(ticks, (drain(sub) for sub in subs), strict=True)]
    assert sorted(built) == ["metrics:group:billing"] * 2 + ["metrics:lean"] * 2
    assert got[0] == [first, second]
    lean_items = got[1:4]
    assert lean_items[0] == lean_items[1] == lean_items[2]
    assert all(a is b for a, b in zip(lean_items[0], lean_items[1], strict=True))
    assert [decode(i.payload).payload for i in lean_items[0]] == [
        MonitoringMetrics(),
        MonitoringMetrics(timestamp=2),
    ]
    assert [(i.channel, i.offset, i.route) for i in lean_items[0]] == [
        ("metrics", 1, "metrics:lean"),
        ("metrics", 2, "metrics:lean"),
    ]
    details = got[4]
    assert [decode(i.payload).payload for i in details] == [
        GroupDetail(group_id="billing", state="Stable", members=2)
    ] * 2
    assert hub.statistics().delivered == 2 + 6 + 2
    assert hub.latest("metrics:lean") is lean_items[0][1]
    assert hub.latest("metrics") is second


def test_views_nobody_subscribes_to_are_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_builds(monkeypatch)
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub, ["metrics:lean", "metrics:topic:orders"])
    hub.publish("metrics", ORDERS)
    hub.unsubscribe(client, ["metrics:lean"])
    hub.publish("metrics", ORDERS)
    hub.remove_client(client)
    hub.publish("metrics", ORDERS)
    assert sorted(built) == ["metrics:lean", "metrics:topic:orders", "metrics:topic:orders"]
    # pending: the first lean view, and the second topic view in the first one's place
    assert sorted((i.route, i.offset) for i in drain(sub)) == [
        ("metrics:lean", 1),
        ("metrics:topic:orders", 2),
    ]


def test_a_view_subscribed_between_ticks_is_built_from_the_latest_snapshot() -> None:
    hub = Hub()
    assert hub.latest("metrics:lean") is None
    metrics = hub.publish("metrics", attrs.evolve(ORDERS, timestamp=3))
    sub = QueueSubscriber()
    client = hub.add_client(sub, [])
    hub.subscribe(client, ["metrics:topic:orders"])
    latest = hub.latest("metrics:topic:orders")
    assert latest is not None
    assert latest.offset == metrics.offset
    assert decode(latest.payload).payload == TopicDetail(name="orders", partitions=1)
    assert hub.latest("metrics:topic:orders") is latest  # once per tick
    assert drain(sub) == []  # sending it is the session's business


def test_views_of_delivered_snapshots() -> None:
    source = Hub(epoch="shared")
    node = Hub(epoch="shared")
    sub = QueueSubscriber()
    node.add_client(sub, ["metrics:lean", "metrics:group:billing"])
    node.deliver("groups", source.publish_event(group("billing")))
    item = source.publish("metrics", MonitoringMetrics())
    node.deliver("metrics", item)
    detail, lean = sorted(drain(sub), key=lambda i: i.route or "")
    assert decode(lean.payload).payload == MonitoringMetrics()
    # not in the lags, but the group event told its state
    assert decode(detail.payload).payload == GroupDetail(
        group_id="billing", state="Stable", members=1
    )
    assert node.latest("metrics:lean") is lean
    node.reset("new")
    assert node.latest("metrics:lean") is None


def test_views_of_a_remembered_snapshot() -> None:
    item = Hub(epoch="shared").publish("metrics", MonitoringMetrics(timestamp=4))
    node = Hub(epoch="shared")
    node.remember("metrics", item)
    lean = node.latest("metrics:lean")
    assert lean is not None
    assert decode(lean.payload).payload == MonitoringMetrics(timestamp=4)


def test_group_detail_state_from_snapshot_groups() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, ["metrics:group:billing"])
    hub.note_groups({"billing": GroupInfo(state="Stable", members=2)})
    details = []
    for event in (
        None,
        GroupUpdated(group_id="billing", state="Empty", members=0),
        GroupDeleted(group_id="billing", state="Dead", members=0),
    ):
        if event is not None:
            hub.publish_event(event)
        hub.publish("metrics", MonitoringMetrics())
        details += [decode(i.payload).payload for i in drain(sub)]  # read every tick
    assert details == [  # once deleted, the group has no view to build
        GroupDetail(group_id="billing", state="Stable", members=2),
        GroupDetail(group_id="billing", state="Empty", members=0),
    ]


def test_views_of_groups_the_cluster_does_not_have_cost_nothing_per_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = count_builds(monkeypatch)
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, [f"metrics:group:ghost-{n}" for n in range(256)])
    for _ in range(3):
        hub.publish("metrics", ORDERS)
    assert built == []
    assert drain(sub) == []
    stats = hub.statistics()
    assert (stats.views, stats.views_built, stats.views_skipped) == (256, 0, 0)


def test_distinct_views_built_per_tick_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    built = count_builds(monkeypatch)
    hub = Hub(max_views=2)
    hub.note_groups({"billing": GroupInfo(state="Stable", members=1)})
    subs = [QueueSubscriber() for _ in range(3)]
    for sub, channel in zip(
        subs, ["metrics:lean", "metrics:topic:orders", "metrics:group:billing"], strict=True
    ):
        hub.add_client(sub, [channel])
    for _ in range(2):
        hub.publish("metrics", ORDERS)
    # the first two subscribed are built each tick, the third never
    assert sorted(built) == sorted(["metrics:lean", "metrics:topic:orders"] * 2)
    assert [len(drain(sub)) for sub in subs] == [1, 1, 0]  # one pending: conflated
    stats = hub.statistics()
    assert (stats.views, stats.max_views, stats.views_built, stats.views_skipped) == (3, 2, 4, 2)


def test_view_churn_never_parses_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscribing and unsubscribing a view (the last subscriber leaving each time)
    builds one small view per subscribe, from the snapshot the tick decoded."""
    parses: list[object] = []
    real = orjson.loads

    def counting(data: bytes) -> object:
        parses.append(data)
        return real(data)

    monkeypatch.setattr("takhin_ws.core.metrics.views.orjson.loads", counting)
    hub = Hub()
    hub.publish("metrics", ORDERS)
    client = hub.add_client(QueueSubscriber(), [])
    for _ in range(100):
        hub.subscribe(client, ["metrics:topic:orders"])
        assert hub.latest("metrics:topic:orders") is not None
        hub.unsubscribe(client, ["metrics:topic:orders"])
        assert hub.subscribe_refusal(frozenset(), frozenset({"metrics:topic:nope"}), 9, 9)
    assert parses == []


def test_publishing_on_a_view_is_refused() -> None:
    hub = Hub()
    with pytest.raises(ValueError, match="view of metrics"):
        hub.publish("metrics:lean", MonitoringMetrics())
    assert hub.offset("metrics") == 0


def test_bare_clients_of_views() -> None:
    hub = Hub()
    lean, detail = QueueSubscriber(), QueueSubscriber()
    hub.add_client(lean, ["metrics:lean"], variant=BARE)
    hub.add_client(detail, ["metrics:group:x"], variant=BARE)
    hub.publish("metrics", MonitoringMetrics())
    (got,) = drain(lean)
    assert orjson.loads(got.payload) == payload_to_data(MonitoringMetrics())
    assert drain(detail) == []  # a group_detail has no bare form


# --- what mutation testing found unguarded (issue 18) ---


def test_a_channel_subscribed_after_a_publish_receives_the_next_one() -> None:
    hub = Hub()
    early, late = QueueSubscriber(), QueueSubscriber()
    hub.add_client(early, ["topics", "topic:orders"])
    hub.publish_event(topic("orders"))  # the subscriber lists are cached now
    hub.publish("topics", topic("orders"))
    late_client = hub.add_client(late, [])
    hub.subscribe(late_client, ["topics", "topic:orders"])
    again = hub.publish_event(topic("orders"))
    wide = hub.publish("topics", topic("other"))
    assert drain(late) == [again, wide]
    hub.unsubscribe(late_client, ["topics"])
    narrow = hub.publish_event(topic("orders"))
    hub.publish("topics", topic("other"))
    assert drain(late) == [narrow]


def test_deliver_of_a_narrow_channel_reaches_stream_and_channel_subscribers() -> None:
    items = [Hub(epoch="e").publish_event(topic("orders"))]
    node = Hub(epoch="e")
    wide, narrow, other = QueueSubscriber(), QueueSubscriber(), QueueSubscriber()
    node.add_client(wide, ["topics"])
    node.add_client(narrow, ["topic:orders"])
    node.add_client(other, ["topic:payments", "groups"])
    node.deliver("topic:orders", items[0])
    assert drain(wide) == drain(narrow) == items
    assert drain(other) == []
    stats = node.statistics()
    assert (stats.published, stats.delivered) == (1, 2)


def test_drops_of_removed_clients_add_up() -> None:
    hub = Hub()
    subs = [QueueSubscriber(capacity=1) for _ in range(3)]
    clients = [hub.add_client(sub, ["topics"]) for sub in subs]
    for _ in range(4):
        hub.publish_event(topic("a"))  # each queue keeps 1, drops 3
    hub.remove_client(clients[0])
    hub.remove_client(clients[1])
    assert hub.statistics().dropped == 9
    hub.remove_client(clients[2])
    assert hub.statistics().dropped == 9


def test_names_no_channel_can_carry_fall_back_to_the_stream() -> None:
    long_name = "t" * 250
    assert channel_of(TopicCreated(name="a b", partitions=1)) == "topics"
    assert channel_of(TopicDeleted(name=long_name)) == "topics"
    assert channel_of(GroupUpdated(group_id="g\tx", state="Stable", members=1)) == "groups"
    assert channel_of(GroupDeleted(group_id="", state="Dead", members=0)) == "groups"
    hub = Hub()
    wide, narrow = QueueSubscriber(), QueueSubscriber()
    hub.add_client(wide, ["topics"])
    hub.add_client(narrow, ["topic:a"])
    item = hub.publish_event(TopicCreated(name="a b", partitions=1))
    assert (item.channel, item.route) == ("topics", "topics")
    assert drain(wide) == [item]
    assert drain(narrow) == []


def test_default_constants() -> None:
    assert DEFAULT_MAX_CLIENTS == 10_000
    assert DEFAULT_HISTORY_SIZE == 1000
    assert {"metrics", "topics", "groups"} == ALL_CHANNELS
    hub = Hub()
    assert (hub.max_clients, hub.history_size, hub.history_ttl) == (10_000, 1000, None)
    assert len(hub.epoch) == 16
    int(hub.epoch, 16)
    assert Hub().epoch != hub.epoch
    assert QueueSubscriber().queue.capacity == DEFAULT_QUEUE_SIZE


def test_a_group_that_takes_nothing_does_not_stop_the_others() -> None:
    hub = Hub()
    first_bare, plain, deflating = QueueSubscriber(), QueueSubscriber(), QueueSubscriber()
    compressing = Variant(window_bits=15, min_size=0)
    for channels in (["topics", "topic:orders", "metrics:group:g"], ["topic:orders"]):
        hub.add_client(QueueSubscriber(), channels, variant=BARE)  # each channel: bare first
    hub.add_client(first_bare, ["topics"], variant=BARE)
    hub.add_client(plain, ["topics", "metrics:group:g"])
    hub.add_client(deflating, ["topic:orders", "metrics:group:g"], variant=compressing)
    hub.note_groups({"g": GroupInfo(state="Dead", members=0)})
    event = hub.publish_event(topic("orders"))
    hub.publish("metrics", MonitoringMetrics())
    assert drain(first_bare) == []
    (got_event, got_view) = drain(plain)
    assert got_event is event
    assert decode(got_view.payload).payload == GroupDetail(group_id="g")
    (narrow_event, compressed_view) = drain(deflating)
    assert narrow_event is event.variant(compressing)
    assert compressed_view is got_view.variant(compressing)


def test_error_texts() -> None:
    hub = Hub(max_clients=1)
    hub.add_client(QueueSubscriber())
    with pytest.raises(HubFullError) as full:
        hub.add_client(QueueSubscriber())
    assert str(full.value) == "hub is full (1 clients)"
    hub.close()
    with pytest.raises(HubClosedError) as closed:
        hub.add_client(QueueSubscriber())
    assert str(closed.value) == "hub is closed"
    with pytest.raises(HubClosedError) as closed:
        hub.publish("metrics", MonitoringMetrics())
    assert str(closed.value) == "hub is closed"
    with pytest.raises(TypeError) as kind:
        channel_of(Ping())
    assert str(kind.value) == "ping is not published on a channel"


def test_each_deliver_counts_as_published() -> None:
    source = Hub(epoch="e")
    items = [source.publish_event(topic(name)) for name in "abc"]
    node = Hub(epoch="e")
    for item in items:
        node.deliver("topics", item)
    assert node.statistics().published == 3


def test_metrics_envelope_fields() -> None:
    hub = Hub(epoch="e2", wall_clock=lambda: 1700000123.7)
    item = hub.publish("metrics", MonitoringMetrics(timestamp=5), stale=False)
    obj = orjson.loads(item.payload)
    assert list(obj) == ["type", "data", "timestamp", "channel", "offset", "epoch", "stale"]
    assert (obj["timestamp"], obj["channel"], obj["offset"], obj["epoch"], obj["stale"]) == (
        1700000123,
        "metrics",
        1,
        "e2",
        False,
    )
    assert obj["data"]["timestamp"] == 5
    assert item.payload == encode(
        Envelope(
            payload=MonitoringMetrics(timestamp=5),
            timestamp=1700000123,
            channel="metrics",
            offset=1,
            epoch="e2",
            stale=False,
        )
    )


def test_a_view_left_by_everyone_is_rebuilt_for_the_next_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = count_builds(monkeypatch)
    hub = Hub()
    client = hub.add_client(QueueSubscriber(), ["metrics:lean"])
    hub.publish("metrics", MonitoringMetrics())
    hub.unsubscribe(client, ["metrics:lean"])
    hub.subscribe(client, ["metrics:lean"])
    assert hub.latest("metrics:lean") is not None
    assert built == ["metrics:lean", "metrics:lean"]  # nothing kept for nobody


def test_constructor_arguments_and_refusals() -> None:
    assert Hub(history_ttl=5.0).history_ttl == 5.0
    with pytest.raises(ValueError, match=r"^max_clients must be >= 0$"):
        Hub(max_clients=-1)
    with pytest.raises(ValueError, match=r"^history_size must be >= 0$"):
        Hub(history_size=-1)
    hub = Hub()
    assert [hub.add_client(QueueSubscriber()).id for _ in range(3)] == ["c1", "c2", "c3"]


@pytest.mark.parametrize("channel", ["topics", "topic:orders"])
def test_a_variant_that_gets_nothing_does_not_stop_the_others(channel: str) -> None:
    # the bare client's group comes first and receives no event: the plain one still does
    hub = Hub()
    bare, plain = QueueSubscriber(), QueueSubscriber()
    hub.add_client(bare, [channel], variant=BARE)
    hub.add_client(plain, [channel])
    hub.publish_event(TopicCreated(name="orders", partitions=1))
    assert drain(bare) == []
    assert [orjson.loads(i.payload)["type"] for i in drain(plain)] == ["topic_created"]


# --- permissions (a token's channels claim) ---


def test_a_restricted_client_subscribes_to_what_its_claim_allows() -> None:
    hub = Hub()
    claim = Permissions(["metrics", "topic:orders*"])
    by_default = hub.add_client(QueueSubscriber(), permissions=claim)
    assert by_default.channels == {"metrics", "topics"}  # no group is visible
    assert by_default.permissions == claim
    with pytest.raises(ValueError, match=r"^channels not permitted: \['groups', 'topic:x'\]$"):
        hub.add_client(QueueSubscriber(), ["metrics", "groups", "topic:x"], permissions=claim)
    assert len(hub.clients()) == 1  # the refused one is not registered
    named = hub.add_client(QueueSubscriber(), ["topic:orders"], permissions=claim)
    assert named.channels == {"topic:orders"}


def test_a_restricted_client_receives_the_events_it_may_see_only() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    hub.add_client(sub, ["topics"], permissions=Permissions(["topic:orders*"]))
    everyone = QueueSubscriber()
    hub.add_client(everyone, ["topics"])
    seen = hub.publish_event(topic("orders.eu"))
    hub.publish_event(topic("payments"))
    assert [o.offset for o in drain(sub)] == [seen.offset]
    assert len(drain(everyone)) == 2


def test_set_permissions_unsubscribes_what_the_new_claim_refuses() -> None:
    hub = Hub()
    sub = QueueSubscriber()
    client = hub.add_client(sub, ["metrics", "topics", "groups"], permissions=Permissions(["*"]))
    removed = hub.set_permissions(client, Permissions(["metrics", "group:billing"]))
    assert removed == {"topics"}
    assert client.channels == {"metrics", "groups"}
    assert client.permissions == Permissions(["metrics", "group:billing"])
    hub.publish_event(topic("orders"))
    hub.publish_event(group("other"))
    billing = hub.publish_event(group("billing"))
    assert [o.offset for o in drain(sub)] == [billing.offset]
    assert hub.subscribers("topics") == 0
    # no claim any more (an API key): nothing is unsubscribed, everything is seen
    assert hub.set_permissions(client, None) == frozenset()
    assert client.channels == {"metrics", "groups"}
    other = hub.publish_event(group("other"))
    assert [o.offset for o in drain(sub)] == [other.offset]


def test_latest_as_a_claim_sees_it() -> None:
    hub = Hub()
    claim = Permissions(["topic:orders*"])
    assert hub.latest("topics", claim) is None
    orders = hub.publish_event(topic("orders"))
    assert hub.latest("topics", claim) is orders
    hub.publish_event(topic("payments"))
    assert hub.latest("topics", claim) is None  # the last one is not for this claim
    assert hub.latest("topics") is not None

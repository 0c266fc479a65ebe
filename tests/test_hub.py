"""The sans-IO hub: registry, subscriptions, publish (encode once), offsets, history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from takhin_ws._codec import decode, encode
from takhin_ws._exceptions import HubClosedError, HubFullError
from takhin_ws._frames import Outbound, text_frame
from takhin_ws._hub import Hub, QueueSubscriber, channel_of
from takhin_ws._messages import (
    Envelope,
    Error,
    GroupDeleted,
    GroupUpdated,
    MonitoringMetrics,
    Payload,
    Ping,
    TopicCreated,
    TopicDeleted,
)

EVERYTHING = frozenset({"metrics", "topics", "groups"})


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

    monkeypatch.setattr("takhin_ws._hub.encode", counting_encode)
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
    assert stats.dropped == 7 - 2  # only the 2-slot queue overflowed
    assert stats.peak_queue_depth == 7  # big holds 7
    assert stats.offsets == {"metrics": 1, "topics": 6, "groups": 0}
    assert hub.subscribers("topics") == 2
    assert hub.subscribers("topic:nothing") == 0

    drain(big)
    hub.remove_client(c_small)
    stats = hub.statistics()
    assert stats.clients == 2
    assert stats.subscribers == {"groups": 1, "metrics": 1, "topic:orders": 1, "topics": 1}
    assert stats.dropped == 5  # drops of a removed client still count
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
                    expected[index].append((stream, offsets[stream], channel))
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
    assert stats.delivered == sum(map(len, expected))
    assert stats.published == len(published)
    assert stats.dropped == 0
    assert stats.subscribers == {
        ch: n for ch in sorted(CHANNELS) if (n := sum(ch in channels for channels in live.values()))
    }

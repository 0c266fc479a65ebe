"""The hub's side of a shared bus (sans-IO): ``remember``, ``reset`` and ``deliver``
keeping a contiguous history when the bus's offsets jump."""

from __future__ import annotations

import orjson

from takhin_ws.core.access.permissions import Permissions
from takhin_ws.core.hub import Hub, QueueSubscriber
from takhin_ws.wire.codec import decode
from takhin_ws.wire.messages import (
    GroupCreated,
    GroupDetail,
    MonitoringMetrics,
    TopicCreated,
)
from takhin_ws.wire.websocket.frames import Outbound


def topic(name: str) -> TopicCreated:
    return TopicCreated(name=name, partitions=1)


def drain(sub: QueueSubscriber) -> list[Outbound]:
    return sub.queue.get_batch_nowait() if sub.queue else []


def published(count: int, *, epoch: str = "shared") -> list[Outbound]:
    """What a bus would carry: *count* topic events with offsets 1..count."""
    source = Hub(epoch=epoch)
    return [source.publish_event(topic(f"t{n}")) for n in range(1, count + 1)]


def test_remember_fills_history_and_offset_without_sending() -> None:
    items = published(5)
    node = Hub(epoch="shared", history_size=3)
    sub = QueueSubscriber()
    node.add_client(sub)
    for item in items:
        assert item.route is not None
        node.remember(item.route, item)
    assert drain(sub) == []  # nobody is sent the past
    assert node.offset("topics") == 5
    assert node.replay("topics", 2, "shared") == items[2:]
    assert node.replay("topics", 1, "shared") is None  # beyond history_size
    assert node.statistics().published == 0
    # live items continue from there and do reach the client
    more = published(6)[5]
    node.deliver("topics", more)
    assert drain(sub) == [more]
    assert node.replay("topics", 3, "shared") == [*items[3:], more]


def test_remember_keeps_only_the_latest_metrics() -> None:
    source = Hub(epoch="e")
    snapshots = [source.publish("metrics", MonitoringMetrics(timestamp=n)) for n in (1, 2)]
    node = Hub(epoch="e")
    for item in snapshots:
        node.remember("metrics", item)
    assert node.latest("metrics") is snapshots[-1]
    assert node.offset("metrics") == 2


def test_deliver_across_a_hole_drops_the_history_before_it() -> None:
    items = published(8)
    node = Hub(epoch="shared")
    for item in items[:3]:
        node.deliver("topics", item)
    for item in items[6:]:  # 4..6 never reached this node
        node.deliver("topics", item)
    assert node.offset("topics") == 8
    assert node.replay("topics", 2, "shared") is None  # cannot be replayed exactly
    assert node.replay("topics", 6, "shared") == items[6:]
    assert node.replay("topics", 7, "shared") == items[7:]


def test_reset_starts_a_new_epoch_and_keeps_clients() -> None:
    node = Hub(epoch="old")
    sub = QueueSubscriber()
    client = node.add_client(sub)
    for item in published(4, epoch="old"):
        node.deliver("topics", item)
    drain(sub)
    node.reset("new")
    assert node.epoch == "new"
    assert node.offset("topics") == 0
    assert node.latest("topics") is None
    assert node.replay("topics", 4, "old") is None
    assert client in node
    fresh = published(2, epoch="new")
    for item in fresh:
        node.deliver("topics", item)
    notice, *events = drain(sub)
    assert orjson.loads(notice.payload)["type"] == "epoch"  # announced before the new epoch
    assert notice.offset is None
    assert events == fresh
    assert node.replay("topics", 0, "new") == fresh


def test_a_remembered_snapshot_and_group_event_feed_the_views() -> None:
    source = Hub(epoch="shared")
    created = source.publish_event(GroupCreated(group_id="billing", state="Stable", members=3))
    snapshot = source.publish("metrics", MonitoringMetrics(timestamp=4))
    node = Hub(epoch="shared")
    node.remember("groups", created)
    node.remember("metrics", snapshot)
    assert node.latest("metrics", Permissions(["metrics"])) is not None  # filtered from it
    detail = node.latest("metrics:group:billing")
    assert detail is not None
    assert decode(detail.payload).payload == GroupDetail(
        group_id="billing", state="Stable", members=3
    )
    node.remember("topics", source.publish_event(topic("orders")))  # an event of another stream
    assert node.latest("metrics:group:billing") is not None

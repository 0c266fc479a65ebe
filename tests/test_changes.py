"""Change events from successive snapshots (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from takhin_ws.core.metrics.changes import diff
from takhin_ws.core.metrics.snapshot import GroupInfo, Snapshot
from takhin_ws.wire.messages import (
    GroupCreated,
    GroupDeleted,
    GroupState,
    GroupUpdated,
    MonitoringMetrics,
    TopicCreated,
    TopicDeleted,
    TopicStats,
)


def snap(topics: Mapping[str, int], groups: Mapping[str, tuple[GroupState, int]]) -> Snapshot:
    stats = tuple(
        TopicStats(
            name=name,
            partitions=partitions,
            total_messages=0,
            total_bytes=0,
            produce_rate=0.0,
            fetch_rate=0.0,
        )
        for name, partitions in topics.items()
    )
    return Snapshot(
        metrics=MonitoringMetrics(topic_stats=stats),
        groups={g: GroupInfo(state=s, members=m) for g, (s, m) in groups.items()},
    )


def test_identical_snapshots_yield_nothing() -> None:
    a = snap({"orders": 3}, {"billing": ("Stable", 2)})
    b = snap({"orders": 3}, {"billing": ("Stable", 2)})
    assert diff(a, b) == []


def test_topic_appears_and_disappears() -> None:
    before = snap({"orders": 3, "old": 1}, {})
    after = snap({"orders": 3, "clicks": 12}, {})
    assert diff(before, after) == [
        TopicCreated(name="clicks", partitions=12),
        TopicDeleted(name="old"),
    ]


def test_partition_count_change_is_not_an_event() -> None:
    assert diff(snap({"orders": 3}, {}), snap({"orders": 6}, {})) == []


def test_group_created_updated_deleted() -> None:
    before = snap(
        {},
        {
            "same": ("Stable", 2),
            "state": ("Stable", 2),
            "members": ("Stable", 2),
            "gone": ("Empty", 0),
        },
    )
    after = snap(
        {},
        {
            "same": ("Stable", 2),
            "state": ("PreparingRebalance", 2),
            "members": ("Stable", 3),
            "new": ("Empty", 0),
        },
    )
    assert diff(before, after) == [
        GroupCreated(group_id="new", state="Empty", members=0),
        GroupUpdated(group_id="state", state="PreparingRebalance", members=2),
        GroupUpdated(group_id="members", state="Stable", members=3),
        GroupDeleted(group_id="gone", state="Dead", members=0),
    ]


def test_order_is_stable_topics_then_groups() -> None:
    before = snap({"a": 1}, {"g1": ("Stable", 1)})
    after = snap({"b": 2}, {"g2": ("Stable", 1)})
    kinds = [event.TYPE for event in diff(before, after)]
    assert kinds == ["topic_created", "topic_deleted", "group_created", "group_deleted"]
    assert diff(before, after) == diff(before, after)


def test_snapshot_groups_are_read_only() -> None:
    groups = {"g": GroupInfo(state="Stable", members=1)}
    snapshot = Snapshot(metrics=MonitoringMetrics(), groups=groups)
    groups["h"] = GroupInfo(state="Empty", members=0)
    assert list(snapshot.groups) == ["g"]
    assert snapshot == Snapshot(
        metrics=MonitoringMetrics(), groups={"g": GroupInfo(state="Stable", members=1)}
    )

"""Change events from successive snapshots (pure).

:func:`diff` compares two :class:`~takhin_ws.Snapshot` objects and names
what changed in the shape of the cluster, as the 2.9 event messages do:

- a topic present now but not before: ``topic_created {name, partitions}``;
- a topic present before but not now: ``topic_deleted {name}``;
- a consumer group present now but not before: ``group_created``;
- a group whose state or member count changed: ``group_updated``;
- a group present before but not now: ``group_deleted`` (state ``Dead``, 0 members:
  what a deleted group is in Kafka).

Topics are the names in ``metrics.topic_stats``; groups are the keys of
``snapshot.groups``. Events come in a fixed order (topic creations, topic
deletions, group creations, updates, deletions; each in snapshot order), so
the same pair of snapshots always yields the same list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.events import (
    Event,
    GroupCreated,
    GroupDeleted,
    GroupUpdated,
    TopicCreated,
    TopicDeleted,
)

if TYPE_CHECKING:
    from .snapshot import Snapshot

__all__ = ["diff"]


def diff(previous: Snapshot, current: Snapshot) -> list[Event]:
    """The change events that lead from *previous* to *current*."""
    events: list[Event] = []
    before_topics = {t.name: t for t in previous.metrics.topic_stats}
    now_topics = {t.name: t for t in current.metrics.topic_stats}
    for name, stats in now_topics.items():
        if name not in before_topics:
            events.append(TopicCreated(name=name, partitions=stats.partitions))
    for name in before_topics:
        if name not in now_topics:
            events.append(TopicDeleted(name=name))

    before_groups = previous.groups
    now_groups = current.groups
    updated: list[Event] = []
    for group_id, info in now_groups.items():
        old = before_groups.get(group_id)
        if old is None:
            events.append(GroupCreated(group_id=group_id, state=info.state, members=info.members))
        elif old.state != info.state or old.members != info.members:
            updated.append(GroupUpdated(group_id=group_id, state=info.state, members=info.members))
    events.extend(updated)
    for group_id in before_groups:
        if group_id not in now_groups:
            events.append(GroupDeleted(group_id=group_id, state="Dead", members=0))
    return events

"""The arithmetic of the ``kafka`` source: snapshots from offsets (no I/O, no client).

:mod:`takhin_ws.sources.kafka.source` asks a cluster, over the Kafka protocol, for what one
tick needs and records it as an :class:`Observation`; :func:`compute_snapshot` turns two
successive observations into the ``metrics`` message:

- ``totalMessages`` of a topic = the sum over its partitions of ``end - start``
  (log end offset minus log start offset: what retention has not deleted yet);
- ``produceRate`` = the increase of the topics' end offsets per second between the two
  observations; a partition whose end offset went down (the topic was deleted and made
  again, or truncated) or that one of them lacks adds nothing, so a rate is never
  negative;
- ``fetchRate`` = the increase of the offsets consumer groups committed on the topic,
  per second, counted the same way: the protocol sees commits, not reads, so a consumer
  that reads without committing is not counted;
- lag of a group on a partition = ``end - committed``, never below 0;
- ``clusterHealth``: topic and partition counts, and ``totalConsumers`` = the number of
  consumer groups (as the Takhin console computes it).

What the protocol cannot tell (bytes, latency, connections, disk, memory, goroutines)
stays 0, unless :func:`merge_exposition` brings it from the broker's Prometheus
exposition. Internal topics (``__consumer_offsets``...) are left out unless asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias

import attrs
from attrs import frozen

from ...core.metrics.snapshot import GroupInfo, Snapshot
from ...wire.messages import (
    ClusterHealth,
    ConsumerLag,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)

__all__ = [
    "INTERNAL_PREFIX",
    "Observation",
    "Offsets",
    "compute_snapshot",
    "is_internal",
    "merge_exposition",
]

#: Topics whose name starts with this are the cluster's own (``__consumer_offsets``,
#: ``__transaction_state``, ``__share_group_state``...): hidden unless asked for.
INTERNAL_PREFIX: Final = "__"

#: Log start and log end offset of one partition.
Offsets: TypeAlias = tuple[int, int]


@frozen(kw_only=True)
class Observation:
    """What one tick read from the cluster, and when.

    ``partitions``: the partition count of every topic the metadata listed;
    ``offsets``: per topic, the (start, end) offsets of the partitions that answered
    (a topic deleted between the metadata and the offsets request is absent);
    ``groups``: every consumer group with its state and members;
    ``committed``: per group, per topic, the committed offset of each partition.
    ``monotonic`` times the rate window; ``wall`` (Unix seconds) stamps the message.
    """

    monotonic: float
    wall: float
    partitions: Mapping[str, int] = attrs.field(factory=dict, repr=lambda p: f"<{len(p)} topics>")
    offsets: Mapping[str, Mapping[int, Offsets]] = attrs.field(factory=dict, repr=False)
    groups: Mapping[str, GroupInfo] = attrs.field(factory=dict, repr=lambda g: f"<{len(g)}>")
    committed: Mapping[str, Mapping[str, Mapping[int, int]]] = attrs.field(factory=dict, repr=False)


def is_internal(topic: str) -> bool:
    """Whether *topic* is one of the cluster's own (see :data:`INTERNAL_PREFIX`)."""
    return topic.startswith(INTERNAL_PREFIX)


def _increase(before: Mapping[int, int] | None, after: Mapping[int, int]) -> int:
    """Sum of the per-partition increases from *before* to *after*; a partition that
    went down or is new adds nothing."""
    if not before:
        return 0
    total = 0
    for partition, value in after.items():
        previous = before.get(partition)
        if previous is not None and value > previous:
            total += value - previous
    return total


def _produced(before: Mapping[int, Offsets] | None, after: Mapping[int, Offsets]) -> int:
    """:func:`_increase` of the log end offsets (without copying them out first)."""
    if not before:
        return 0
    total = 0
    for partition, (_, end) in after.items():
        previous = before.get(partition)
        if previous is not None and end > previous[1]:
            total += end - previous[1]
    return total


def _elapsed(previous: Observation | None, current: Observation) -> float:
    if previous is None:
        return 0.0
    elapsed = current.monotonic - previous.monotonic
    return elapsed if math.isfinite(elapsed) and elapsed > 0 else 0.0


def _fetched(
    previous: Observation | None, current: Observation, shown: Iterable[str]
) -> dict[str, int]:
    """Offsets committed between the two observations, per topic, all groups summed."""
    wanted = set(shown)
    out: dict[str, int] = {}
    if previous is None:
        return out
    for group, topics in current.committed.items():
        before = previous.committed.get(group)
        if not before:
            continue
        for topic, committed in topics.items():
            if topic in wanted:
                out[topic] = out.get(topic, 0) + _increase(before.get(topic), committed)
    return out


def _group_lags(group: str, current: Observation, shown: frozenset[str]) -> tuple[TopicLag, ...]:
    topic_lags: list[TopicLag] = []
    committed = current.committed.get(group, {})
    for topic in sorted(committed):
        offsets = current.offsets.get(topic)
        if topic not in shown or offsets is None:
            continue
        partition_lags = tuple(
            PartitionLag(
                partition=partition,
                current_offset=offset,
                log_end_offset=offsets[partition][1],
                lag=max(offsets[partition][1] - offset, 0),
            )
            for partition, offset in sorted(committed[topic].items())
            if partition in offsets
        )
        if partition_lags:
            topic_lags.append(
                TopicLag(
                    topic=topic,
                    total_lag=sum(p.lag for p in partition_lags),
                    partition_lags=partition_lags,
                )
            )
    return tuple(topic_lags)


def compute_snapshot(
    previous: Observation | None,
    current: Observation,
    *,
    show_internal_topics: bool = False,
) -> Snapshot:
    """The snapshot *current* describes, with rates over the time since *previous*
    (``None``: the first observation, so every rate is 0). See the module docstring
    for what each field means."""
    elapsed = _elapsed(previous, current)
    shown = frozenset(
        topic
        for topic in current.partitions
        if topic in current.offsets and (show_internal_topics or not is_internal(topic))
    )
    fetched = _fetched(previous, current, shown) if elapsed else {}
    topic_stats: list[TopicStats] = []
    for topic in sorted(shown):
        offsets = current.offsets[topic]
        produced = 0
        if elapsed and previous is not None:
            produced = _produced(previous.offsets.get(topic), offsets)
        topic_stats.append(
            TopicStats(
                name=topic,
                partitions=current.partitions[topic],
                total_messages=sum(max(end - start, 0) for start, end in offsets.values()),
                total_bytes=0,
                produce_rate=produced / elapsed if elapsed else 0.0,
                fetch_rate=fetched.get(topic, 0) / elapsed if elapsed else 0.0,
            )
        )
    consumer_lags = []
    for group in sorted(current.groups):
        topic_lags = _group_lags(group, current, shown)
        consumer_lags.append(
            ConsumerLag(
                group_id=group,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=topic_lags,
            )
        )
    metrics = MonitoringMetrics(
        throughput=Throughput(
            produce_rate=sum(t.produce_rate for t in topic_stats),
            fetch_rate=sum(t.fetch_rate for t in topic_stats),
        ),
        topic_stats=tuple(topic_stats),
        consumer_lags=tuple(consumer_lags),
        cluster_health=ClusterHealth(
            total_topics=len(topic_stats),
            total_partitions=sum(t.partitions for t in topic_stats),
            total_consumers=len(current.groups),
        ),
        timestamp=int(current.wall),
    )
    return Snapshot(metrics=metrics, groups=current.groups)


def merge_exposition(snapshot: Snapshot, exposition: MonitoringMetrics) -> Snapshot:
    """*snapshot* (from the Kafka protocol) completed with what only the broker's
    Prometheus exposition knows: bytes per second, latency quantiles, each topic's
    bytes on disk, connections, disk, memory and goroutines. Everything the protocol
    gives (topics, offsets, rates in messages, groups, lag) stays the protocol's."""
    metrics = snapshot.metrics
    disk_by_topic = {t.name: t.total_bytes for t in exposition.topic_stats}
    health = exposition.cluster_health
    merged = attrs.evolve(
        metrics,
        throughput=attrs.evolve(
            metrics.throughput,
            produce_bytes=exposition.throughput.produce_bytes,
            fetch_bytes=exposition.throughput.fetch_bytes,
        ),
        latency=exposition.latency,
        topic_stats=tuple(
            attrs.evolve(t, total_bytes=disk_by_topic.get(t.name, 0)) for t in metrics.topic_stats
        ),
        cluster_health=attrs.evolve(
            metrics.cluster_health,
            active_connections=health.active_connections,
            disk_usage_bytes=health.disk_usage_bytes,
            memory_usage_bytes=health.memory_usage_bytes,
            goroutine_count=health.goroutine_count,
        ),
    )
    return Snapshot(metrics=merged, groups=snapshot.groups)

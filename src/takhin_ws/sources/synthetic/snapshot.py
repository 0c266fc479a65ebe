"""The synthetic source's records, and the snapshot read off them (pure).

:class:`SimTopic` and :class:`SimGroup` are what :class:`~.source.SyntheticSource`
simulates; :func:`describe` turns them into the ``metrics`` message and the groups'
state after one step: totals and rates per topic, lag per partition, cluster-wide
throughput, latency quantiles from a lognormal body with a slow tail, bucketed like
Takhin's histograms (:data:`LATENCY_BUCKETS`), and the broker's health gauges.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Final

import attrs

from ...core.metrics.snapshot import GroupInfo, Snapshot
from ...wire import messages as wire
from ..promql import QUANTILES, histogram_quantile

__all__ = ["LATENCY_BUCKETS", "SimGroup", "SimTopic", "describe"]

#: Takhin's latency histogram buckets (seconds), ``+Inf`` last.
LATENCY_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf)
_MiB: Final = 1 << 20


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _lognormal_cdf(value: float, median: float, sigma: float) -> float:
    if value == math.inf:
        return 1.0
    return _normal_cdf(math.log(value / median) / sigma)


@attrs.define
class SimTopic:
    """One simulated topic: per partition its log end, bytes on disk, share of the
    traffic and the fraction of a message carried to the next step."""

    name: str
    log_end: list[int]
    disk: list[float]
    shares: list[float]
    carry: list[float]
    base_rate: float
    message_size: float
    period: float
    phase: float
    rate: float = 0.0
    fetched: float = 0.0

    @property
    def partitions(self) -> int:
        return len(self.log_end)


@attrs.define
class SimGroup:
    """One simulated consumer group: its topics, committed offsets and state."""

    group_id: str
    topics: list[str]
    committed: dict[tuple[str, int], int]
    carry: dict[tuple[str, int], float]
    speed: float
    period: float
    phase: float
    state: wire.GroupState
    members: int
    target_members: int
    #: What it does besides consuming (``sources.synthetic.habits``), and its cycles' phase.
    habit: str = "steady"
    habit_phase: float = 0.0


def _latency(topics: Iterable[SimTopic], kind: str) -> dict[str, float]:
    """p50/p95/p99 of this step's observations of *kind* (``produce``, ``fetch``),
    bucketed like Takhin's histograms, as :class:`Latency` fields (``fetch_p50``...)."""
    fetch = kind == "fetch"
    cumulative = [0.0] * len(LATENCY_BUCKETS)
    for topic in topics:
        load = topic.rate / topic.base_rate
        weight = topic.rate
        median = (0.006 if fetch else 0.0025) * (0.6 + 0.6 * load)
        sigma = 0.7 if fetch else 0.55
        for index, upper in enumerate(LATENCY_BUCKETS):
            body = _lognormal_cdf(upper, median, sigma)
            tail = _lognormal_cdf(upper, median * 12, sigma)
            cumulative[index] += weight * (0.97 * body + 0.03 * tail)
    buckets = list(zip(LATENCY_BUCKETS, cumulative, strict=True))
    return {f"{kind}_p{round(q * 100)}": histogram_quantile(q, buckets) for q in QUANTILES}


def describe(
    simulated: Collection[SimTopic],
    simulated_groups: Collection[SimGroup],
    *,
    producers: float,
    dt: float,
    timestamp: int,
) -> Snapshot:
    """The snapshot of the simulated cluster after a step of *dt* seconds."""
    topics = sorted(simulated, key=lambda topic: topic.name)
    groups = sorted(simulated_groups, key=lambda group: group.group_id)
    by_name = {topic.name: topic for topic in topics}
    topic_stats = tuple(
        wire.TopicStats(
            name=topic.name,
            partitions=topic.partitions,
            total_messages=sum(topic.log_end),
            total_bytes=int(sum(topic.disk)),
            produce_rate=topic.rate,
            fetch_rate=topic.fetched / dt if dt > 0 else 0.0,
        )
        for topic in topics
    )
    consumer_lags = []
    for group in groups:
        topic_lags = []
        for topic_name in sorted(group.topics):
            topic = by_name[topic_name]
            partition_lags = tuple(
                wire.PartitionLag(
                    partition=partition,
                    current_offset=group.committed[(topic_name, partition)],
                    log_end_offset=end,
                    lag=end - group.committed[(topic_name, partition)],
                )
                for partition, end in enumerate(topic.log_end)
            )
            topic_lags.append(
                wire.TopicLag(
                    topic=topic_name,
                    total_lag=sum(p.lag for p in partition_lags),
                    partition_lags=partition_lags,
                )
            )
        consumer_lags.append(
            wire.ConsumerLag(
                group_id=group.group_id,
                total_lag=sum(t.total_lag for t in topic_lags),
                topic_lags=tuple(topic_lags),
            )
        )
    produce = fetch = produce_bytes = fetch_bytes = 0.0
    for topic, stats in zip(topics, topic_stats, strict=True):
        produce += stats.produce_rate
        fetch += stats.fetch_rate
        produce_bytes += stats.produce_rate * topic.message_size
        fetch_bytes += stats.fetch_rate * topic.message_size
    partitions = sum(topic.partitions for topic in topics)
    members = sum(group.members for group in groups)
    connections = int(producers) + members
    metrics = wire.MonitoringMetrics(
        throughput=wire.Throughput(
            produce_rate=produce,
            fetch_rate=fetch,
            produce_bytes=produce_bytes,
            fetch_bytes=fetch_bytes,
        ),
        latency=wire.Latency(**_latency(simulated, "produce"), **_latency(simulated, "fetch")),
        topic_stats=topic_stats,
        consumer_lags=tuple(consumer_lags),
        cluster_health=wire.ClusterHealth(
            active_connections=connections,
            total_topics=len(topics),
            total_partitions=partitions,
            # the number of consumer groups, as the 2.9 console counts it
            total_consumers=len(groups),
            disk_usage_bytes=sum(stats.total_bytes for stats in topic_stats),
            memory_usage_bytes=96 * _MiB + 2 * _MiB * partitions + 65536 * connections,
            goroutine_count=40 + 2 * connections + 3 * partitions,
        ),
        timestamp=timestamp,
    )
    return Snapshot(
        metrics=metrics,
        groups={
            group.group_id: GroupInfo(state=group.state, members=group.members) for group in groups
        },
    )

"""The state messages: the metrics snapshot, its views and the chart history (sans-IO).

State is conflated (a newer one replaces a pending older one); events are not (see
:mod:`takhin_ws.wire.events`). ``metrics`` keeps the 2.9 ``MonitoringMetrics`` shape
with every key always present; ``group_detail`` and ``topic_detail`` are views of it
(``metrics:group:<id>``, ``metrics:topic:<name>``); ``history`` answers a client's
request for the recent chart series. Re-exported by :mod:`takhin_ws.wire.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
from attrs import frozen

from .events import GroupState
from .lag import LagPoint, LagStatus

__all__ = [
    "ClusterHealth",
    "ConsumerLag",
    "GroupDetail",
    "History",
    "HistoryPoint",
    "Latency",
    "MonitoringMetrics",
    "PartitionLag",
    "Throughput",
    "TopicConsumer",
    "TopicDetail",
    "TopicLag",
    "TopicStats",
]

# --- metrics payload (the 2.9 MonitoringMetrics shape, all keys always present) ---


@frozen(kw_only=True)
class Throughput:
    produce_rate: float = 0.0
    fetch_rate: float = 0.0
    produce_bytes: float = 0.0
    fetch_bytes: float = 0.0


@frozen(kw_only=True)
class Latency:
    produce_p50: float = 0.0
    produce_p95: float = 0.0
    produce_p99: float = 0.0
    fetch_p50: float = 0.0
    fetch_p95: float = 0.0
    fetch_p99: float = 0.0


@frozen(kw_only=True)
class TopicStats:
    name: str
    partitions: int
    total_messages: int
    total_bytes: int
    produce_rate: float
    fetch_rate: float


@frozen(kw_only=True)
class PartitionLag:
    """One partition a group reads. ``lag_seconds`` and ``consume_rate`` are the lag
    insight's (v1, :mod:`takhin_ws.core.lag.tracker`): ``None`` (``null``) until known."""

    partition: int
    current_offset: int
    log_end_offset: int
    lag: int
    lag_seconds: float | None = None
    consume_rate: float | None = None


@frozen(kw_only=True)
class TopicLag:
    topic: str
    total_lag: int
    partition_lags: tuple[PartitionLag, ...] = ()
    #: The largest known ``lag_seconds`` of its partitions (v1).
    lag_seconds: float | None = None


@frozen(kw_only=True)
class ConsumerLag:
    group_id: str
    total_lag: int
    topic_lags: tuple[TopicLag, ...] = ()
    #: The lag insight (v1): the largest known ``lag_seconds`` below, the group's
    #: status over the window, the estimated seconds to reach lag 0.
    lag_seconds: float | None = None
    status: LagStatus = "UNKNOWN"
    drain_seconds: float | None = None


@frozen(kw_only=True)
class ClusterHealth:
    active_connections: int = 0
    total_topics: int = 0
    total_partitions: int = 0
    total_consumers: int = 0
    disk_usage_bytes: int = 0
    memory_usage_bytes: int = 0
    goroutine_count: int = 0


# --- payloads: one class per message type; TYPE is the wire name ---


@frozen(kw_only=True)
class MonitoringMetrics:
    TYPE: ClassVar[str] = "metrics"
    throughput: Throughput = Throughput()
    latency: Latency = Latency()
    topic_stats: tuple[TopicStats, ...] = ()
    consumer_lags: tuple[ConsumerLag, ...] = ()
    cluster_health: ClusterHealth = ClusterHealth()
    timestamp: int = 0


@frozen(kw_only=True)
class GroupDetail:
    """``group_detail`` (view ``metrics:group:<groupId>``): one group's lag in full.

    Built only for a group the cluster has (in the snapshot's lags, or known from its
    events); one known only from its events has no lag or topics yet.
    """

    TYPE: ClassVar[str] = "group_detail"
    group_id: str
    state: GroupState = "Dead"
    members: int = 0
    total_lag: int = 0
    topic_lags: tuple[TopicLag, ...] = ()
    lag_seconds: float | None = None
    status: LagStatus = "UNKNOWN"
    drain_seconds: float | None = None


@frozen(kw_only=True)
class TopicConsumer:
    """One consumer group reading a topic, in a ``topic_detail`` message."""

    group_id: str
    total_lag: int
    partition_lags: tuple[PartitionLag, ...] = ()
    lag_seconds: float | None = None
    status: LagStatus = "UNKNOWN"


@frozen(kw_only=True)
class TopicDetail:
    """``topic_detail`` (view ``metrics:topic:<name>``): a topic and the groups reading it."""

    TYPE: ClassVar[str] = "topic_detail"
    name: str
    partitions: int = 0
    total_messages: int = 0
    total_bytes: int = 0
    produce_rate: float = 0.0
    fetch_rate: float = 0.0
    consumers: tuple[TopicConsumer, ...] = ()


@frozen(kw_only=True)
class HistoryPoint:
    """One tick of the chart series: cluster throughput, latency, total lag per group.

    ``timestamp`` is Unix seconds (a float, for sub-second intervals); ``group_lags``
    holds the groups with the most lag at that tick (a bounded number of them).
    """

    timestamp: float
    throughput: Throughput = Throughput()
    latency: Latency = Latency()
    group_lags: Mapping[str, int] = attrs.Factory(dict)


@frozen(kw_only=True)
class History:
    """``history``: the recent chart series, oldest first, one point per tick
    (*interval* seconds apart), so a reloaded page shows full charts at once.

    The answer to a client's ``{"type": "history"}``, which carries no data (the
    request decodes to an empty ``History``). Asked with ``{"channel":
    "group:<groupId>"}``, the answer names that channel and carries the group's
    ``lags`` instead of ``points`` (``channel`` and ``lags`` are sent only then).
    """

    TYPE: ClassVar[str] = "history"
    interval: float = 0.0
    points: tuple[HistoryPoint, ...] = ()
    channel: str | None = None
    lags: tuple[LagPoint, ...] = ()

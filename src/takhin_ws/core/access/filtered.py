"""The ``metrics`` snapshot as one permission set may see it: once per tick per set (sans-IO).

A client restricted by a token's ``channels`` claim receives a ``metrics`` message
holding only what its claim grants (see :func:`filter_metrics`). Clients with the
same claim share one :class:`~takhin_ws.core.access.permissions.Permissions` key, so the
filtered message (and every view of it: ``metrics:lean``, ``metrics:topic:``,
``metrics:group:``) is built once per tick per distinct permission set, the first
time a subscriber of that set needs it, and every subscriber of that set gets the
same frame: the encode-once rule, per set instead of per client.
"""

from __future__ import annotations

from typing import Final

import orjson
from attrs import evolve

from ...wire.messages import History
from ...wire.websocket.frames import Outbound, Variant
from ..metrics.views import JSON, MetricsViews, dumps
from .permissions import Permissions

__all__ = ["CLUSTER_WIDE", "FilteredMetrics", "filter_metrics", "filtered_history"]

#: What a filtered snapshot keeps as the whole cluster's (broker-level figures that
#: no topic or group owns): ``throughput`` and ``latency`` whole, and these of
#: ``clusterHealth``. Its ``totalTopics``, ``totalPartitions`` and ``totalConsumers``
#: count the visible topics and groups only.
CLUSTER_WIDE: Final = ("activeConnections", "diskUsageBytes", "memoryUsageBytes", "goroutineCount")


def filter_metrics(data: JSON, permissions: Permissions) -> JSON:
    """The ``data`` of a ``metrics`` message as *permissions* may see it.

    ``topicStats``: the visible topics. ``consumerLags``: the visible groups, each
    with the lags of its visible topics only (its ``totalLag`` their sum, when a
    topic was left out). ``clusterHealth``: counts of the visible topics,
    partitions and groups; the rest (:data:`CLUSTER_WIDE`) and ``throughput`` and
    ``latency`` stay the cluster's."""
    sees_topic = permissions.sees_topic
    topics = [t for t in data["topicStats"] if sees_topic(t["name"])]
    lags = []
    for lag in data["consumerLags"]:
        if not permissions.sees_group(lag["groupId"]):
            continue
        kept = [tl for tl in lag["topicLags"] if sees_topic(tl["topic"])]
        if len(kept) != len(lag["topicLags"]):
            lag = {**lag, "totalLag": sum(tl["totalLag"] for tl in kept), "topicLags": kept}
        lags.append(lag)
    health = {
        **data["clusterHealth"],
        "totalTopics": len(topics),
        "totalPartitions": sum(t["partitions"] for t in topics),
        "totalConsumers": len(lags),
    }
    return {**data, "topicStats": topics, "consumerLags": lags, "clusterHealth": health}


def filtered_history(history: History, permissions: Permissions) -> History:
    """The chart series with the lags of the visible groups only."""
    sees = permissions.sees_group
    points = tuple(
        evolve(p, group_lags={g: n for g, n in p.group_lags.items() if sees(g)})
        for p in history.points
    )
    return evolve(history, points=points)


class FilteredMetrics:
    """The latest snapshot's filtered messages and views, per permission set."""

    __slots__ = ("_built", "_envelope", "_item", "_views")

    def __init__(self, views: MetricsViews) -> None:
        self._views = views  # the unfiltered views (their groups' states are shared)
        self._item: Outbound | None = None
        self._envelope: JSON | None = None
        self._built: dict[Permissions, MetricsViews] = {}

    def __len__(self) -> int:
        """Permission sets built for the current snapshot."""
        return len(self._built)

    def source(self, item: Outbound, envelope: JSON | None = None) -> None:
        """A new snapshot (*envelope*: it decoded, if the caller has it); the same one
        again (a bus's item, delivered and then learnt) keeps what was built of it."""
        if item is self._item:
            self._envelope = envelope or self._envelope
            return
        self._item = item
        self._envelope = envelope
        self._built.clear()

    def source_done(self) -> None:
        """The fan-out of the snapshot is over: drop the decoded copies (a set that
        asks later decodes the message again)."""
        self._envelope = None
        for views in self._built.values():
            views.source_done()

    def clear(self) -> None:
        self._item = self._envelope = None
        self._built.clear()

    def message(self, item: Outbound, permissions: Permissions) -> Outbound | None:
        """*item* as clients holding *permissions* receive it: the filtered snapshot
        (built once per set), an event they may see, or nothing."""
        if item.channel == "metrics":
            return self.metrics(permissions)
        return item if permissions.sees(item.route) else None

    def metrics(self, permissions: Permissions) -> Outbound | None:
        """The filtered ``metrics`` message (``None`` before the first snapshot)."""
        views = self._for(permissions)
        return None if views is None else views.latest

    def view(self, channel: str, permissions: Permissions) -> Outbound | None:
        """View *channel* of the filtered snapshot."""
        views = self._for(permissions)
        return None if views is None else views.view(channel)

    def view_variant(
        self, channel: str, view: Outbound, variant: Variant, permissions: Permissions | None
    ) -> Outbound | None:
        """*view* (of *channel*) in *variant*, as clients holding *permissions* see it."""
        if permissions is None:
            return view.variant(variant)
        restricted = self.view(channel, permissions)
        return None if restricted is None else restricted.variant(variant)

    def _for(self, permissions: Permissions) -> MetricsViews | None:
        built = self._built.get(permissions)
        if built is not None:
            return built
        item = self._item
        if item is None:
            return None
        if self._envelope is None:
            self._envelope = orjson.loads(item.payload)
        envelope = self._envelope
        filtered = {**envelope, "data": filter_metrics(envelope["data"], permissions)}
        message = Outbound.of(dumps(filtered), item.channel, item.offset, item.route)
        built = self._built[permissions] = self._views.derived(message, filtered)
        return built

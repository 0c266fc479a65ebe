"""Metrics views, and the encoding of a snapshot through its ``data`` dict (sans-IO).

A snapshot is encoded once per tick through its plain ``data`` dict (the codec's
generated unstructure functions, then orjson: the codec's bytes); the hub keeps that
dict for the tick, so building views never parses the JSON again (a snapshot that came
through a bus is parsed at most once per tick, when a view first needs it), and a
client subscribing and unsubscribing costs the build of one small view, never a
parse. A big cluster's snapshot (1,000 topics x 12 partitions, 300 groups: ~1.3 MiB)
costs about 6 ms of CPU this way (``python -m benchmarks.wire``).

:class:`MetricsViews` derives the views of the ``metrics`` stream from the latest
snapshot, each at most once per snapshot, only when asked for (the hub asks for the
views someone subscribes to) and only for a group or topic the cluster has (see
:meth:`MetricsViews.exists`):

- ``metrics:lean``: the same ``metrics`` message with every ``partitionLags`` empty;
- ``metrics:group:<id>``: ``group_detail``, one group's lag down to its partitions,
  with its state and members (from the snapshot's groups and the group events);
- ``metrics:topic:<name>``: ``topic_detail``, one topic and every group reading it.

A view carries the envelope fields of the snapshot it comes from (``channel`` is
``metrics``, the same ``offset``, ``epoch`` and ``stale``), so a client can tell
which tick it shows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import orjson

from ..._exceptions import LocalProtocolError
from ...wire.channels import METRICS_GROUP_PREFIX, METRICS_LEAN, METRICS_TOPIC_PREFIX
from ...wire.codec import payload_to_data
from ...wire.events import GroupEvent
from ...wire.messages import PAYLOAD_CLASSES, GroupDetail, MonitoringMetrics, Payload, TopicDetail
from ...wire.websocket.frames import Outbound
from .snapshot import GroupInfo

__all__ = [
    "JSON",
    "MetricsViews",
    "ViewChannels",
    "is_view",
    "lean_view",
    "metrics_data",
    "metrics_envelope",
]

#: What a group in the snapshot that no snapshot or event has described yet shows.
_UNDESCRIBED: Final = GroupInfo(state="Empty", members=0)
#: The status of a group a snapshot gives none for (one from a node without the insight).
_NO_STATUS: Final = "UNKNOWN"

JSON = dict[str, Any]


def is_view(channel: str) -> bool:
    """Whether *channel* is a view of the ``metrics`` stream (not ``metrics`` itself)."""
    return channel.startswith("metrics:")


def metrics_data(m: MonitoringMetrics) -> JSON:
    """The ``data`` of a ``metrics`` message as the codec writes it (plain dicts and
    lists, which the views reuse)."""
    data: JSON = payload_to_data(m)
    return data


def metrics_envelope(
    data: JSON,
    *,
    timestamp: int,
    channel: str | None = None,
    offset: int | None = None,
    epoch: str | None = None,
    stale: bool | None = None,
    kind: str = MonitoringMetrics.TYPE,
) -> JSON:
    """An envelope as the codec builds it (fields left ``None`` are not sent)."""
    out: JSON = {"type": kind, "data": data, "timestamp": timestamp}
    if channel is not None:
        out["channel"] = channel
    if offset is not None:
        out["offset"] = offset
    if epoch is not None:
        out["epoch"] = epoch
    if stale is not None:
        out["stale"] = stale
    return out


def dumps(envelope: JSON) -> bytes:
    """*envelope* as JSON bytes (one text frame's payload), as ``encode`` writes it."""
    try:
        return orjson.dumps(envelope)
    except TypeError as exc:  # e.g. an int beyond 64 bits put in by a source
        raise LocalProtocolError(
            "invalid_field", f"cannot encode {envelope['type']}: {exc}"
        ) from exc


def _lean(data: JSON) -> JSON:
    return {
        **data,
        "consumerLags": [
            {
                **c,
                "topicLags": [{**tl, "partitionLags": []} for tl in c["topicLags"]],
            }
            for c in data["consumerLags"]
        ],
    }


def _view(item: Outbound, envelope: JSON, channel: str, kind: str, data: JSON) -> Outbound:
    """View *channel* of snapshot *item* (*envelope* decoded): *data* as a *kind* message
    with the snapshot's envelope fields."""
    view_envelope = {**envelope, "type": kind, "data": data}
    return Outbound.of(dumps(view_envelope), item.channel, item.offset, channel)


def lean_view(item: Outbound, envelope: JSON) -> Outbound:
    """The ``metrics:lean`` view of snapshot *item* (*envelope* decoded)."""
    return _view(item, envelope, METRICS_LEAN, MonitoringMetrics.TYPE, _lean(envelope["data"]))


class MetricsViews:
    """The latest snapshot of one hub and the views built from it."""

    __slots__ = ("_built", "_consumers", "_envelope", "_groups", "_item", "_lags", "_topics")

    def __init__(self) -> None:
        self._item: Outbound | None = None  # the latest ``metrics`` message
        self._envelope: JSON | None = None  # ... decoded (for its tick, once needed)
        self._built: dict[str, Outbound] = {}  # views of that message, by channel
        self._groups: dict[str, GroupInfo] = {}
        self._lags: dict[str, JSON] | None = None  # consumerLags by groupId
        self._topics: dict[str, JSON] | None = None  # topicStats by name
        self._consumers: dict[str, list[JSON]] | None = None  # topic -> its readers

    @property
    def latest(self) -> Outbound | None:
        """The snapshot's own message (``None`` before the first)."""
        return self._item

    def derived(self, item: Outbound, envelope: JSON) -> MetricsViews:
        """Views of *item*, a snapshot derived from this one's (a filtered one, see
        :mod:`~takhin_ws.core.access.filtered`), sharing its groups' states."""
        views = MetricsViews()
        views._groups = self._groups
        views.source(item, envelope)
        return views

    # --- what the hub tells us ---

    def source(
        self,
        item: Outbound,
        envelope: JSON | None = None,
        built: Mapping[str, Outbound] | None = None,
    ) -> JSON | None:
        """A new snapshot (*envelope* if the caller has it decoded): views start over,
        from those *built* of it already (:func:`lean_view`), by channel. Returns the
        previous snapshot's decoded envelope (``None`` if none was kept), which nothing
        here holds any more."""
        old = self._envelope
        self._item = item
        self._envelope = envelope
        self._built.clear()
        if built:
            self._built.update(built)
        self._lags = self._topics = self._consumers = None
        return old

    def clear(self) -> None:
        """No snapshot any more (a new epoch)."""
        self._item = None
        self._envelope = None
        self._lags = self._topics = self._consumers = None
        self._built.clear()

    def source_done(self) -> None:
        """Drop the decoded snapshot (what a permission set's views do after the
        fan-out, see ``core/access/filtered``); the views built stay."""
        self._envelope = None
        self._lags = self._topics = self._consumers = None

    def forget(self, channel: str) -> None:
        """*channel* has no subscriber any more."""
        self._built.pop(channel, None)

    def note_groups(self, groups: Mapping[str, GroupInfo]) -> None:
        """The state and members of every group, as the latest snapshot found them."""
        self._groups = dict(groups)

    def note_event(self, payload: Payload) -> None:
        """A group event: its state and members are the group's from now on."""
        if isinstance(payload, GroupEvent):
            self._note_group(type(payload), payload.group_id, payload.state, payload.members)

    def note_event_json(self, payload: bytes) -> None:
        """:meth:`note_event` for an encoded event (one that came through a bus)."""
        obj = orjson.loads(payload)
        kind = PAYLOAD_CLASSES.get(obj.get("type"))
        data = obj.get("data")
        if kind is None or not issubclass(kind, GroupEvent) or not isinstance(data, dict):
            return
        group_id = data.get("groupId")
        if isinstance(group_id, str):
            self._note_group(kind, group_id, data.get("state"), data.get("members"))

    def _note_group(self, kind: type[GroupEvent], group_id: str, state: Any, members: Any) -> None:
        if kind.EXISTS:
            self._groups[group_id] = GroupInfo(state=state, members=members)
        else:
            self._groups.pop(group_id, None)

    # --- views ---

    def exists(self, channel: str) -> bool | None:
        """Whether the group or topic of view *channel* is one the cluster has: in the
        latest snapshot (a group also when its events since say it exists); ``None``
        before the first snapshot. A view of something that does not exist is never
        built (it costs nothing per tick)."""
        item = self._item
        if item is None:
            return None
        if channel == METRICS_LEAN:
            return True
        if channel.startswith(METRICS_GROUP_PREFIX):
            group_id = channel[len(METRICS_GROUP_PREFIX) :]
            return group_id in self._groups or group_id in self._lag_index(item)
        if channel.startswith(METRICS_TOPIC_PREFIX):
            return channel[len(METRICS_TOPIC_PREFIX) :] in self._topic_index(item)
        raise ValueError(f"{channel!r} is not a metrics view")

    def view(self, channel: str) -> Outbound | None:
        """The message of view *channel* for the latest snapshot (built on first use);
        ``None`` before the first snapshot and for a group or topic the cluster does
        not have (:meth:`exists`)."""
        built = self._built.get(channel)
        if built is not None:
            return built
        item = self._item
        if item is None or not self.exists(channel):
            return None
        envelope = self._decoded(item)
        if channel == METRICS_LEAN:
            built = lean_view(item, envelope)
        elif channel.startswith(METRICS_GROUP_PREFIX):
            data = self._group_detail(envelope["data"], channel[len(METRICS_GROUP_PREFIX) :])
            built = _view(item, envelope, channel, GroupDetail.TYPE, data)
        elif channel.startswith(METRICS_TOPIC_PREFIX):
            data = self._topic_detail(envelope["data"], channel[len(METRICS_TOPIC_PREFIX) :])
            built = _view(item, envelope, channel, TopicDetail.TYPE, data)
        else:
            raise ValueError(f"{channel!r} is not a metrics view")
        self._built[channel] = built
        return built

    def _decoded(self, item: Outbound) -> JSON:
        if self._envelope is None:
            self._envelope = orjson.loads(item.payload)
        return self._envelope

    def _lag_index(self, item: Outbound) -> dict[str, JSON]:
        if self._lags is None:
            data = self._decoded(item)["data"]
            self._lags = {c["groupId"]: c for c in data["consumerLags"]}
        return self._lags

    def _topic_index(self, item: Outbound) -> dict[str, JSON]:
        if self._topics is None:
            data = self._decoded(item)["data"]
            self._topics = {t["name"]: t for t in data["topicStats"]}
        return self._topics

    def _group_detail(self, data: JSON, group_id: str) -> JSON:
        assert self._item is not None
        lag = self._lag_index(self._item).get(group_id)
        if lag is None:  # known from the events, not (yet) in the snapshot's lags
            info = self._groups[group_id]
            lag = {}
        else:
            info = self._groups.get(group_id, _UNDESCRIBED)
        return {
            "groupId": group_id,
            "state": info.state,
            "members": info.members,
            "totalLag": lag.get("totalLag", 0),
            "topicLags": lag.get("topicLags", []),
            "lagSeconds": lag.get("lagSeconds"),
            "status": lag.get("status", _NO_STATUS),
            "drainSeconds": lag.get("drainSeconds"),
        }

    def _topic_detail(self, data: JSON, name: str) -> JSON:
        assert self._item is not None
        stats = self._topic_index(self._item)[name]
        if self._consumers is None:
            consumers: dict[str, list[JSON]] = {}
            for c in data["consumerLags"]:
                for tl in c["topicLags"]:
                    consumers.setdefault(tl["topic"], []).append(
                        {
                            "groupId": c["groupId"],
                            "totalLag": tl["totalLag"],
                            "partitionLags": tl["partitionLags"],
                            "lagSeconds": tl.get("lagSeconds"),
                            "status": c.get("status", _NO_STATUS),
                        }
                    )
            self._consumers = consumers
        return {
            "name": name,
            "partitions": stats["partitions"],
            "totalMessages": stats["totalMessages"],
            "totalBytes": stats["totalBytes"],
            "produceRate": stats["produceRate"],
            "fetchRate": stats["fetchRate"],
            "consumers": self._consumers.get(name, []),
        }


class ViewChannels:
    """The metrics views someone subscribes to (*channels*: the hub's live table of
    them, in the order first subscribed) and the server-wide bound on building them:
    at most *max_views* distinct views are built per tick (the first subscribed
    first); ``skipped`` counts the others."""

    __slots__ = ("_channels", "_views", "built", "max_views", "skipped")

    def __init__(self, views: MetricsViews, channels: Mapping[str, None], max_views: int) -> None:
        if max_views < 0:
            raise ValueError("max_views must be >= 0")
        self._views = views
        self._channels = channels
        self.max_views = max_views
        self.built = 0
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._channels)

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels

    def unknown(self, channel: str) -> bool:
        """Whether view *channel* names a group or topic the latest snapshot does not
        have (before the first snapshot nothing is unknown)."""
        return self._views.exists(channel) is False

    def due(self) -> Iterator[tuple[str, Outbound]]:
        """Each subscribed view of the latest snapshot whose group or topic exists,
        built (once), up to ``max_views`` of them."""
        views = self._views
        built = 0
        for channel in self._channels:
            if not views.exists(channel):
                continue  # a group or topic the cluster does not have: nothing to build
            if built == self.max_views:
                self.skipped += 1
                continue
            view = views.view(channel)
            assert view is not None  # it exists
            built += 1
            self.built += 1
            yield channel, view

    def statistics(self) -> dict[str, int]:
        """The fields of :class:`~takhin_ws.core.clients.HubStatistics` about views."""
        return {
            "views": len(self._channels),
            "max_views": self.max_views,
            "views_built": self.built,
            "views_skipped": self.skipped,
        }

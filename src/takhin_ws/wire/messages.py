"""Every message of the wire protocol as a frozen attrs class (sans-IO).

Takhin 2.9 messages plus the additive v1 extensions. Every message is an envelope
``{"type", "data", "timestamp"}`` (timestamp in Unix seconds); events additionally
carry ``channel``, ``offset`` and ``epoch``, metrics carry ``stale``. Payloads have
snake_case attributes that travel as camelCase keys (see :mod:`takhin_ws.wire.codec`).
Each payload class names its wire type in ``TYPE``. This module holds the session's
messages (``welcome``, ``subscribe``, ``gap``...), the envelope and the registry of
every type; the state messages (the metrics snapshot, its views, the chart history)
live in :mod:`takhin_ws.wire.state` and the change events with their rules in
:mod:`takhin_ws.wire.events`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeAlias

import attrs
from attrs import field, frozen

from .auth import Refresh, Refreshed, TokenExpiring
from .channels import parse_channel
from .events import (
    EVENT_TYPES,
    GROUP_STATES,
    ChangeEvent,
    GroupCreated,
    GroupDeleted,
    GroupState,
    GroupStatus,
    GroupUpdated,
    TopicCreated,
    TopicDeleted,
)
from .lag import LAG_STATUSES, LagPoint, LagStatus
from .state import (
    ClusterHealth,
    ConsumerLag,
    GroupDetail,
    History,
    HistoryPoint,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicConsumer,
    TopicDetail,
    TopicLag,
    TopicStats,
)

__all__ = [
    "ALL_TYPES",
    "CLIENT_TYPES",
    "EVENT_TYPES",
    "GROUP_STATES",
    "LAG_STATUSES",
    "NO_DATA_TYPES",
    "OPTIONAL_DATA_TYPES",
    "PAYLOAD_CLASSES",
    "PROTOCOL_VERSION",
    "ClusterHealth",
    "ConsumerLag",
    "Envelope",
    "EpochChanged",
    "Error",
    "Gap",
    "GroupCreated",
    "GroupDeleted",
    "GroupDetail",
    "GroupState",
    "GroupStatus",
    "GroupUpdated",
    "Heartbeat",
    "History",
    "HistoryPoint",
    "LagPoint",
    "LagStatus",
    "Latency",
    "Limits",
    "MonitoringMetrics",
    "PartitionLag",
    "Payload",
    "Ping",
    "Pong",
    "Refresh",
    "Refreshed",
    "Subscribe",
    "Subscribed",
    "Throughput",
    "TokenExpiring",
    "TopicConsumer",
    "TopicCreated",
    "TopicDeleted",
    "TopicDetail",
    "TopicLag",
    "TopicStats",
    "Unsubscribe",
    "Welcome",
    "channel_of",
]

PROTOCOL_VERSION: Final = 1


@frozen(kw_only=True)
class EpochChanged:
    """``epoch``: the offsets restarted under a new epoch (a Redis bus lost them).

    Sent before any event of the new epoch; ``recovered`` is ``false`` for every
    event stream: a client refetches its state, then resumes from the new epoch.
    """

    TYPE: ClassVar[str] = "epoch"
    epoch: str
    previous: str
    recovered: Mapping[str, bool] = attrs.Factory(dict)


@frozen
class Ping:
    """Client heartbeat at the JSON level (``{"type": "ping"}``); no data."""

    TYPE: ClassVar[str] = "ping"


@frozen
class Pong:
    TYPE: ClassVar[str] = "pong"


def _channels(value: tuple[str, ...]) -> tuple[str, ...]:
    for channel in value:
        parse_channel(channel)
    return value


@frozen(kw_only=True)
class Subscribe:
    """``subscribe``: data is a string (2.9), a list, or ``{channels, since, epoch}``."""

    TYPE: ClassVar[str] = "subscribe"
    channels: tuple[str, ...] = field(converter=_channels)
    since: Mapping[str, int] | None = None
    epoch: str | None = None


@frozen(kw_only=True)
class Unsubscribe:
    TYPE: ClassVar[str] = "unsubscribe"
    channels: tuple[str, ...] = field(converter=_channels)


@frozen(kw_only=True)
class Heartbeat:
    """``welcome.data.heartbeat``: how the server checks that the client is alive.

    The server sends a WebSocket ping every ``interval`` seconds (``--ping-interval``)
    and drops a client from which nothing at all arrived for ``timeout`` seconds
    (``--ping-timeout``). Browsers answer pings on their own.
    """

    #: Seconds between two pings of the server.
    interval: float
    #: Seconds of silence after which the server drops the client (without a Close frame).
    timeout: float


@frozen(kw_only=True)
class Limits:
    """``welcome.data.limits``: the bounds this connection lives within."""

    #: Messages held for the client while its socket is not keeping up (``--queue-size``);
    #: beyond that the oldest is dropped and a ``gap`` says so.
    queue_size: int
    #: Largest message the client may send, in bytes (``--max-message-size``).
    max_message_size: int
    #: Channels one connection may be subscribed to at once (0: not announced).
    max_channels: int = 0


@frozen(kw_only=True)
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    protocol: int
    client_id: str
    epoch: str
    channels: tuple[str, ...]
    heartbeat: Heartbeat
    limits: Limits
    #: The offset of the last event of each event stream when the client connected:
    #: resume from there (``since``) to miss nothing that happened after.
    offsets: Mapping[str, int] = attrs.Factory(dict)
    #: The kind of the server's metrics source: ``synthetic`` (simulated data, the
    #: default), ``prometheus``, ``kafka``, ``kafka+prometheus``, or ``custom`` (an
    #: embedding program's own); ``None`` from a server that does not say.
    source: str | None = None


@frozen(kw_only=True)
class Subscribed:
    """Answer to ``subscribe``/``unsubscribe``, proportional to the request: ``channels``
    are the ones the request changed (added by ``subscribe``, removed by
    ``unsubscribe``) and ``count`` is the size of the whole subscription after it.
    (In ``welcome``'s place, when resuming at connect, ``channels`` is the subscription.)

    ``recovered`` has one entry per stream the request asked to resume (``since``):
    ``true`` when every missed event followed, ``false`` when the client must refetch.
    """

    TYPE: ClassVar[str] = "subscribed"
    channels: tuple[str, ...]
    recovered: Mapping[str, bool] = attrs.Factory(dict)
    count: int = 0


@frozen(kw_only=True)
class Gap:
    """Messages of *channel* with offsets ``first_offset..last_offset`` were dropped."""

    TYPE: ClassVar[str] = "gap"
    channel: str
    first_offset: int
    last_offset: int
    count: int


@frozen(kw_only=True)
class Error:
    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    path: str | None = None


Payload: TypeAlias = (
    MonitoringMetrics
    | GroupDetail
    | TopicDetail
    | History
    | EpochChanged
    | TopicCreated
    | TopicDeleted
    | GroupCreated
    | GroupUpdated
    | GroupDeleted
    | GroupStatus
    | Ping
    | Pong
    | Subscribe
    | Unsubscribe
    | Welcome
    | Subscribed
    | Gap
    | Error
    | Refresh
    | Refreshed
    | TokenExpiring
)

#: Every payload class by its wire type.
PAYLOAD_CLASSES: Final[dict[str, type[Any]]] = {
    cls.TYPE: cls
    for cls in (
        MonitoringMetrics,
        GroupDetail,
        TopicDetail,
        History,
        EpochChanged,
        TopicCreated,
        TopicDeleted,
        GroupCreated,
        GroupUpdated,
        GroupDeleted,
        GroupStatus,
        Ping,
        Pong,
        Subscribe,
        Unsubscribe,
        Welcome,
        Subscribed,
        Gap,
        Error,
        Refresh,
        Refreshed,
        TokenExpiring,
    )
}
#: Types whose envelope has no ``data`` key.
NO_DATA_TYPES: Final = frozenset({"ping", "pong"})
#: Types whose ``data`` may be left out: a client's request (``{"type": "history"}``)
#: decodes to the type's empty payload.
OPTIONAL_DATA_TYPES: Final = frozenset({"history"})
ALL_TYPES: Final = frozenset(PAYLOAD_CLASSES)
#: What a browser may send.
CLIENT_TYPES: Final = frozenset({"ping", "subscribe", "unsubscribe", "history", "refresh"})


def channel_of(payload: Payload) -> str:
    """The channel *payload* is published on: an event's own (``event.channel``:
    ``topic:<name>``, ``group:<id>``, or its stream for a name no channel can carry),
    ``metrics`` for a snapshot. Other messages are replies, never published."""
    if isinstance(payload, ChangeEvent):
        return payload.channel
    if isinstance(payload, MonitoringMetrics):
        return "metrics"
    raise TypeError(f"{payload.TYPE} is not published on a channel")


@frozen(kw_only=True)
class Envelope:
    """One message on the wire.

    The wire's ``type`` and ``data`` are one attribute here, ``payload``: an instance of
    the message class (its ``TYPE`` is the wire ``type``, its attributes the keys of
    ``data``, in snake_case). ``decode(raw).payload`` is what JavaScript reads as
    ``JSON.parse(raw).data``; :attr:`data` is the same object under the wire's name.

    ``channel``/``offset``/``epoch`` are set on messages published through the hub;
    ``stale`` only on metrics. Fields left ``None`` are not sent, so a plain 2.9
    message stays ``{"type", "data", "timestamp"}``.
    """

    payload: Payload
    timestamp: int
    channel: str | None = None
    offset: int | None = None
    epoch: str | None = None
    stale: bool | None = None

    @property
    def type(self) -> str:
        """The wire ``type`` (``payload.TYPE``)."""
        return self.payload.TYPE

    @property
    def data(self) -> Payload:
        """The wire ``data``: the same object as :attr:`payload`."""
        return self.payload

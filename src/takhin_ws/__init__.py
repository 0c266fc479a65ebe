"""takhin-ws: real-time WebSocket push of Takhin cluster metrics and change events, on Trio.

The implementation lives in private modules; everything public is re-exported here:

- running a server: :func:`open_server` (``async with``), :func:`serve`
  (``nursery.start``), :class:`Server`, :class:`Settings`,
  :class:`EventIngress` (``server.ingress``), :class:`Published`, :class:`EventBus`;
- metrics: :class:`MetricsSource`, :class:`Snapshot`, :class:`GroupInfo`,
  :class:`MetricsProducer`, :class:`Series` (recent chart series); the sources
  :class:`SyntheticSource` and :class:`PrometheusSource` (also in :mod:`takhin_ws.sources`);
- the sans-IO hub: :class:`Hub`, :class:`Subscriber`, :class:`QueueSubscriber`,
  :class:`DropOldestQueue`, :class:`Outbound`, :class:`Variant` (what a client
  receives of a message, :meth:`Hub.add_client`'s *variant*);
- the wire protocol: every message class, :class:`Envelope`, :func:`encode`,
  :func:`decode`, :data:`PROTOCOL_VERSION`;
- errors: :class:`TakhinWsError` and its subclasses;
- statistics: :class:`ServerStatistics`, :class:`HubStatistics`,
  :class:`IngressStatistics`, :class:`MetricsStatistics`.
"""

from ._exceptions import (
    HubClosedError,
    HubFullError,
    ListenError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TakhinWsError,
)
from .config.settings import Settings, SettingsError
from .core.hub import Client, Hub, HubStatistics, QueueSubscriber, Subscriber
from .core.queue import DropOldestQueue
from .core.series import Series
from .core.snapshot import GroupInfo, MetricsSource, MetricsSourceError, Snapshot
from .ingest.bus import BusUnavailableError, EventBus, Published
from .ingest.ingress import EventIngress, IngressStatistics
from .ingest.producer import MetricsProducer, MetricsStatistics
from .net.exposition import ServerStatistics
from .net.server import WS_PATH, Server, open_server, serve
from .sources import PrometheusSource, ScrapeError, SyntheticSource
from .wire.codec import decode, encode
from .wire.events import Event
from .wire.frames import Outbound, Variant
from .wire.messages import (
    PROTOCOL_VERSION,
    ClusterHealth,
    ConsumerLag,
    Envelope,
    EpochChanged,
    Error,
    Gap,
    GroupCreated,
    GroupDeleted,
    GroupDetail,
    GroupState,
    GroupUpdated,
    Heartbeat,
    History,
    HistoryPoint,
    Latency,
    Limits,
    MonitoringMetrics,
    PartitionLag,
    Payload,
    Ping,
    Pong,
    Subscribe,
    Subscribed,
    Throughput,
    TopicConsumer,
    TopicCreated,
    TopicDeleted,
    TopicDetail,
    TopicLag,
    TopicStats,
    Unsubscribe,
    Welcome,
)

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "WS_PATH",
    "BusUnavailableError",
    "Client",
    "ClusterHealth",
    "ConsumerLag",
    "DropOldestQueue",
    "Envelope",
    "EpochChanged",
    "Error",
    "Event",
    "EventBus",
    "EventIngress",
    "Gap",
    "GroupCreated",
    "GroupDeleted",
    "GroupDetail",
    "GroupInfo",
    "GroupState",
    "GroupUpdated",
    "Heartbeat",
    "History",
    "HistoryPoint",
    "Hub",
    "HubClosedError",
    "HubFullError",
    "HubStatistics",
    "IngressStatistics",
    "Latency",
    "Limits",
    "ListenError",
    "LocalProtocolError",
    "MetricsProducer",
    "MetricsSource",
    "MetricsSourceError",
    "MetricsStatistics",
    "MonitoringMetrics",
    "Outbound",
    "PartitionLag",
    "Payload",
    "Ping",
    "Pong",
    "PrometheusSource",
    "ProtocolError",
    "Published",
    "QueueSubscriber",
    "RemoteProtocolError",
    "ScrapeError",
    "Series",
    "Server",
    "ServerStatistics",
    "Settings",
    "SettingsError",
    "Snapshot",
    "Subscribe",
    "Subscribed",
    "Subscriber",
    "SyntheticSource",
    "TakhinWsError",
    "Throughput",
    "TopicConsumer",
    "TopicCreated",
    "TopicDeleted",
    "TopicDetail",
    "TopicLag",
    "TopicStats",
    "Unsubscribe",
    "Variant",
    "Welcome",
    "decode",
    "encode",
    "open_server",
    "serve",
]

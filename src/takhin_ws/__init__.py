"""takhin-ws: real-time WebSocket push of Takhin cluster metrics and change events, on Trio.

The implementation lives in private modules; everything public is re-exported here.
"""

from ._codec import decode, encode
from ._config import Settings, SettingsError
from ._exceptions import (
    HubClosedError,
    HubFullError,
    ListenError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TakhinWsError,
)
from ._frames import Outbound
from ._hub import Client, Hub, HubStatistics, QueueSubscriber, Subscriber
from ._messages import (
    ClusterHealth,
    ConsumerLag,
    Envelope,
    EpochChanged,
    Error,
    Gap,
    GroupCreated,
    GroupDeleted,
    GroupDetail,
    GroupUpdated,
    Latency,
    MonitoringMetrics,
    PartitionLag,
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
from ._producer import MetricsProducer, MetricsStatistics
from ._queue import Drop, DropOldestQueue, QueueStatistics
from ._server import WS_PATH, Server, open_server
from ._snapshot import GroupInfo, MetricsSource, MetricsSourceError, Snapshot

__version__ = "0.1.0"

__all__ = [
    "WS_PATH",
    "Client",
    "ClusterHealth",
    "ConsumerLag",
    "Drop",
    "DropOldestQueue",
    "Envelope",
    "EpochChanged",
    "Error",
    "Gap",
    "GroupCreated",
    "GroupDeleted",
    "GroupDetail",
    "GroupInfo",
    "GroupUpdated",
    "Hub",
    "HubClosedError",
    "HubFullError",
    "HubStatistics",
    "Latency",
    "ListenError",
    "LocalProtocolError",
    "MetricsProducer",
    "MetricsSource",
    "MetricsSourceError",
    "MetricsStatistics",
    "MonitoringMetrics",
    "Outbound",
    "PartitionLag",
    "Ping",
    "Pong",
    "ProtocolError",
    "QueueStatistics",
    "QueueSubscriber",
    "RemoteProtocolError",
    "Server",
    "Settings",
    "SettingsError",
    "Snapshot",
    "Subscribe",
    "Subscribed",
    "Subscriber",
    "TakhinWsError",
    "Throughput",
    "TopicConsumer",
    "TopicCreated",
    "TopicDeleted",
    "TopicDetail",
    "TopicLag",
    "TopicStats",
    "Unsubscribe",
    "Welcome",
    "decode",
    "encode",
    "open_server",
]

"""takhin-ws: real-time WebSocket push of Takhin cluster metrics and change events, on Trio.

The public names come in tiers, as Trio's do:

- ``takhin_ws``: what running a server and embedding one needs.

  - running a server: :func:`open_server` (``async with``), :func:`serve`
    (``nursery.start``), :class:`Server`, :class:`Settings`;
  - publishing events: :class:`EventIngress` (``server.ingress``), :class:`Published`,
    :class:`EventBus`, and the events themselves (:class:`TopicCreated`,
    :class:`TopicDeleted`, :class:`GroupCreated`, :class:`GroupUpdated`,
    :class:`GroupDeleted`, :class:`GroupStatus`; :data:`Event` is any of them);
  - metrics: :class:`MetricsSource`, :class:`Snapshot`, :class:`GroupInfo`, the
    snapshot's :class:`MonitoringMetrics` and its parts, :class:`MetricsProducer`,
    :class:`Series`, :class:`LagTracker` (lag in seconds, group status, drain time);
    the sources :class:`SyntheticSource` and :class:`PrometheusSource` (all of them in
    :mod:`takhin_ws.sources`);
  - the sans-IO hub (:class:`Hub`) and the wire :class:`Variant` it takes;
  - errors: :class:`TakhinWsError` and its subclasses;
  - statistics: :class:`ServerStatistics`, :class:`HubStatistics`,
    :class:`IngressStatistics`, :class:`MetricsStatistics`, :class:`MetricsStatus`
    (``Server.metrics_status()``, the ``metrics`` of ``/readyz``).

- :mod:`takhin_ws.protocol`: every wire message class, :class:`~takhin_ws.protocol.Envelope`,
  ``encode``, ``decode``, ``PROTOCOL_VERSION``.
- :mod:`takhin_ws.lowlevel`: the hub's internals (``Client``, ``Subscriber``,
  ``QueueSubscriber``, ``DropOldestQueue``, ``Outbound``...), for code that drives a
  hub itself.
- :mod:`takhin_ws.sources`: the built-in metrics sources.
- :mod:`takhin_ws.asgi`: the server as an ASGI app (``create_app``).

The other subpackages (``wire``, ``core``, ``net``...) are internal. The names that moved
from here to ``protocol`` and ``lowlevel`` still resolve here for one release, with a
``DeprecationWarning``.
"""

from typing import TYPE_CHECKING

from . import lowlevel as lowlevel
from . import protocol as protocol
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
from .core.hub import Hub, HubStatistics
from .core.lag.tracker import LagTracker
from .core.metrics.snapshot import (
    GroupInfo,
    MetricsSource,
    MetricsSourceError,
    MetricsSourceIncompatibleError,
    Snapshot,
)
from .core.series import Series
from .ingest.bus import BusUnavailableError, EventBus, Published
from .ingest.ingress import EventIngress, IngressStatistics
from .ingest.producer import MetricsProducer, MetricsStatistics
from .net.http.exposition import ServerStatistics
from .net.http.status import MetricsStatus
from .net.server import WS_PATH, Server
from .net.serving import open_server, serve
from .sources import PrometheusSource, ScrapeError, SyntheticSource
from .wire.events import (
    Event,
    GroupCreated,
    GroupDeleted,
    GroupState,
    GroupStatus,
    GroupUpdated,
    TopicCreated,
    TopicDeleted,
)
from .wire.messages import (
    ClusterHealth,
    ConsumerLag,
    Latency,
    MonitoringMetrics,
    PartitionLag,
    Throughput,
    TopicLag,
    TopicStats,
)
from .wire.websocket.frames import Variant

__version__ = "0.1.0"

__all__ = [
    "WS_PATH",
    "BusUnavailableError",
    "ClusterHealth",
    "ConsumerLag",
    "Event",
    "EventBus",
    "EventIngress",
    "GroupCreated",
    "GroupDeleted",
    "GroupInfo",
    "GroupState",
    "GroupStatus",
    "GroupUpdated",
    "Hub",
    "HubClosedError",
    "HubFullError",
    "HubStatistics",
    "IngressStatistics",
    "LagTracker",
    "Latency",
    "ListenError",
    "LocalProtocolError",
    "MetricsProducer",
    "MetricsSource",
    "MetricsSourceError",
    "MetricsSourceIncompatibleError",
    "MetricsStatistics",
    "MetricsStatus",
    "MonitoringMetrics",
    "PartitionLag",
    "PrometheusSource",
    "ProtocolError",
    "Published",
    "RemoteProtocolError",
    "ScrapeError",
    "Series",
    "Server",
    "ServerStatistics",
    "Settings",
    "SettingsError",
    "Snapshot",
    "SyntheticSource",
    "TakhinWsError",
    "Throughput",
    "TopicCreated",
    "TopicDeleted",
    "TopicLag",
    "TopicStats",
    "Variant",
    "open_server",
    "serve",
]

#: Names that were top-level before the tiers, and the module that holds them now.
_MOVED = {
    **dict.fromkeys(
        (
            "PROTOCOL_VERSION",
            "Envelope",
            "EpochChanged",
            "Error",
            "Gap",
            "GroupDetail",
            "Heartbeat",
            "History",
            "HistoryPoint",
            "Limits",
            "Payload",
            "Ping",
            "Pong",
            "Subscribe",
            "Subscribed",
            "TopicConsumer",
            "TopicDetail",
            "Unsubscribe",
            "Welcome",
            "decode",
            "encode",
        ),
        "protocol",
    ),
    **dict.fromkeys(
        ("Client", "DropOldestQueue", "Outbound", "QueueSubscriber", "Subscriber"), "lowlevel"
    ),
}

if not TYPE_CHECKING:  # to type checkers the moved names are gone already

    def __getattr__(name: str) -> object:
        where = _MOVED.get(name)
        if where is None:
            raise AttributeError(f"module 'takhin_ws' has no attribute {name!r}")
        import importlib
        import warnings

        warnings.warn(
            f"takhin_ws.{name} is takhin_ws.{where}.{name} now; the top-level name "
            "goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f"takhin_ws.{where}"), name)

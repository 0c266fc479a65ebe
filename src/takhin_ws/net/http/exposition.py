"""``GET /metrics``: a server's statistics as Prometheus text (prometheus-client).

The renderer takes a frozen :class:`ServerStatistics` value (what
``Server.statistics()`` returns) and knows nothing of the server itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs
from attrs import frozen
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...core.hub import HubStatistics
from ...ingest.producer import MetricsStatistics

__all__ = ["ServerStatistics", "render_metrics"]


@frozen
class ServerStatistics:
    """A server's counters at one moment (``Server.statistics()``)."""

    hub: HubStatistics
    #: TCP connections accepted since start.
    connections: int
    #: HTTP requests (and upgrades) refused, by status.
    rejected: Mapping[int, int]
    #: Clients whose socket is not keeping up (writes queued).
    backlogged_clients: int
    ready: bool
    #: ``None`` without a shared event bus.
    bus_healthy: bool | None
    #: ``None`` without a metrics producer.
    producer: MetricsStatistics | None
    #: Connected WebSocket clients by how they authenticated (none, api_key, token).
    clients_by_auth: Mapping[str, int] = attrs.Factory(dict)
    #: WebSocket upgrades admitted since start, by how they authenticated.
    admitted_by_auth: Mapping[str, int] = attrs.Factory(dict)
    #: Refusals of credentials by reason (401s, channels outside a claim, refreshes).
    auth_refusals: Mapping[str, int] = attrs.Factory(dict)
    #: Metrics views one connection may subscribe to (``--max-views``).
    max_views_per_connection: int = 0


class _StatisticsCollector(Collector):
    def __init__(self, statistics: ServerStatistics) -> None:
        self._statistics = statistics

    def collect(self) -> Iterator[Metric]:
        statistics = self._statistics
        stats = statistics.hub
        yield GaugeMetricFamily(
            "takhin_ws_clients", "WebSocket clients registered in the hub", value=stats.clients
        )
        yield GaugeMetricFamily(
            "takhin_ws_max_clients", "Configured connection limit", value=stats.max_clients
        )
        subs = GaugeMetricFamily(
            "takhin_ws_channel_subscribers", "Clients subscribed per channel", labels=["channel"]
        )
        for channel, count in stats.subscribers.items():
            subs.add_metric([channel], count)
        yield subs
        offsets = GaugeMetricFamily(
            "takhin_ws_stream_offset", "Offset of the last message per stream", labels=["stream"]
        )
        for stream, offset in stats.offsets.items():
            offsets.add_metric([stream], offset)
        yield offsets
        yield CounterMetricFamily(
            "takhin_ws_published", "Messages published through the hub", value=stats.published
        )
        yield CounterMetricFamily(
            "takhin_ws_deliveries",
            "Messages offered to client connections",
            value=stats.delivered,
        )
        yield CounterMetricFamily(
            "takhin_ws_dropped",
            "Messages dropped from slow clients' queues (drop-oldest)",
            value=stats.dropped,
        )
        yield CounterMetricFamily(
            "takhin_ws_conflated",
            "Snapshots superseded in slow clients' queues by a newer one (latest wins)",
            value=stats.conflated,
        )
        yield GaugeMetricFamily(
            "takhin_ws_views", "Distinct metrics views with subscribers", value=stats.views
        )
        yield GaugeMetricFamily(
            "takhin_ws_max_distinct_views",
            "Most distinct metrics views built per tick (--max-distinct-views)",
            value=stats.max_views,
        )
        yield GaugeMetricFamily(
            "takhin_ws_max_views_per_connection",
            "Metrics views one connection may subscribe to (--max-views)",
            value=statistics.max_views_per_connection,
        )
        yield CounterMetricFamily(
            "takhin_ws_views_built",
            "Metrics views built (each distinct view at most once per tick)",
            value=stats.views_built,
        )
        yield CounterMetricFamily(
            "takhin_ws_views_skipped",
            "Views not built in a tick because --max-distinct-views were built already",
            value=stats.views_skipped,
        )
        yield GaugeMetricFamily(
            "takhin_ws_peak_queue_depth",
            "Deepest client queue seen",
            value=stats.peak_queue_depth,
        )
        yield CounterMetricFamily(
            "takhin_ws_connections", "TCP connections accepted", value=statistics.connections
        )
        rejected = CounterMetricFamily(
            "takhin_ws_rejected_requests", "HTTP requests refused, by status", labels=["status"]
        )
        for status, count in sorted(statistics.rejected.items()):
            rejected.add_metric([str(status)], count)
        yield rejected
        yield from _auth_families(statistics)
        yield GaugeMetricFamily(
            "takhin_ws_backlogged_clients",
            "Clients whose socket is not keeping up (writes queued)",
            value=statistics.backlogged_clients,
        )
        yield GaugeMetricFamily(
            "takhin_ws_ready", "1 when /readyz answers 200", value=statistics.ready
        )
        if statistics.bus_healthy is not None:
            yield GaugeMetricFamily(
                "takhin_ws_bus_healthy",
                "1 while the shared event bus (Redis) is reachable and takes writes",
                value=statistics.bus_healthy,
            )
        pstats = statistics.producer
        if pstats is not None:
            yield CounterMetricFamily(
                "takhin_ws_metrics_ticks",
                "Collects of the metrics source attempted, failed ones included "
                "(one per tick while this node collects)",
                value=pstats.ticks,
            )
            yield CounterMetricFamily(
                "takhin_ws_metrics_snapshots",
                "Fresh metrics snapshots published (one per good collect)",
                value=pstats.snapshots,
            )
            yield CounterMetricFamily(
                "takhin_ws_metrics_stale_snapshots",
                "The last good snapshot published again as stale (one per failed collect "
                "after a first good one)",
                value=pstats.stale_snapshots,
            )
            yield CounterMetricFamily(
                "takhin_ws_metrics_collect_failures",
                "Failed or timed-out collects of the metrics source",
                value=pstats.failures,
            )
            yield GaugeMetricFamily(
                "takhin_ws_metrics_stale",
                "1 while clients are being sent the last good (stale) snapshot",
                value=pstats.stale,
            )


def _labelled(family: GaugeMetricFamily | CounterMetricFamily, values: Mapping[str, int]) -> Metric:
    """*family* with one sample per key of *values*, in key order."""
    for label, count in sorted(values.items()):
        family.add_metric([label], count)
    return family


def _auth_families(statistics: ServerStatistics) -> Iterator[Metric]:
    yield _labelled(
        GaugeMetricFamily(
            "takhin_ws_clients_by_auth",
            "WebSocket clients connected, by how they authenticated",
            labels=["auth"],
        ),
        statistics.clients_by_auth,
    )
    yield _labelled(
        CounterMetricFamily(
            "takhin_ws_admitted",
            "WebSocket upgrades admitted, by how they authenticated",
            labels=["auth"],
        ),
        statistics.admitted_by_auth,
    )
    yield _labelled(
        CounterMetricFamily(
            "takhin_ws_auth_refusals",
            "Credentials refused (401), channels outside a token's claim, refused refreshes;"
            " by reason",
            labels=["reason"],
        ),
        statistics.auth_refusals,
    )


def render_metrics(statistics: ServerStatistics) -> bytes:
    """*statistics* in the Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatisticsCollector(statistics))
    return generate_latest(registry)

"""``GET /metrics``: the server's own statistics as Prometheus text (prometheus-client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["render_metrics"]


class _ServerCollector(Collector):
    def __init__(self, server: Server) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server = self._server
        stats = server.hub.statistics()
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
        yield GaugeMetricFamily(
            "takhin_ws_peak_queue_depth",
            "Deepest client queue seen",
            value=stats.peak_queue_depth,
        )
        yield CounterMetricFamily(
            "takhin_ws_connections", "TCP connections accepted", value=server.connections_total
        )
        rejected = CounterMetricFamily(
            "takhin_ws_rejected_requests", "HTTP requests refused, by status", labels=["status"]
        )
        for status, count in sorted(server.rejected.items()):
            rejected.add_metric([str(status)], count)
        yield rejected
        backlogged = sum(1 for s in tuple(server.sessions) if s.transport.backlogged)
        yield GaugeMetricFamily(
            "takhin_ws_backlogged_clients",
            "Clients whose socket is not keeping up (writes queued)",
            value=backlogged,
        )
        yield GaugeMetricFamily("takhin_ws_ready", "1 when /readyz answers 200", value=server.ready)
        if server.bus is not None:
            yield GaugeMetricFamily(
                "takhin_ws_bus_healthy",
                "1 while the shared event bus (Redis) is reachable",
                value=server.bus.healthy,
            )
        producer = server.producer
        if producer is not None:
            pstats = producer.statistics()
            yield CounterMetricFamily(
                "takhin_ws_metrics_ticks", "Metrics snapshots published", value=pstats.ticks
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


def render_metrics(server: Server) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServerCollector(server))
    return generate_latest(registry)

"""The hub and what feeds it, whichever way clients arrive: one set-up for both doors.

:func:`open_services` starts, in a nursery of its own, the metrics producer (with the
source *settings* name, unless one is given), the event ingress, and with
``redis_url`` the Redis event bus and metrics lease; on exit it closes the lease and a
source it made, then cancels them. The standalone server (``net/server``) and the ASGI
app (``takhin_ws.asgi``) both run inside it and add only their own way of serving
clients, so the two share one hub, producer and ingress set-up and one notion of
readiness.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from ..config.settings import Settings
from ..core.access.permissions import Permissions
from ..core.hub import Hub
from ..core.lag.tracker import LagTracker
from ..core.metrics.snapshot import MetricsSource
from ..core.series import Series
from ..ingest.bus import EventBus, MemoryBus
from ..ingest.ingress import EventIngress
from ..ingest.producer import MetricsProducer
from ..sources import CUSTOM, describe_source, open_source, source_kind
from ..wire.websocket.frames import bare_payload
from .http.status import MetricsStatus, metrics_status

if TYPE_CHECKING:
    from ..cluster.bus import RedisBus
    from ..cluster.lease import MetricsLease

__all__ = ["Services", "new_hub", "open_services"]

log: Final = logging.getLogger("takhin_ws.server")


class Services:
    """What :func:`open_services` runs: the hub, its producer, ingress and bus."""

    __slots__ = ("bus", "hub", "ingress", "producer", "settings", "source_kind")

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        producer: MetricsProducer | None,
        ingress: EventIngress,
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.producer = producer
        self.ingress = ingress
        self.bus = bus
        #: what clients are told the metrics come from (``welcome``, ``/readyz``)
        self.source_kind = None if producer is None else source_kind(producer.source)

    def unready_reasons(self) -> list[str]:
        """Why the service is not ready, as far as the feeding side goes (empty: ready)."""
        reasons = []
        producer = self.producer
        if producer is not None and not producer.ready:
            stats = producer.statistics()
            if stats.incompatible:
                reasons.append(
                    "metrics source incompatible: the cluster does not speak its protocol "
                    "as the source does (see metrics.error)"
                )
            elif stats.last_success is None:
                reasons.append("metrics source has not produced a snapshot yet")
            else:
                reasons.append(
                    f"metrics source failed {stats.failure_streak} collects in a row "
                    "(clients get the last good snapshot, marked stale)"
                )
        problem = None if self.bus is None else self.bus.unavailable
        if problem is not None:
            reasons.append(f"event bus unavailable ({problem})")
        return reasons

    def metrics_status(self) -> MetricsStatus | None:
        """Where the metrics stand (``/readyz``'s ``metrics``); ``None`` without a producer."""
        if self.producer is None:
            return None
        return metrics_status(
            self.source_kind or CUSTOM,
            self.producer.statistics(),
            snapshot=self.hub.latest("metrics") is not None,
        )

    def latest_metrics(self, permissions: Permissions | None = None) -> bytes | None:
        """The latest snapshot as a bare ``MonitoringMetrics`` JSON object (``None``
        before the first one), as *permissions* (a token's claim) may see it."""
        latest = self.hub.latest("metrics", permissions)
        return None if latest is None else bare_payload(latest.payload)


def new_hub(settings: Settings) -> Hub:
    """A hub with the limits and history of *settings*."""
    return Hub(
        max_clients=settings.max_clients,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
        max_views=settings.max_distinct_views,
    )


def _log_setup(
    producer: MetricsProducer, cluster: RedisBus | None, lease: MetricsLease | None
) -> None:
    """What the server reads and shares, once at start (before anything succeeds)."""
    log.info(
        "metrics source: %s; a snapshot every %g s, each collect within %g s",
        describe_source(producer.source),
        producer.interval,
        producer.collect_timeout,
    )
    if cluster is None or lease is None:
        log.info("events: in memory, this node only; this node collects the metrics")
    else:
        log.info(
            "events: shared through Redis at %s (cluster mode); this node (%s) collects "
            "the metrics while it holds the lease",
            cluster.where,
            lease.node_id,
        )


@asynccontextmanager
async def open_services(
    settings: Settings, *, source: MetricsSource | None = None, hub: Hub | None = None
) -> AsyncIterator[Services]:
    """Run the producer, ingress and (with ``redis_url``) the bus and lease for the
    duration of the block; *source* defaults to the one *settings* names."""
    if hub is None:  # not `hub or ...`: a Hub with no clients yet is falsy (len 0)
        hub = new_hub(settings)
    async with contextlib.AsyncExitStack() as stack:
        if source is None:  # the one settings name, run here, closed after the nursery
            source = await stack.enter_async_context(open_source(settings))
        nursery = await stack.enter_async_context(trio.open_nursery())
        cluster: RedisBus | None = None
        lease: MetricsLease | None = None
        try:
            if settings.redis_url is not None:
                from ..cluster.bus import RedisBus  # optional dependency (coredis)
                from ..cluster.lease import MetricsLease

                cluster = RedisBus.for_settings(settings, hub)
                lease = MetricsLease.for_settings(settings)
                await nursery.start(cluster.run)
                await nursery.start(lease.run)
            ingress = EventIngress(cluster or MemoryBus(hub))  # the one publish path
            producer = MetricsProducer(
                hub,
                source,
                interval=settings.interval,
                collect_timeout=settings.collect_timeout,
                unready_after=settings.unready_after,
                ingress=ingress,
                detect_changes=settings.detect_changes,
                should_collect=None if lease is None else lease.hold,
                series=Series(settings.series_window, settings.interval),
                lag=LagTracker(settings.lag_window),
            )
            _log_setup(producer, cluster, lease)
            await nursery.start(producer.run)
            yield Services(settings, hub, producer, ingress, bus=cluster)
        finally:
            with trio.CancelScope(shield=True):
                if lease is not None:
                    await lease.aclose()
            nursery.cancel_scope.cancel()

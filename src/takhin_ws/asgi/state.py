"""The state one ASGI app shares between its lifespan, its HTTP routes and its sessions.

:class:`AppState` is what the routes see as the server
(:class:`~takhin_ws.net.http.routes.ServerView`): settings, the running services (hub,
producer, ingress, bus; ``None`` while the app is not running), whether it accepts
clients, the live sessions, and the counters ``/metrics`` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import trio

from ..core.access.admission import Admission
from ..core.access.hosts import HostPolicy
from ..core.access.permissions import Permissions
from ..core.hub import Hub
from ..ingest.ingress import EventIngress
from ..net.http.exposition import ServerStatistics
from ..net.http.routes import Routes
from ..net.http.status import MetricsStatus
from ..net.services import Services
from ..wire.http import HttpError, Request
from .auth import Authorize

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["NOT_RUNNING", "AppState", "LiveSession"]

#: Why an app that was never started (or has stopped) refuses: what to do about it.
NOT_RUNNING: Final = (
    "takhin-ws is not running: serve the app with its ASGI lifespan, or run it in "
    "your own nursery (async with app.running(), or nursery.start(app.serve))"
)


class LiveSession(Protocol):
    """What the app needs of a session: whether it is backed up, and closing it."""

    @property
    def backlogged(self) -> bool: ...

    def close_going_away(self) -> None: ...


class AppState:
    """Settings, services and counters of one ASGI app (see the module docstring)."""

    def __init__(self, settings: Settings, authorize: Authorize | None) -> None:
        self.settings = settings
        self.authorize = authorize
        self.admission = Admission(settings)
        #: the Host check: here only with --allowed-host (the listening server is not ours)
        self.hosts = HostPolicy(settings.allowed_hosts, bind=None)
        self.routes = Routes(self, self.admission)
        self.services: Services | None = None
        self.accepting = False
        #: handshakes admitted and not yet registered (they count toward the limit)
        self.pending = 0
        self.sessions: set[LiveSession] = set()
        #: set once shutting down and the last session has ended
        self.drained: trio.Event | None = None
        self.connections_total = 0
        self.rejected: dict[int, int] = {}

    # --- running ---

    def running_services(self) -> Services:
        """The services, or :class:`HttpError` 503 (with what to do) while not running."""
        if self.services is None:
            raise HttpError(503, NOT_RUNNING, headers=[("Retry-After", "1")])
        return self.services

    @property
    def hub(self) -> Hub:
        if self.services is None:
            raise RuntimeError(NOT_RUNNING)
        return self.services.hub

    @property
    def ingress(self) -> EventIngress:
        if self.services is None:
            raise RuntimeError(NOT_RUNNING)
        return self.services.ingress

    def count_rejected(self, exc: HttpError) -> None:
        self.rejected[exc.status] = self.rejected.get(exc.status, 0) + 1

    def session_ended(self, session: LiveSession) -> None:
        self.sessions.discard(session)
        if not self.sessions and self.drained is not None:
            self.drained.set()

    # --- what the routes read (ServerView) ---

    def unready_reasons(self) -> list[str]:
        if self.services is None:
            return ["not running"]
        reasons = [] if self.accepting else ["shutting down"]
        return reasons + self.services.unready_reasons()

    def latest_metrics(self, permissions: Permissions | None = None) -> bytes | None:
        return self.running_services().latest_metrics(permissions)

    def metrics_status(self) -> MetricsStatus | None:
        return None if self.services is None else self.services.metrics_status()

    def _check_upgrade(self, request: Request) -> None:
        self.hosts.check(request)
        hub = self.running_services().hub
        self.admission.admit(
            request,
            accepting=self.accepting,
            occupied=len(hub) + self.pending,
            capacity=hub.max_clients,
            owns_handshake=False,
        )

    def statistics(self) -> ServerStatistics:
        services = self.running_services()
        return ServerStatistics(
            hub=services.hub.statistics(),
            connections=self.connections_total,
            rejected=dict(self.rejected),
            backlogged_clients=sum(1 for s in tuple(self.sessions) if s.backlogged),
            ready=not self.unready_reasons(),
            bus_healthy=None if services.bus is None else services.bus.healthy,
            producer=None if services.producer is None else services.producer.statistics(),
            max_views_per_connection=self.settings.max_views,
        )

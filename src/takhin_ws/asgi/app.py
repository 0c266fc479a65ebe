"""The ASGI 3 application: takhin-ws inside a Trio web app on the app's own port.

:class:`TakhinApp` serves what the standalone server serves (the WebSocket endpoint,
``/api/monitoring/metrics``, ``POST /api/events``, ``/healthz``, ``/readyz``,
``/metrics``, the dashboard page), whole or mounted under a prefix. Its services (hub,
metrics producer, ingress, and with ``redis_url`` the Redis bus and lease) run either
in the ASGI lifespan (the app used whole, or mounted by a dispatcher that forwards
lifespan events, such as Hypercorn's ``TrioDispatcherMiddleware``) or in the embedding
code's nursery (``async with app.running()``, or ``await nursery.start(app.serve)``:
Starlette and Quart do not forward lifespan events to mounted apps). Leaving them
closes every client with 1001, as the standalone server does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ..config.settings import Settings
from ..core.hub import Hub
from ..core.metrics.snapshot import MetricsSource
from ..ingest.bus import EventBus
from ..ingest.ingress import EventIngress
from ..ingest.producer import MetricsProducer
from ..net.http.exposition import ServerStatistics
from ..net.services import open_services
from .auth import Authorize
from .http import serve_http
from .scope import Receive, Scope, Send
from .state import NOT_RUNNING, AppState
from .websocket import serve_websocket

__all__ = ["TakhinApp"]

log = logging.getLogger("takhin_ws.server")


class TakhinApp:
    """takhin-ws as an ASGI application (made by :func:`takhin_ws.asgi.create_app`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: MetricsSource | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.settings = settings
        self._source = source
        self._state = AppState(settings, authorize)

    # --- ASGI ---

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await serve_http(self._state, scope, receive, send)
        elif kind == "websocket":
            await serve_websocket(self._state, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"takhin-ws serves http, websocket and lifespan scopes, not {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Run the services from ``lifespan.startup`` to ``lifespan.shutdown``."""
        if (await receive())["type"] != "lifespan.startup":
            return
        started = False
        try:
            async with self.running():
                started = True
                await send({"type": "lifespan.startup.complete"})
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
        except Exception as exc:
            log.exception("takhin-ws %s failed", "stopping" if started else "starting")
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failed, "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    # --- running in the embedding code's nursery ---

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TakhinApp]:
        """Run the services for the duration of the block; on exit every client is
        closed with 1001 (within ``shutdown_timeout``) and every task ends. One run at
        a time; each run has a new hub."""
        state = self._state
        if state.services is not None:
            raise RuntimeError("this takhin-ws app is already running")
        async with open_services(self.settings, source=self._source) as services:
            state.services = services
            state.accepting = True
            state.drained = None
            try:
                yield self
            finally:
                with trio.CancelScope(shield=True):
                    await self.shutdown()
                state.services = None

    async def serve(
        self, *, task_status: trio.TaskStatus[TakhinApp] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """:meth:`running` in the shape of Trio's ``serve_tcp``: ``await
        nursery.start(app.serve)`` returns once the services run; cancelling that
        nursery shuts them down (every client gets 1001)."""
        async with self.running():
            task_status.started(self)
            await trio.sleep_forever()

    async def shutdown(self) -> None:
        """Stop accepting (``/readyz`` answers 503 from now on), close every client
        with 1001 instead of its backlog, wait for them (at most
        ``shutdown_timeout``), then close the hub. Idempotent; leaving
        :meth:`running` calls it. Call it from your server's shutdown trigger to close
        clients before the server's own graceful timeout cancels them (they get
        1001 then too)."""
        state = self._state
        if not state.accepting or state.services is None:
            return
        state.accepting = False
        sessions = tuple(state.sessions)
        log.info("shutting down: closing %d client connection(s)", len(sessions))
        state.drained = drained = trio.Event()
        for session in sessions:
            session.close_going_away()
        if state.sessions:
            with trio.move_on_after(self.settings.shutdown_timeout):
                await drained.wait()
        state.services.hub.close()

    # --- what a running app offers the embedding code ---

    @property
    def is_running(self) -> bool:
        """Whether the services run (between start and shutdown)."""
        return self._state.services is not None

    @property
    def hub(self) -> Hub:
        """The running hub (``RuntimeError`` while not running)."""
        return self._state.hub

    @property
    def ingress(self) -> EventIngress:
        """Where the console publishes its events: ``await app.ingress.publish(event)``."""
        return self._state.ingress

    @property
    def producer(self) -> MetricsProducer | None:
        services = self._state.services
        if services is None:
            raise RuntimeError(NOT_RUNNING)
        return services.producer

    @property
    def bus(self) -> EventBus | None:
        services = self._state.services
        if services is None:
            raise RuntimeError(NOT_RUNNING)
        return services.bus

    @property
    def ready(self) -> bool:
        return not self._state.unready_reasons()

    def unready_reasons(self) -> list[str]:
        """Why ``/readyz`` answers 503 (empty while ready)."""
        return self._state.unready_reasons()

    def statistics(self) -> ServerStatistics:
        """The counters ``/metrics`` renders (``RuntimeError`` while not running)."""
        if self._state.services is None:
            raise RuntimeError(NOT_RUNNING)
        return self._state.statistics()

    @property
    def sessions(self) -> int:
        """WebSocket clients connected now."""
        return len(self._state.sessions)

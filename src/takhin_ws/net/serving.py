"""Running a server: ``open_server`` (``async with``) and ``serve`` (``nursery.start``).

``open_server(settings)`` is an async context manager: on entry the listener is
bound, the services (hub, metrics producer, ingress, bus) and the heartbeat sweep run,
the accept loops hand each connection to the :class:`~.server.Server`, and the
returned server knows its port; on exit accepting stops, every client gets a Close
frame (1001) within ``shutdown_timeout`` and every task ends. ``serve`` is the same
in the shape of Trio's ``serve_tcp``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ..config.settings import Settings
from ..core.hub import Hub
from ..core.metrics.snapshot import MetricsSource
from .heartbeat import heartbeat
from .listener import bind
from .server import Server
from .services import open_services

__all__ = ["open_server", "serve"]


class _Handlers:
    """The connections' nursery, in a task of its own and shielded: cancelling the
    server's scope (``serve`` in a cancelled nursery) reaches the connections only
    through the shutdown, which lets every session send its Close frame first; then
    :meth:`stop` cancels whatever is left."""

    def __init__(self) -> None:
        self._scope = trio.CancelScope(shield=True)
        self._nursery: trio.Nursery | None = None

    @property
    def nursery(self) -> trio.Nursery:
        assert self._nursery is not None, "not started"
        return self._nursery

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def stop(self) -> None:
        self._scope.cancel()


@asynccontextmanager
async def open_server(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    hub: Hub | None = None,
) -> AsyncIterator[Server]:
    """Run a takhin-ws server for the duration of the ``async with`` block.

    *source* defaults to the one *settings* names (synthetic or prometheus).
    Raises :class:`~takhin_ws.ListenError` if the address cannot be bound.
    """
    settings = settings or Settings()
    listener = await bind(settings.host, settings.port)
    try:
        async with (
            open_services(settings, source=source, hub=hub) as services,
            trio.open_nursery() as nursery,
        ):
            server = Server(
                settings,
                services.hub,
                services.producer,
                listener,
                services.ingress,
                bus=services.bus,
            )
            nursery.start_soon(heartbeat, server.sessions, settings)
            handlers = _Handlers()
            try:
                await nursery.start(handlers.run)
                server._handlers = handlers.nursery
                await nursery.start(listener.serve, server._connection, handlers.nursery)
                try:
                    yield server
                finally:
                    with trio.CancelScope(shield=True):
                        await server.shutdown()
            finally:
                handlers.stop()
                nursery.cancel_scope.cancel()
    finally:
        listener.close()


async def serve(
    settings: Settings | None = None,
    *,
    source: MetricsSource | None = None,
    hub: Hub | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a server in the caller's nursery until that nursery is cancelled (Trio's
    ``serve_tcp`` convention): ``server = await nursery.start(serve, settings)`` returns
    the started :class:`Server` once it listens. On cancellation it shuts down as
    leaving :func:`open_server` does (every client gets 1001). Same arguments as
    :func:`open_server`."""
    async with open_server(settings, source=source, hub=hub) as server:
        task_status.started(server)
        await trio.sleep_forever()
